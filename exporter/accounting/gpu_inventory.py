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
from collections.abc import Iterable, Mapping, Sequence
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


@dataclass(frozen=True)
class ClaimCheck:
    """engines[].gpus held against the GPUs NVML lists."""

    problems: list[str]
    """Claims that name no GPU of the node, each naming its field."""
    unverifiable: list[str]
    """Claims NVML cannot confirm nor refute: a GPU it could not identify, or one
    cost.gpus declares that NVML does not list, may be the one meant."""


def check_claims(
    claims: Sequence[Sequence[int | str] | None],
    listed: Iterable[tuple[int, str, str]],
    counted: int,
    declared_unlisted: int,
    where: str = "engines",
) -> ClaimCheck:
    """Each engine's GPU claims (in `engines` order) against NVML's GPUs.

    `listed` are the (index, UUID, name) NVML identified among the `counted` GPUs
    it reports; `declared_unlisted` is how many GPUs cost.gpus declares beyond them.
    """
    listed = list(listed)
    by_uuid = {uuid.lower(): index for index, uuid, _ in listed}
    unidentified = counted - len(listed)
    check = ClaimCheck([], [])
    owner: dict[int, str] = {}
    for engine, refs in enumerate(claims):
        for position, ref in enumerate(refs or ()):
            at = f"{where}[{engine}].gpus[{position}]"
            if isinstance(ref, int):
                index: int | None = ref if ref < counted else None
                if index is None and declared_unlisted:
                    check.unverifiable.append(
                        f"{at}: GPU {ref} is not listed by NVML; it may be one of the "
                        f"{declared_unlisted} GPU(s) cost.gpus declares that NVML does not list"
                    )
                    continue
                if index is None:
                    check.problems.append(
                        f"{at}: GPU {ref} is not on this node (NVML lists {_indices(counted)})"
                    )
                    continue
            else:
                index = by_uuid.get(ref.lower())
                if index is None and (unidentified or declared_unlisted):
                    check.unverifiable.append(
                        f"{at}: {ref} is not listed by NVML; it may be one of the "
                        f"{unidentified + declared_unlisted} GPU(s) NVML could not identify "
                        "or does not list"
                    )
                    continue
                if index is None:
                    known = ", ".join(uuid for _, uuid, _ in listed) or "none"
                    check.problems.append(
                        f"{at}: no GPU on this node has UUID {ref} (NVML lists {known})"
                    )
                    continue
            if index in owner and owner[index] != f"{where}[{engine}]":
                check.problems.append(
                    f"{at}: {ref!r} is GPU {index}, already claimed by {owner[index]}; "
                    "each engine runs on its own GPUs"
                )
            owner.setdefault(index, f"{where}[{engine}]")
    return check


def _indices(counted: int) -> str:
    return {0: "no GPU", 1: "GPU 0"}.get(counted, f"0-{counted - 1}")
