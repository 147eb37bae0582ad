"""What check-config prints loads back into the configuration it was printed from."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import minimal_config_dict
from realparts.timeouts import scaled

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.collectors.credentials import BasicAuth
from llm_cost_exporter.config import Config, config_from_mapping, effective_config_dict

README = (Path(__file__).parent.parent / "README.md").read_text()

HAIKU = ApiPrices(input=0.8, cached_input=0.08, output=4.0)
GPT = ApiPrices(input=2.5, cached_input=1.25, output=10.0)
CATALOG = {"anthropic/claude-3-5-haiku": HAIKU, "openai/gpt-4o": GPT}


def readme_example() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", README, re.DOTALL)
    return yaml.safe_load(next(b for b in blocks if "api_prices:" in b))


CONFIGS = {
    "minimal": minimal_config_dict(),
    "rented": minimal_config_dict(
        currency="eur",
        web={"listen_address": "[::1]:9100"},
        collection={"interval": "1.5s", "max_page_bytes": 1000},
        engines=[
            "http://127.0.0.1:8000/metrics",
            {
                "url": "http://127.0.0.1:8001/metrics",
                "type": "vllm",
                "gpus": [1, "GPU-5c3e0a4e-8f1d-4b7e-9a43-6f0d2c9e1b77"],
                "capacity_tokens_per_second": 4000,
            },
        ],
        cost={
            "gpus": [{"model": "A100-80GB", "count": 2}, {"model": "H100"}],
            "gpu_prices_per_hour": {"A100*80GB*": 1.79, "H100": 2.99},
            "node_extra_per_hour": 0.4,
            "fixed_per_month": 730,
        },
        capacity={"tokens_per_second": 12000, "learn": False, "learn_window": "90s"},
        windows=["30s", "5m", "1d"],
        state_file="/var/lib/llm-cost-exporter/state.json",
        log_level="DEBUG",
        nvml={"enabled": False, "utilization_source": "busy_time"},
    ),
    "owned": minimal_config_dict(
        cost={
            "owned": {
                "purchase_prices": {"H100": 30000, "A100": 12000.5},
                "amortization_months": 48,
                "energy_price_per_kwh": 0.12,
                "pue": 1.3,
            },
            "gpus": [{"model": "H100", "count": 8}],
            "overhead_ratio": 0.25,
        }
    ),
    "projection": minimal_config_dict(
        projection={
            "utilization": 0.6,
            "tokens_per_month": 25e9,
            "cost_per_million_tokens": 0.75,
            "token_mix": {"prompt": 0.55, "generation": 0.45},
        },
        collection={"interval": "1m", "timeout": "2500ms"},
    ),
    "catalog": minimal_config_dict(
        api_prices={
            "default": "anthropic/claude-3-5-haiku",
            "models": {
                "gpt": {"catalog": "openai/gpt-4o"},
                "llama": {"input": 0.2, "output": 0.6},
            },
        }
    ),
}


def printed(config: Config) -> dict[str, Any]:
    """effective_config_dict with every catalog reference resolved, through YAML text."""
    api = config.api_prices
    models = {name: entry.prices or CATALOG[entry.catalog] for name, entry in api.models.items()}
    default = api.default and (api.default.prices or CATALOG[api.default.catalog])
    return yaml.safe_load(yaml.safe_dump(effective_config_dict(config, models, default)))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_printout_loads_back_into_the_same_config(name: str) -> None:
    config = config_from_mapping(CONFIGS[name])
    assert config_from_mapping(printed(config)) == config


def test_the_readme_example_round_trips() -> None:
    config = config_from_mapping(readme_example())
    assert config.api_prices.default.catalog == "anthropic/claude-3-5-haiku"
    assert config_from_mapping(printed(config)) == config


def test_catalog_references_are_printed_with_their_prices_and_load_as_references() -> None:
    config = config_from_mapping(CONFIGS["catalog"])
    out = printed(config)["api_prices"]
    assert out["default"] == {
        "catalog": "anthropic/claude-3-5-haiku",
        "input": 0.8,
        "cached_input": 0.08,
        "output": 4.0,
    }
    assert out["models"]["llama"] == {"input": 0.2, "cached_input": 0.2, "output": 0.6}
    reloaded = config_from_mapping(printed(config)).api_prices
    assert reloaded.models["gpt"].prices is None
    assert reloaded.catalog_refs() == ["anthropic/claude-3-5-haiku", "openai/gpt-4o"]


def test_durations_and_sizes_print_in_units_that_read_back_exactly() -> None:
    config = config_from_mapping(CONFIGS["rented"])
    out = printed(config)
    assert out["collection"] == {
        "interval": "1.5s",
        "timeout": f"{1.5 * 0.8!r}s",
        "max_page_bytes": 1000,
    }
    assert out["capacity"]["learn_window"] == "90s"
    assert printed(config_from_mapping(minimal_config_dict()))["collection"] == {
        "interval": "5s",
        "timeout": "3s",
        "max_page_bytes": "16MiB",
    }


def test_check_config_output_is_itself_a_valid_file(tmp_path: Path) -> None:
    """The real catalog: check-config's printout, checked again, prints the same."""
    first = tmp_path / "first.yml"
    first.write_text(yaml.safe_dump(CONFIGS["catalog"]))

    def check(path: Path) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "llm_cost_exporter", "check-config", str(path)],
            capture_output=True,
            text=True,
            timeout=scaled(120),
        )
        assert done.returncode == 0, done.stderr
        return "\n".join(line for line in done.stdout.splitlines() if not line.startswith("#"))

    second = tmp_path / "second.yml"
    second.write_text(check(first))
    assert check(second) == second.read_text()


def check_config_comments(tmp_path: Path, data: dict[str, Any]) -> tuple[list[str], str]:
    """check-config's comment lines, and the YAML it prints after them."""
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [sys.executable, "-m", "llm_cost_exporter", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    comments = [line for line in lines if line.startswith("#")]
    return comments, "\n".join(line for line in lines if not line.startswith("#"))


def test_check_config_states_the_money_defaults_in_effect(tmp_path: Path) -> None:
    rented = minimal_config_dict(nvml={"enabled": False})
    del rented["cost"]["overhead_ratio"]
    rented["api_prices"]["default"].pop("cached_input")
    comments, printout = check_config_comments(tmp_path, rented)
    assert "# A month is 730 h: cost.fixed_per_month and the amortized" in comments
    defaults = comments[comments.index("# Defaults in effect that change what is billed:") + 1 :]
    assert defaults[:4] == [
        "#   cost.node_extra_per_hour: 0",
        "#   cost.overhead_ratio: 0.3",
        "#   cost.fixed_per_month: 0",
        "#   api_prices.default.cached_input: the input price",
    ]
    assert yaml.safe_load(printout)["cost"]["overhead_ratio"] == 0.3
    assert config_from_mapping(yaml.safe_load(printout)).cost.overhead_ratio == 0.3

    owned = CONFIGS["owned"] | {"nvml": {"enabled": False}}
    del owned["cost"]["owned"]["pue"], owned["cost"]["owned"]["amortization_months"]
    comments, _ = check_config_comments(tmp_path, owned)
    assert "#   cost.owned.amortization_months: 36" in comments
    assert "#   cost.owned.pue: 1" in comments
    assert not any("overhead_ratio" in line for line in comments)  # given: 0.25


def test_the_readme_states_every_money_default() -> None:
    """The defaults check-config can list are the ones the README's notes name."""
    from llm_cost_exporter.config.loading import money_defaults

    notes = README[README.index("- **Money defaults.**") :].split("\n- ", 1)[0]
    for line in money_defaults(minimal_config_dict(cost={"owned": {}}, api_prices={"default": {}})):
        field, default = line.split(": ")
        assert f"{field.rsplit('.', 1)[-1]}`" in notes, field
    assert "**0.3**" in notes and "**730 h**" in notes


INLINE_SECRET = "s3cr3t-Pa55"


def test_the_printout_hides_inline_secrets_and_still_loads(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(INLINE_SECRET)
    config = config_from_mapping(
        minimal_config_dict(
            engines=[
                f"http://u:{INLINE_SECRET}@127.0.0.1:8000/metrics",
                {"url": "http://127.0.0.1:8001/metrics", "bearer_token_file": str(token)},
                {
                    "url": "http://127.0.0.1:8002/metrics",
                    "basic_auth": {"username": "v", "password": INLINE_SECRET},
                },
            ]
        )
    )
    text = yaml.safe_dump(effective_config_dict(config, {}, None))
    assert INLINE_SECRET not in text and INLINE_SECRET not in repr(config)
    printed = yaml.safe_load(text)
    assert printed["engines"][0]["url"] == "http://127.0.0.1:8000/metrics"
    assert printed["engines"][0]["basic_auth"] == {
        "username": "u",
        "password": "<secret>",
        "password_file": None,
    }
    assert printed["engines"][1]["bearer_token_file"] == str(token)
    reloaded = config_from_mapping(printed)
    assert reloaded.engines[1] == config.engines[1]
    assert [e.basic_auth for e in reloaded.engines] == [
        BasicAuth("u", "<secret>"),
        None,
        BasicAuth("v", "<secret>"),
    ]
