"""Which GPUs this node pays for, and what each costs per hour.

NVML names GPUs like "NVIDIA H100 80GB HBM3" or "NVIDIA A100-SXM4-80GB";
configuration prices them by a shorter key. A key matches a name when, both
compared case-insensitively with a leading "NVIDIA " and repeated spaces
dropped:

1. it equals the name ("H100 80GB HBM3"), or
2. it is a glob pattern matching the whole name ("A100*80GB*"), or
3. the name starts with it followed by a space or a dash ("H100", "A100").

Of several matching keys the exact one wins, then the longest. A GPU that
matches no key has no price, and that is an error naming the GPU, never $0.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

UNCLAIMED = "(unclaimed)"
"""Owner of GPU cost that no engine claims: idle capacity, billed visibly."""

UNKNOWN_UUID = ""


def normalize_gpu_name(name: str) -> str:
    text = re.sub(r"\s+", " ", name.strip()).lower()
    return text.removeprefix("nvidia ")


def match_gpu_price_key(name: str, keys: Iterable[str]) -> str | None:
    """The configured price key for an NVML GPU name, or None (see module doc)."""
    wanted = normalize_gpu_name(name)
    best: tuple[int, int, str] | None = None
    for key in keys:
        pattern = normalize_gpu_name(key)
        is_glob = any(c in pattern for c in "*?[")
        if pattern == wanted:
            rank = 2
        elif (is_glob and fnmatch.fnmatchcase(wanted, pattern)) or _word_prefix(pattern, wanted):
            rank = 1
        else:
            continue
        candidate = (rank, len(pattern), key)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return best[2] if best else None


def _word_prefix(prefix: str, name: str) -> bool:
    return name.startswith(prefix) and name[len(prefix) : len(prefix) + 1] in (" ", "-")


@dataclass(frozen=True)
class BilledGpu:
    """One GPU the node pays for. `index` is NVML's (or the declared order)."""

    key: str
    index: int | None
    uuid: str
    name: str
    price_key: str
    hourly: float
    source: str
    """`nvml` (seen through NVML), `declared` (cost.gpus, NVML unavailable) or
    `missing` (declared in cost.gpus but not listed by NVML: still paid for)."""

    @property
    def label(self) -> str:
        """The `gpu` label: NVML's index, or a name for GPUs NVML does not list."""
        if self.source == "missing":
            return self.key
        return str(self.index)


class UnpricedGpu(ValueError):
    """A GPU whose model no configured price key matches."""


def build_inventory(
    nvml_gpus: Iterable[tuple[int, str, str]],
    declared: Iterable[tuple[str, int]],
    hourly_by_key: Mapping[str, float],
    nvml_available: bool,
) -> list[BilledGpu]:
    """The GPUs to bill: those NVML lists, plus declared ones NVML does not show.

    `nvml_gpus` are (index, UUID, name); `declared` are (model, count) from
    cost.gpus. With NVML available, declared GPUs beyond what NVML lists of
    the same price key are billed as `missing` (a GPU lost before start still
    costs money); without NVML the declared list is the inventory.
    Raises UnpricedGpu naming the first GPU without a price.
    """
    inventory: list[BilledGpu] = []
    seen_by_key: dict[str, int] = {}
    for index, uuid, name in nvml_gpus:
        key = match_gpu_price_key(name, hourly_by_key)
        if key is None:
            raise UnpricedGpu(
                f"GPU {index} ({uuid}) is a {name!r} and no price key matches it; "
                f"known keys: {', '.join(sorted(hourly_by_key)) or 'none'}"
            )
        seen_by_key[key] = seen_by_key.get(key, 0) + 1
        inventory.append(BilledGpu(uuid, index, uuid, name, key, hourly_by_key[key], "nvml"))
    position = 0
    for model, count in declared:
        key = match_gpu_price_key(model, hourly_by_key)
        if key is None:
            raise UnpricedGpu(f"declared GPU model {model!r} matches no price key")
        listed = seen_by_key.get(key, 0) if nvml_available else 0
        seen_by_key[key] = max(listed - count, 0)
        for _ in range(max(count - listed, 0)):
            source = "missing" if nvml_available else "declared"
            inventory.append(
                BilledGpu(
                    key=f"{source}{position}",
                    index=None if nvml_available else position,
                    uuid=UNKNOWN_UUID,
                    name=model,
                    price_key=key,
                    hourly=hourly_by_key[key],
                    source=source,
                )
            )
            position += 1
    return inventory


def resolve_claims(
    claims: Mapping[str, Iterable[int | str]], inventory: Iterable[BilledGpu]
) -> tuple[dict[str, str], list[str]]:
    """Map GPU keys to the engine target that claims them, by NVML index or UUID.

    Returns (gpu key -> target, problems) where problems name claims that match
    no GPU of the inventory.
    """
    by_index = {g.index: g.key for g in inventory if g.index is not None}
    by_uuid = {g.uuid.lower(): g.key for g in inventory if g.uuid}
    owners: dict[str, str] = {}
    problems = []
    for target, wanted in claims.items():
        for ref in wanted:
            key = by_index.get(ref) if isinstance(ref, int) else by_uuid.get(str(ref).lower())
            if key is None:
                problems.append(f"engine {target} claims GPU {ref!r}, which is not on this node")
                continue
            owners[key] = target
    return owners, problems
