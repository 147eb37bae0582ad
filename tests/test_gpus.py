"""GPU prices by NVML name, the billed inventory, and engine-to-GPU claims."""

from __future__ import annotations

import pytest

from llm_cost_exporter.accounting.gpu_inventory import (
    UnpricedGpu,
    build_inventory,
    check_claims,
    match_gpu_price_key,
    resolve_claims,
)

PRICES = {"H100": 2.99, "H100 80GB HBM3": 3.50, "A100*80GB*": 1.79, "A100": 1.29, "L40S": 0.99}


@pytest.mark.parametrize(
    ("nvml_name", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 80GB HBM3"),  # exact beats the shorter prefix
        ("NVIDIA H100 PCIe", "H100"),  # word prefix
        ("NVIDIA H100-SXM5-94GB", "H100"),  # a dash ends a word too
        ("NVIDIA A100-SXM4-80GB", "A100*80GB*"),  # glob beats the shorter prefix
        ("NVIDIA A100-SXM4-40GB", "A100"),
        ("nvidia  l40s", "L40S"),  # case and spaces do not matter
        ("NVIDIA H1000", None),  # a prefix must end at a word boundary
        ("Tesla T4", None),
    ],
)
def test_price_keys_match_nvml_names(nvml_name: str, key: str | None) -> None:
    assert match_gpu_price_key(nvml_name, PRICES) == key


def test_inventory_bills_what_nvml_lists_at_each_models_price() -> None:
    nvml = [(0, "GPU-a", "NVIDIA H100 80GB HBM3"), (1, "GPU-b", "NVIDIA L40S")]
    inventory = build_inventory(nvml, [], PRICES, nvml_available=True)
    assert [(g.key, g.index, g.hourly, g.source) for g in inventory] == [
        ("GPU-a", 0, 3.50, "nvml"),
        ("GPU-b", 1, 0.99, "nvml"),
    ]


def test_an_unpriced_gpu_is_an_error_naming_it() -> None:
    with pytest.raises(UnpricedGpu, match=r"GPU 3 \(GPU-x\) is a 'Tesla T4'"):
        build_inventory([(3, "GPU-x", "Tesla T4")], [], PRICES, nvml_available=True)


def test_declared_gpus_are_billed_without_nvml() -> None:
    inventory = build_inventory([], [("H100", 2), ("L40S", 1)], PRICES, nvml_available=False)
    assert [(g.index, g.price_key, g.source) for g in inventory] == [
        (0, "H100", "declared"),
        (1, "H100", "declared"),
        (2, "L40S", "declared"),
    ]


def test_declared_gpus_nvml_does_not_list_are_billed_as_missing() -> None:
    nvml = [(i, f"GPU-{i}", "NVIDIA H100 PCIe") for i in range(7)]
    inventory = build_inventory(nvml, [("H100", 8)], PRICES, nvml_available=True)
    assert len(inventory) == 8
    missing = [g for g in inventory if g.source == "missing"]
    assert [(g.label, g.hourly) for g in missing] == [("missing0", 2.99)]


def test_claims_resolve_by_index_and_uuid() -> None:
    nvml = [(i, f"GPU-{i}", "NVIDIA L40S") for i in range(4)]
    inventory = build_inventory(nvml, [], PRICES, nvml_available=True)
    owners, problems = resolve_claims({"a": [0, 1], "b": ["gpu-2", 9]}, inventory)
    assert owners == {"GPU-0": "a", "GPU-1": "a", "GPU-2": "b"}
    assert problems == ["engine b claims GPU 9, which is not on this node"]


FOUR = [(i, f"GPU-{i}aaa", "NVIDIA L40S") for i in range(4)]


@pytest.mark.parametrize(
    ("claims", "listed", "counted", "unlisted", "problems", "unverifiable"),
    [
        ([[0, 1], ["GPU-2AAA"], None], FOUR, 4, 0, [], []),
        ([[0], [7]], FOUR, 4, 0,
         ["engines[1].gpus[0]: GPU 7 is not on this node (NVML lists 0-3)"], []),
        ([[4]], FOUR[:1], 1, 0,
         ["engines[0].gpus[0]: GPU 4 is not on this node (NVML lists GPU 0)"], []),
        ([[0]], [], 0, 0,
         ["engines[0].gpus[0]: GPU 0 is not on this node (NVML lists no GPU)"], []),
        ([[1, "GPU-9"]], FOUR[:2], 2, 0, [
            "engines[0].gpus[1]: no GPU on this node has UUID GPU-9 (NVML lists GPU-0aaa, GPU-1aaa)"
        ], []),
        # The same GPU by index and by UUID, from two engines.
        ([[0, 1], ["GPU-1aaa"]], FOUR, 4, 0, [
            "engines[1].gpus[0]: 'GPU-1aaa' is GPU 1, already claimed by engines[0]; "
            "each engine runs on its own GPUs"
        ], []),
        # GPU 3 is counted but cannot be identified (lost before start): its index holds,
        # and an unknown UUID may be it.
        ([[3], ["GPU-3aaa"]], FOUR[:3], 4, 0, [], [
            "engines[1].gpus[0]: GPU-3aaa is not listed by NVML; it may be one of the 1 GPU(s) "
            "NVML could not identify or does not list"
        ]),
        # cost.gpus declares two GPUs NVML does not list: GPU 5 may be one of them.
        ([[5]], FOUR, 4, 2, [], [
            "engines[0].gpus[0]: GPU 5 is not listed by NVML; it may be one of the 2 GPU(s) "
            "cost.gpus declares that NVML does not list"
        ]),
    ],
)  # fmt: skip
def test_claims_are_checked_against_what_nvml_lists(
    claims: list[list[int | str] | None],
    listed: list[tuple[int, str, str]],
    counted: int,
    unlisted: int,
    problems: list[str],
    unverifiable: list[str],
) -> None:
    check = check_claims(claims, listed, counted, unlisted)
    assert (check.problems, check.unverifiable) == (problems, unverifiable)
