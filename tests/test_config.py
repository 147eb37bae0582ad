"""Configuration: valid files load, every bad one exits 2 with one line naming the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import minimal_config_dict, render_page
from prometheus_client.parser import text_string_to_metric_families
from realparts.timeouts import scaled

from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.config import ConfigError, config_from_mapping, effective_config_dict


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llm_cost_exporter", *args],
        capture_output=True,
        text=True,
        timeout=scaled(60),
        env=env,
    )


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_minimal_config_has_documented_defaults() -> None:
    config = config_from_mapping(minimal_config_dict())
    assert config.listen_address == "0.0.0.0:9478"
    assert [(e.url, e.type) for e in config.engines] == [("http://127.0.0.1:8000/metrics", "vllm")]
    assert config.interval == 5.0 and config.timeout == 3.0
    assert config.cost.overhead_ratio == 0.0
    assert config.currency == "USD"
    assert config.windows == ("5m", "1h")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cost": None}, "cost"),
        ({"api_prices": None}, "api_prices"),
        ({"api_prices": {"default": {"input": 0.8}}}, "api_prices.default.output"),
        (
            {"api_prices": {"models": {"m": {"input": "cheap", "output": 1}}}},
            "api_prices.models.m.input",
        ),
        ({"api_prices": {"default": {"catalog": "gpt-4o"}}}, "api_prices.default.catalog"),
        (
            {"cost": {"gpus": [{"model": "H100", "count": 8}], "gpu_prices_per_hour": {}}},
            "cost.gpus[0].model",
        ),
        ({"cost": {"gpus": [], "gpu_prices_per_hour": {}}}, "cost.gpu_prices_per_hour"),
        (
            {"cost": {"gpus": [{"model": "A", "count": 1.5}], "gpu_prices_per_hour": {"A": 1}}},
            "cost.gpus[0].count",
        ),
        (
            {"cost": {"gpus": [{"model": "A"}], "gpu_prices_per_hour": {"A": -1}}},
            "cost.gpu_prices_per_hour.A",
        ),
        ({"collection": {"interval": "soon"}}, "collection.interval"),
        ({"collection": {"interval": "5s", "timeout": "10s"}}, "collection.timeout"),
        ({"collection": {"max_page_bytes": "huge"}}, "collection.max_page_bytes"),
        ({"engines": [{"url": "localhost:8000"}]}, "engines[0].url"),
        ({"engines": []}, "engines"),
        ({"web": {"listen_address": "9478"}}, "web.listen_address"),
        ({"projection": {"utilization": 1.5}}, "projection.utilization"),
        (
            {"projection": {"token_mix": {"prompt": 0.5, "generation": 0.4}}},
            "projection.token_mix",
        ),
        ({"projection": {"token_mix": {}}}, "projection.token_mix"),
        ({"projection": {"token_mix": [0.6, 0.4]}}, "projection.token_mix"),
        ({"projection": {"token_mix": {"prompt": 0.5, "foo": 0.5}}}, "projection.token_mix.foo"),
        (
            {"projection": {"token_mix": {"prompt": 1.5, "generation": -0.5}}},
            "projection.token_mix.prompt",
        ),
        (
            {"projection": {"token_mix": {"prompt": 0.5, "generation": "half"}}},
            "projection.token_mix.generation",
        ),
        ({"capacity": {"tokens_per_second": 0}}, "capacity.tokens_per_second"),
        ({"windows": ["5 minutes"]}, "windows[0]"),
        ({"currency": "dollars"}, "currency"),
        ({"cosst": {}}, "cosst"),
        ({"web": {"listen": "x"}}, "web.listen"),
        ({"nvml": {"utilization_source": "sm"}}, "nvml.utilization_source"),
        ({"nvml": {"enabled": "yes"}}, "nvml.enabled"),
        ({"engines": [{"url": "http://a/metrics", "gpus": ["cuda:0"]}]}, "engines[0].gpus[0]"),
        ({"engines": [{"url": "http://a/metrics", "gpus": [0, "MIG-1a"]}]}, "engines[0].gpus[1]"),
        ({"engines": [{"url": "http://a/metrics", "gpus": []}]}, "engines[0].gpus"),
        (
            {
                "engines": [
                    {"url": "http://a/metrics", "gpus": [0, 1]},
                    {"url": "http://b/metrics", "gpus": [2, 1]},
                ]
            },
            "engines[1].gpus[1]",
        ),
        (
            {"engines": [{"url": "http://a/metrics", "capacity_tokens_per_second": 0}]},
            "engines[0].capacity_tokens_per_second",
        ),
        (
            {
                "cost": {
                    "gpu_prices_per_hour": {"H100": 2.0},
                    "owned": {"purchase_prices": {"H100": 1}, "energy_price_per_kwh": 0.1},
                }
            },
            "cost.owned",
        ),
        (
            {"cost": {"owned": {"purchase_prices": {"H100": 30000}}}},
            "cost.owned.energy_price_per_kwh",
        ),
        ({"cost": {"owned": {"energy_price_per_kwh": 0.1}}}, "cost.owned.purchase_prices"),
        (
            {
                "cost": {
                    "owned": {
                        "purchase_prices": {"H100": 1},
                        "energy_price_per_kwh": 0.1,
                        "amortization_months": 0,
                    }
                }
            },
            "cost.owned.amortization_months",
        ),
        (
            {
                "cost": {
                    "owned": {
                        "purchase_prices": {"H100": 1},
                        "energy_price_per_kwh": 0.1,
                        "pue": 0.5,
                    }
                }
            },
            "cost.owned.pue",
        ),
    ],
)
def test_invalid_values_name_the_field(change: dict, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        config_from_mapping(minimal_config_dict(**change))
    message = str(error.value)
    assert message.startswith(field + ":"), message
    assert "\n" not in message


def test_projected_token_mix_fills_missing_kinds_and_is_exported_per_kind() -> None:
    """The plan's mix is what a review compares the real traffic with: every kind is
    present, 0 where the plan has none, and sums within rounding are accepted."""
    config = config_from_mapping(
        minimal_config_dict(projection={"token_mix": {"prompt": 0.7, "generation": 0.3000001}})
    )
    mix = {"prompt": 0.7, "cached_prompt": 0.0, "generation": 0.3000001}
    assert config.projection.token_mix == mix
    assert effective_config_dict(config, {}, None)["projection"]["token_mix"] == mix
    page = render_page(NodeState(config, {}, None))
    shares = {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(page)
        if family.name == "llmcost_projected_token_share"
        for sample in family.samples
    }
    assert shares == mix
    assert "# HELP llmcost_projected_token_share Share of tokens of each kind" in page

    unplanned = config_from_mapping(minimal_config_dict(projection={"utilization": 0.5}))
    assert unplanned.projection.token_mix is None
    assert effective_config_dict(unplanned, {}, None)["projection"]["token_mix"] is None
    assert "llmcost_projected_token_share" not in (render_page(NodeState(unplanned, {}, None)))


def test_invalid_file_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, minimal_config_dict(collection={"interval": "-5s"}))
    done = run_cli("--config", str(path))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "collection.interval" in done.stderr
    assert "Traceback" not in done.stderr


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "cost:\n  gpus: [\n    - model: x\napi_prices: {\n")
    done = run_cli("check-config", str(path))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "line " in done.stderr and "invalid YAML" in done.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    done = run_cli("check-config", str(tmp_path / "absent.yml"))
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_an_empty_config_names_the_missing_prices(tmp_path: Path) -> None:
    path = tmp_path / "empty.yml"
    path.write_text("")
    done = run_cli("--config", str(path))
    assert done.returncode == 2
    assert "cost: missing" in done.stderr


def test_check_config_prints_the_effective_configuration(tmp_path: Path) -> None:
    path = write(tmp_path, minimal_config_dict())
    done = run_cli("check-config", str(path))
    assert done.returncode == 0, done.stderr
    effective = yaml.safe_load(done.stdout)
    assert effective["web"]["listen_address"] == "0.0.0.0:9478"
    assert effective["api_prices"]["default"] == {
        "input": 0.8,
        "cached_input": 0.08,
        "output": 4.0,
    }
    assert effective["cost"]["gpu_prices_per_hour"] == {"A100-80GB": 3.2}


def test_catalog_reference_resolves_through_genai_prices(tmp_path: Path) -> None:
    data = minimal_config_dict(
        api_prices={"models": {"llama": {"catalog": "anthropic/claude-3-5-haiku"}}}
    )
    done = run_cli("check-config", str(write(tmp_path, data)))
    assert done.returncode == 0, done.stderr
    price = yaml.safe_load(done.stdout)["api_prices"]["models"]["llama"]
    assert price == {
        "catalog": "anthropic/claude-3-5-haiku",
        "input": pytest.approx(0.80),
        "cached_input": pytest.approx(0.08),
        "output": pytest.approx(4.00),
    }


def test_unknown_catalog_model_is_an_error_naming_it(tmp_path: Path) -> None:
    data = minimal_config_dict(api_prices={"default": {"catalog": "openai/no-such-model-x"}})
    done = run_cli("check-config", str(write(tmp_path, data)))
    assert done.returncode == 2
    assert "no-such-model-x" in done.stderr and done.stderr.count("\n") == 1


def test_flags_and_environment_override_the_file(tmp_path: Path) -> None:
    from llm_cost_exporter.cli import _overrides, build_parser, load_config

    path = write(tmp_path, minimal_config_dict(collection={"interval": "10s"}))
    args = build_parser().parse_args(
        [
            "--config",
            str(path),
            "--web.listen-address",
            "127.0.0.1:9999",
            "--vllm.target",
            "http://a:1/metrics",
            "--vllm.target",
            "http://b:2/metrics",
        ]
    )
    config = load_config(args.config, _overrides(args))
    assert config.listen_address == "127.0.0.1:9999"
    assert [e.url for e in config.engines] == ["http://a:1/metrics", "http://b:2/metrics"]
    assert config.interval == 10.0


def test_environment_variables_are_read(tmp_path: Path, monkeypatch) -> None:
    from llm_cost_exporter.cli import _overrides, build_parser, load_config

    path = write(tmp_path, minimal_config_dict())
    monkeypatch.setenv("LLMCOST_CONFIG", str(path))
    monkeypatch.setenv("LLMCOST_WEB_LISTEN_ADDRESS", "127.0.0.1:9100")
    monkeypatch.setenv("LLMCOST_VLLM_TARGETS", "http://x:1/metrics, http://y:2/metrics")
    monkeypatch.setenv("LLMCOST_COLLECTION_INTERVAL", "15s")
    args = build_parser().parse_args([])
    config = load_config(args.config, _overrides(args))
    assert config.listen_address == "127.0.0.1:9100"
    assert [e.url for e in config.engines] == ["http://x:1/metrics", "http://y:2/metrics"]
    assert config.interval == 15.0


def test_empty_environment_variables_set_nothing(monkeypatch) -> None:
    """The daemon's flags and the report's options read LLMCOST_ variables alike."""
    from llm_cost_exporter.cli import build_parser

    for name in ("WEB_LISTEN_ADDRESS", "PROMETHEUS_URL", "PROMETHEUS_BEARER_TOKEN"):
        monkeypatch.setenv(f"LLMCOST_{name}", "")
    assert build_parser().parse_args([]).listen_address is None
    assert build_parser().parse_args(["report"]).url == "http://localhost:9090"


def test_report_options_come_from_the_environment(monkeypatch) -> None:
    from llm_cost_exporter.cli import build_parser
    from llm_cost_exporter.tools.report.command import credentials_from

    monkeypatch.setenv("LLMCOST_PROMETHEUS_URL", "http://prom:9090")
    monkeypatch.setenv("LLMCOST_PROMETHEUS_BEARER_TOKEN", "secret")
    args = build_parser().parse_args(["report"])
    assert args.url == "http://prom:9090"
    assert credentials_from(args).bearer_token == "secret"
