"""API prices looked up by `provider/model` in the offline genai-prices catalog.

Importing the catalog costs ~30 MB of memory, more than the rest of the
daemon. The lookup therefore runs once at start in a short-lived child
process (`python -m exporter.price_catalog REF...`), and the daemon keeps
only the three numbers per model it needs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

from llm_cost_exporter.accounting.costmodel import MILLION, ApiPrices
from llm_cost_exporter.config import ConfigError

CATALOG_CURRENCY = "USD"


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
        raise ConfigError(f"api_prices: catalog has no price for {answer['error']}")
    return {ref: ApiPrices(**answer[ref]) for ref in refs}


def main(refs: Sequence[str]) -> int:
    result: dict[str, object] = {}
    for ref in refs:
        try:
            result[ref] = _lookup(ref)
        except LookupError as error:
            print(json.dumps({"error": f"{ref!r} ({error})"}))
            return 0
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
