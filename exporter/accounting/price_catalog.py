"""API prices looked up by `provider/model` in the offline genai-prices catalog.

Importing the catalog costs ~30 MB of memory, more than the rest of the
daemon. The lookup therefore runs once at start in a short-lived child
process (`python -m exporter.price_catalog REF...`), and the daemon keeps
only the three numbers per model it needs. `prices search` (a short-lived
command of its own) reads the catalog in its process.
"""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from llm_cost_exporter.accounting.costmodel import MILLION, ApiPrices
from llm_cost_exporter.config import ConfigError

CATALOG_CURRENCY = "USD"
SEARCH_HINT = "find the name with `llm-cost-exporter prices search TEXT`"
_IGNORED_IN_NAMES = str.maketrans("", "", "-._ ")


@dataclass(frozen=True)
class CatalogModel:
    """A catalog model as `api_prices` names it, with the prices a reference resolves to."""

    ref: str
    """`provider/model`, what `catalog:` takes."""
    name: str
    prices: ApiPrices


def _lookup(ref: str) -> dict[str, float]:
    """Prices per 1M tokens of one reference, in the catalog's own process."""
    from genai_prices import Usage, calc_price

    provider, model = ref.split("/", 1)

    def price(**usage: int) -> float:
        return float(calc_price(Usage(**usage), model, provider_id=provider).total_price)

    prompt = price(input_tokens=MILLION)
    cached = price(input_tokens=MILLION, cache_read_tokens=MILLION)
    return {"input": prompt, "cached_input": cached, "output": price(output_tokens=MILLION)}


def resolve_catalog_prices(refs: Sequence[str], currency: str) -> dict[str, ApiPrices]:
    """Resolve every reference, or raise ConfigError naming the first that fails."""
    if not refs:
        return {}
    if currency != CATALOG_CURRENCY:
        raise ConfigError(
            f"api_prices: catalog prices are in {CATALOG_CURRENCY} but currency is {currency}; "
            "give prices by hand"
        )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "llm_cost_exporter.accounting.price_catalog", *refs],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ConfigError(f"api_prices: price catalog lookup failed: {error}") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise ConfigError(f"api_prices: price catalog lookup failed: {reason}")
    answer = json.loads(done.stdout)
    if "error" in answer:
        close = answer.get("close") or []
        similar = f"close names: {', '.join(close)}; " if close else ""
        raise ConfigError(
            f"api_prices: catalog has no price for {answer['error']}; {similar}{SEARCH_HINT}"
        )
    return {ref: ApiPrices(**answer[ref]) for ref in refs}


def _folded(text: str) -> str:
    """`text` as compared by search: case, `-`, `.`, `_` and spaces do not count."""
    return text.lower().translate(_IGNORED_IN_NAMES)


def _referable_models() -> Iterator[tuple[str, str]]:
    """`provider/model` and display name of every catalog model that `api_prices` can
    name: one slash, and the reference leads the lookup back to that very model."""
    from genai_prices.data_snapshot import get_snapshot

    providers = get_snapshot().providers
    for provider in providers:
        for model in provider.models:
            if (
                "/" in model.id
                or provider.find_model(model.id, all_providers=providers) is not model
            ):
                continue
            name = model.name or model.id
            yield f"{provider.id}/{model.id}", f"{name} (deprecated)" if model.deprecated else name


def search_catalog(text: str) -> list[CatalogModel]:
    """Catalog models whose reference or name contains `text`, with their prices per 1M
    tokens as a `catalog:` reference resolves them; ValueError when `text` has no letter
    or digit (it would match everything)."""
    wanted = _folded(text)
    if not any(c.isalnum() for c in wanted):
        raise ValueError(f"{text!r}: give part of a model's name, e.g. haiku")
    return [
        CatalogModel(ref, name, ApiPrices(**_lookup(ref)))
        for ref, name in _referable_models()
        if wanted in _folded(ref) or wanted in _folded(name)
    ]


def close_refs(text: str, limit: int = 3) -> list[str]:
    """The catalog references whose whole reference or model part is most like `text`,
    for an error to suggest."""
    candidates: dict[str, str] = {}
    for ref, _ in _referable_models():
        candidates.setdefault(_folded(ref), ref)
        candidates.setdefault(_folded(ref.split("/", 1)[1]), ref)
    close = difflib.get_close_matches(_folded(text), candidates, n=limit * 2, cutoff=0.6)
    return list(dict.fromkeys(candidates[key] for key in close))[:limit]


def main(refs: Sequence[str]) -> int:
    result: dict[str, object] = {}
    for ref in refs:
        try:
            result[ref] = _lookup(ref)
        except LookupError as error:
            print(json.dumps({"error": f"{ref!r} ({error})", "close": close_refs(ref)}))
            return 0
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
