"""From a YAML file (and flag overrides) to a validated Config, and back.

`config_from_mapping` runs every check the file alone allows, so `check-config`
and the daemon reject the same files; only checks that need this machine (the
GPUs NVML lists, the catalog's answer, the port) wait for the start.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.config import safe_yaml
from llm_cost_exporter.config.errors import ConfigError, child
from llm_cost_exporter.config.schema import MapOf, Section, default_text
from llm_cost_exporter.config.settings import CONFIG, Config, ModelPrice

MAX_FILE_BYTES = 256 * 1024


def config_from_mapping(data: Mapping[str, Any]) -> Config:
    """Validate a parsed YAML document into a Config."""
    return CONFIG.load(data, "")


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML file; errors name the file and the line, or the field."""
    text = _read_text(path)
    try:
        data = safe_yaml.load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = error.problem or error.context
        raise ConfigError(f"{path}:{line} invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as error:
        raise ConfigError(
            f"{path}: character {error.position + 1}: invalid YAML: "
            f"control character #x{error.character:04x} is not allowed"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of settings, got {type(data).__name__}"
        )
    return data


def _read_text(path: Path) -> str:
    """The file's text: at most MAX_FILE_BYTES of UTF-8 (a byte-order mark is dropped)."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: byte {error.start + 1}: not UTF-8 text") from None


def read_config(path: str | None, overrides: Mapping[str, Any]) -> tuple[Config, dict[str, Any]]:
    """The validated configuration from a file (none: defaults) and flag overrides,
    with the settings as given. Every failure is a ConfigError: one the checks
    did not foresee still becomes one line naming the file, never a traceback."""
    try:
        data = apply_overrides(load_yaml(Path(path)) if path else {}, overrides)
        return config_from_mapping(data), data
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - the last resort named above
        where = path or "configuration"
        detail = str(error)[:200]
        raise ConfigError(f"{where}: cannot load: {type(error).__name__}: {detail}") from None


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


def money_defaults(data: Mapping[str, Any]) -> list[str]:
    """`path: default` of every setting that changes what is billed and was left
    to its default in `data` (the settings as given), for check-config to say so."""
    return list(_money_defaults(CONFIG, data, ""))


def _money_defaults(node: Any, value: Any, where: str) -> Iterator[str]:
    if isinstance(node, MapOf) and isinstance(value, dict):
        for key, item in value.items():
            yield from _money_defaults(node.value, item, child(where, key))
        return
    if not isinstance(node, Section) or not isinstance(value, dict):
        return
    if node.shorthand is not None and node.shorthand in value:
        return  # its values come from what the shorthand names
    for entry in node.settings:
        source = value.get(entry.group, {}) if entry.group else value
        given = source.get(entry.name) if isinstance(source, dict) else None
        path = node.path_of(entry, where)
        if given is None and entry.money:
            yield f"{path}: {default_text(entry).strip('`')}"
        elif given is not None:
            yield from _money_defaults(entry.node, given, path)
