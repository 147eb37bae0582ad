"""The schema: every section's defaults, unknown keys with a suggestion, and the
checks that used to wait for the daemon's start now refuse the file itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import minimal_config_dict
from realparts.timeouts import scaled

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.config import (
    CapacityConfig,
    Config,
    ConfigError,
    CostConfig,
    EngineConfig,
    GpuGroup,
    ModelPrice,
    NvmlConfig,
    OwnedHardware,
    Projection,
    config_from_mapping,
    parse_currency,
    split_listen_address,
)

RENTED = {"gpu_prices_per_hour": {"A100": 3.2}}


def loaded(**changes: Any) -> Config:
    return config_from_mapping(minimal_config_dict(**changes))


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as error:
        config_from_mapping(data)
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("changes", "section", "expected"),
    [
        ({}, lambda c: c.currency, "USD"),
        ({}, lambda c: c.listen_address, "0.0.0.0:9478"),
        ({}, lambda c: (c.interval, c.timeout, c.max_page_bytes), (5.0, 3.0, 16 * 1024**2)),
        (
            {"collection": {"interval": "2s"}},
            lambda c: c.timeout,
            pytest.approx(1.6),
        ),
        (
            {},
            lambda c: c.engines,
            (EngineConfig("http://127.0.0.1:8000/metrics", "vllm", None, None),),
        ),
        (
            {"engines": ["http://a:1/metrics"]},
            lambda c: c.engines,
            (EngineConfig("http://a:1/metrics", "vllm", None, None),),
        ),
        ({}, lambda c: c.nvml, NvmlConfig(enabled=True, utilization_source="auto")),
        (
            {"cost": RENTED},
            lambda c: c.cost,
            CostConfig(
                gpu_prices_per_hour={"A100": 3.2},
                owned=None,
                gpus=(),
                node_extra_per_hour=0.0,
                overhead_ratio=0.3,
                fixed_per_month=0.0,
            ),
        ),
        (
            {"cost": {**RENTED, "gpus": [{"model": "A100"}]}},
            lambda c: c.cost.gpus,
            (GpuGroup("A100", 1),),
        ),
        (
            {"cost": {"owned": {"purchase_prices": {"H100": 30000}, "energy_price_per_kwh": 0.1}}},
            lambda c: c.cost.owned,
            OwnedHardware({"H100": 30000.0}, 36.0, energy_price_per_kwh=0.1, pue=1.0),
        ),
        (
            {"api_prices": {"default": {"input": 0.5, "output": 2}}},
            lambda c: c.api_prices.default,
            ModelPrice(prices=ApiPrices(input=0.5, cached_input=0.5, output=2.0)),
        ),
        (
            {"api_prices": {"models": {"m": "openai/gpt-4o"}}},
            lambda c: (c.api_prices.default, c.api_prices.models),
            (None, {"m": ModelPrice(catalog="openai/gpt-4o")}),
        ),
        (
            {},
            lambda c: c.capacity,
            CapacityConfig(tokens_per_second=None, learn=True, learn_window=300.0),
        ),
        ({}, lambda c: c.projection, Projection(None, None, None, None)),
        (
            {"projection": {"token_mix": {"generation": 1}}},
            lambda c: c.projection.token_mix,
            {"prompt": 0.0, "cached_prompt": 0.0, "generation": 1.0},
        ),
        ({}, lambda c: (c.windows, c.state_file, c.log_level), (("5m", "1h"), None, "info")),
        (
            {"nvml": None, "capacity": None},
            lambda c: (c.nvml, c.capacity),
            (NvmlConfig(), CapacityConfig()),
        ),
    ],
)
def test_defaults_of_every_section(changes: dict, section, expected) -> None:
    assert section(loaded(**changes)) == expected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"cost": {**RENTED, "overhead_ration": 0.3}},
            "cost.overhead_ration: unknown field; did you mean overhead_ratio? (allowed: "
            "fixed_per_month, gpu_prices_per_hour, gpus, node_extra_per_hour, overhead_ratio, "
            "owned)",
        ),
        (
            {"cosst": {}},
            "cosst: unknown field; did you mean cost? (allowed: api_prices, capacity, collection, "
            "cost, currency, engines, kubernetes, limits, log_level, metrics, nvml, otlp, "
            "projection, state_file, state_max_gap, web, windows)",
        ),
        (
            {"collection": {"intervall": "5s"}},
            "collection.intervall: unknown field; did you mean interval? "
            "(allowed: interval, max_page_bytes, timeout)",
        ),
        (
            {"web": {"listen_adress": ":9000"}},
            "web.listen_adress: unknown field; did you mean listen_address? "
            "(allowed: idle_timeout, listen_address, serve_metrics)",
        ),
        (
            {"engines": [{"url": "http://a/metrics", "gpu": [0]}]},
            "engines[0].gpu: unknown field; did you mean gpus? "
            "(allowed: basic_auth, bearer_token_file, capacity_tokens_per_second, gpus, model, "
            "type, url)",
        ),
        (
            {"projection": {"token_mix": {"promt": 1}}},
            "projection.token_mix.promt: unknown field; did you mean prompt? "
            "(allowed: cached_prompt, generation, prompt)",
        ),
        (
            {"api_prices": {"default": {"input": 1, "outptu": 2}}},
            "api_prices.default.outptu: unknown field; did you mean output? "
            "(allowed: cached_input, catalog, input, output)",
        ),
        (
            {"nvml": {"foo": 1}},
            "nvml.foo: unknown field (allowed: enabled, utilization_source)",
        ),
    ],
)
def test_unknown_field_suggests_the_closest_known_one(changes: dict, message: str) -> None:
    assert error_of(minimal_config_dict(**changes)) == message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"windows": ["0s"]}, "windows[0]: duration must be positive, got '0s'"),
        ({"windows": ["5m", "0.0h"]}, "windows[1]: duration must be positive, got '0.0h'"),
        ({"capacity": {"learn_window": "0m"}}, "capacity.learn_window: duration must be positive"),
        (
            {"currency": "EUR", "api_prices": {"default": "openai/gpt-4o"}},
            "api_prices: catalog prices are in USD but currency is EUR; give prices by hand",
        ),
        (
            {"nvml": {"enabled": False}, "cost": RENTED},
            "cost.gpus: nothing to bill on this node: NVML is disabled and cost.gpus declares none",
        ),
        (
            {"web": {"listen_address": "0.0.0.0:0"}},
            "web.listen_address: '0.0.0.0:0': port 0 is out of range 1-65535",
        ),
        ({"web": {"listen_address": "[::1]"}}, "web.listen_address: '[::1]' is not HOST:PORT"),
        (
            {"cost": {"gpu_prices_per_hour": {"A100": float("inf")}}},
            "cost.gpu_prices_per_hour.A100: must be a finite number",
        ),
        (
            {"api_prices": {"default": {"catalog": "openai/gpt-4o", "input": 1}}},
            "api_prices.default: give either catalog or input/output prices, not both",
        ),
    ],
)
def test_the_file_alone_is_checked_as_the_daemon_would(changes: dict, message: str) -> None:
    assert error_of(minimal_config_dict(**changes)).startswith(message)


def test_a_cpu_only_node_without_nvml_bills_its_node_cost() -> None:
    config = loaded(nvml={"enabled": False}, cost={"node_extra_per_hour": 1.5})
    assert config.cost.gpus == () and config.cost.node_extra_per_hour == 1.5


def test_prices_by_hand_may_be_in_another_currency() -> None:
    config = loaded(currency="eur", api_prices={"default": {"input": 1, "output": 2}})
    assert config.currency == "EUR"


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("command", [["check-config"], ["--config"]])
def test_check_config_and_the_daemon_refuse_a_zero_window_alike(
    tmp_path: Path, command: list[str]
) -> None:
    path = write(tmp_path, minimal_config_dict(windows=["0s"]))
    done = subprocess.run(
        [sys.executable, "-m", "llm_cost_exporter", *command, str(path)],
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )
    assert done.returncode == 2
    assert done.stderr == (
        "llm-cost-exporter: configuration error: windows[0]: duration must be positive, got '0s'\n"
    )
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("address", "parts"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        (" 0.0.0.0:9478 ", ("0.0.0.0", 9478)),
        (":9", (None, 9)),
        ("[::1]:80", ("::1", 80)),
        ("[::]:9100", ("::", 9100)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_listen_address_splits_into_host_and_port(address: str, parts: tuple) -> None:
    assert split_listen_address(address) == parts


@pytest.mark.parametrize(
    "address",
    ["9478", "localhost:", ":", "", "host:http", "host:+80", "host: 80", "host:0",
     "host:65536", "host:80/metrics", "user@host:80", "a b:80", "[::1]", "host:٣"],
)  # fmt: skip
def test_listen_address_rejects(address: str) -> None:
    with pytest.raises(ConfigError, match=r"^--web\.listen-address: "):
        split_listen_address(address, "--web.listen-address")


@pytest.mark.parametrize(("text", "code"), [("USD", "USD"), ("eur", "EUR"), (" chf ", "CHF")])
def test_currency_codes_are_upper_cased(text: str, code: str) -> None:
    assert parse_currency(text, "currency") == code


@pytest.mark.parametrize("text", ["dollars", "US", "U$D", "", 978])
def test_currency_must_be_an_iso_code(text: object) -> None:
    with pytest.raises(ConfigError, match="^--currency: "):
        parse_currency(text, "--currency")


def test_dashboards_refuse_a_bad_currency_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "llm_cost_exporter", "dashboards", "--currency", "dollars",
         "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=scaled(60),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        "llm-cost-exporter: configuration error: --currency: 'DOLLARS' is not an ISO 4217 "
        "code like USD or EUR\n"
    )
    assert list(tmp_path.iterdir()) == []
