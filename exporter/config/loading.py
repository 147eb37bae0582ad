"""From a YAML file (and flag overrides) to a validated Config, and back.

`config_from_mapping` runs every check the file alone allows, so `check-config`
and the daemon reject the same files; only checks that need this machine (the
GPUs NVML lists, the catalog's answer, the port) wait for the start.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.config.errors import ConfigError
from llm_cost_exporter.config.settings import CONFIG, Config, ModelPrice


def config_from_mapping(data: Mapping[str, Any]) -> Config:
    """Validate a parsed YAML document into a Config."""
    return CONFIG.load(data, "")


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML file; errors name the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{line}: invalid YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    return data


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Merge flag/environment overrides (dotted keys) into the file's settings."""
    merged = dict(data)
    for dotted, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = merged
        for part in parents:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[leaf] = value
    return merged


def effective_config_dict(
    config: Config, model_prices: Mapping[str, ApiPrices], default_price: ApiPrices | None
) -> dict[str, Any]:
    """The configuration as the exporter will run it: every field, defaults filled in.

    A catalog reference is printed with the prices it resolved to (`model_prices`,
    `default_price`). The result loads back into the same Config: the catalog is
    looked up again at start and the printed prices are not used.
    """
    out = CONFIG.dump(config)
    printed = out["api_prices"]
    api = config.api_prices
    if _from_catalog(api.default) and default_price is not None:
        printed["default"].update(_price_values(default_price))
    for name, entry in api.models.items():
        if _from_catalog(entry) and name in model_prices:
            printed["models"][name].update(_price_values(model_prices[name]))
    return out


def _from_catalog(entry: ModelPrice | None) -> bool:
    return entry is not None and entry.catalog is not None


def _price_values(prices: ApiPrices) -> dict[str, float]:
    return {
        "input": prices.input,
        "cached_input": prices.cached_input,
        "output": prices.output,
    }
