"""Configuration: one YAML file, validated at start with errors that name the field.

Every problem raises ConfigError whose message is one line: the dotted path of
the field (and the file line where YAML reports one) and what is wrong. The
CLI prints it and exits 2; nothing here ever lets a traceback reach the user.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from llm_cost_exporter.accounting import costmodel
from llm_cost_exporter.accounting.costmodel import TOKEN_KINDS, ApiPrices
from llm_cost_exporter.accounting.gpu_inventory import match_gpu_price_key
from llm_cost_exporter.collectors.registry import DEFAULT_ENGINE_TYPE, ENGINE_TYPES

DEFAULT_LISTEN_ADDRESS = "0.0.0.0:9478"
DEFAULT_ENGINE_URL = "http://127.0.0.1:8000/metrics"
DEFAULT_WINDOWS = ("5m", "1h")

T = TypeVar("T")


class ConfigError(ValueError):
    """An invalid configuration; the message is the one line shown to the user."""


@dataclass(frozen=True)
class GpuGroup:
    model: str
    count: int


@dataclass(frozen=True)
class OwnedHardware:
    """GPUs the team bought: purchase amortized over months, plus metered energy."""

    purchase_prices: Mapping[str, float]
    amortization_months: float
    energy_price_per_kwh: float
    pue: float = 1.0


@dataclass(frozen=True)
class CostConfig:
    gpus: tuple[GpuGroup, ...] = ()
    """Declared GPUs: billed when NVML cannot list them (see exporter.gpus)."""
    gpu_prices_per_hour: Mapping[str, float] = field(default_factory=dict)
    owned: OwnedHardware | None = None
    node_extra_per_hour: float = 0.0
    overhead_ratio: float = 0.3
    fixed_per_month: float = 0.0

    @property
    def gpu_hourly_by_key(self) -> dict[str, float]:
        """Hourly cost of one GPU per price key: rental price, or amortized purchase."""
        if self.owned is not None:
            return {
                key: costmodel.amortized_hourly_cost(price, self.owned.amortization_months)
                for key, price in self.owned.purchase_prices.items()
            }
        return dict(self.gpu_prices_per_hour)


@dataclass(frozen=True)
class NvmlConfig:
    enabled: bool = True
    utilization_source: str = "auto"
    """Which GPU utilization alerts and dashboards use: `auto` (SM activity where
    the GPU reports it, busy time otherwise), `sm_activity` or `busy_time`."""


@dataclass(frozen=True)
class ModelPrice:
    """An API price given by hand, or a `provider/model` catalog reference."""

    prices: ApiPrices | None = None
    catalog: str | None = None


@dataclass(frozen=True)
class ApiPriceConfig:
    default: ModelPrice | None = None
    models: Mapping[str, ModelPrice] = field(default_factory=dict)

    def catalog_refs(self) -> list[str]:
        entries = [self.default, *self.models.values()]
        return sorted({e.catalog for e in entries if e is not None and e.catalog})


@dataclass(frozen=True)
class CapacityConfig:
    tokens_per_second: float | None = None
    learn: bool = True
    learn_window: float = 300.0


@dataclass(frozen=True)
class Projection:
    utilization: float | None = None
    tokens_per_month: float | None = None
    cost_per_million_tokens: float | None = None
    token_mix: Mapping[str, float] | None = None
    """Share of each token kind the plan assumed, every kind present (0 where not
    given), so a review can tell a cost gap caused by the traffic's mix."""


@dataclass(frozen=True)
class EngineConfig:
    """One inference engine this node runs: where to read it, and what it runs on."""

    url: str
    type: str = DEFAULT_ENGINE_TYPE
    """Which collector reads it (see llm_cost_exporter.collectors.registry)."""
    gpus: tuple[int | str, ...] | None = None
    """GPUs it runs on, by NVML index or UUID; None when not configured."""
    capacity_tokens_per_second: float | None = None
    """Tokens per second it serves at 100% load, where configured."""


@dataclass(frozen=True)
class Config:
    cost: CostConfig
    api_prices: ApiPriceConfig
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    engines: tuple[EngineConfig, ...] = (EngineConfig(DEFAULT_ENGINE_URL),)
    nvml: NvmlConfig = NvmlConfig()
    interval: float = 5.0
    timeout: float = 3.0
    max_page_bytes: int = 16 * 1024 * 1024
    currency: str = "USD"
    capacity: CapacityConfig = CapacityConfig()
    projection: Projection = Projection()
    windows: tuple[str, ...] = DEFAULT_WINDOWS
    state_file: str | None = None
    log_level: str = "info"

    def window_seconds(self) -> dict[str, float]:
        return {name: parse_duration(name, "windows") for name in self.windows}


# --- scalar validators -------------------------------------------------------

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_RE = re.compile(r"^(\d+)\s*(B|KiB|MiB|GiB)?$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def parse_duration(value: Any, where: str) -> float:
    """Seconds from `30s`, `5m`, `1h`, `1d` or a plain number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value).strip())
        if not match:
            raise ConfigError(f"{where}: {value!r} is not a duration (e.g. 5s, 1m, 1h)")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not seconds > 0 or math.isinf(seconds):
        raise ConfigError(f"{where}: duration must be positive, got {value!r}")
    return seconds


def _number(value: Any, where: str, minimum: float = 0.0, maximum: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: must be a number, got {value!r}")
    number = float(value)
    if math.isnan(number) or not minimum <= number <= maximum:
        bound = f"between {minimum:g} and {maximum:g}" if maximum < math.inf else f">= {minimum:g}"
        raise ConfigError(f"{where}: must be {bound}, got {value!r}")
    return number


def _size(value: Any, where: str) -> int:
    match = _SIZE_RE.match(str(value).strip())
    if isinstance(value, bool) or not match:
        raise ConfigError(f"{where}: {value!r} is not a size (e.g. 16MiB)")
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if size <= 0:
        raise ConfigError(f"{where}: must be positive, got {value!r}")
    return size


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a non-empty string, got {value!r}")
    return value.strip()


def _listen_address(value: Any, where: str) -> str:
    text = _text(value, where)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: {text!r} is not HOST:PORT")
    return text


def _engine_url(value: Any, where: str) -> str:
    text = _text(value, where)
    if not re.match(r"^https?://[^/\s]+", text):
        raise ConfigError(f"{where}: {text!r} is not an http(s) URL")
    return text


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping, got {type(value).__name__}")
    return value


def _only_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            path = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"{path}: unknown field (allowed: {', '.join(sorted(allowed))})")


def _optional(data: Mapping[str, Any], key: str, convert: Callable[[Any, str], T], where: str):
    if data.get(key) is None:
        return None
    return convert(data[key], f"{where}.{key}" if where else key)


# --- sections -----------------------------------------------------------------


def _price_table(data: Any, where: str) -> dict[str, float]:
    return {
        _text(name, where): _number(price, f"{where}.{name}")
        for name, price in _mapping(data, where).items()
    }


def _owned(data: Any, where: str) -> OwnedHardware:
    section = _mapping(data, where)
    _only_keys(
        section, {"purchase_prices", "amortization_months", "energy_price_per_kwh", "pue"}, where
    )
    purchase = _price_table(section.get("purchase_prices"), f"{where}.purchase_prices")
    if not purchase:
        raise ConfigError(f"{where}.purchase_prices: missing; give each GPU model's purchase price")
    if section.get("energy_price_per_kwh") is None:
        raise ConfigError(f"{where}.energy_price_per_kwh: missing; give the electricity tariff")
    months = _number(section.get("amortization_months", 36), f"{where}.amortization_months")
    if months <= 0:
        raise ConfigError(f"{where}.amortization_months: must be > 0, got {months:g}")
    return OwnedHardware(
        purchase_prices=purchase,
        amortization_months=months,
        energy_price_per_kwh=_number(
            section["energy_price_per_kwh"], f"{where}.energy_price_per_kwh"
        ),
        pue=_number(section.get("pue", 1.0), f"{where}.pue", 1.0, 5.0),
    )


def _cost(data: Any) -> CostConfig:
    where = "cost"
    if data is None:
        raise ConfigError("cost: missing; give the hourly prices of the node's GPUs")
    section = _mapping(data, where)
    _only_keys(
        section,
        {
            "gpus",
            "gpu_prices_per_hour",
            "owned",
            "node_extra_per_hour",
            "overhead_ratio",
            "fixed_per_month",
        },
        where,
    )
    prices = _price_table(section.get("gpu_prices_per_hour"), f"{where}.gpu_prices_per_hour")
    owned = _optional(section, "owned", _owned, where)
    if owned is not None and prices:
        raise ConfigError(
            f"{where}.owned: give either gpu_prices_per_hour (rented) or owned (bought), not both"
        )
    price_keys = owned.purchase_prices if owned is not None else prices
    table = (
        f"{where}.owned.purchase_prices" if owned is not None else f"{where}.gpu_prices_per_hour"
    )
    raw_gpus = section.get("gpus") or []
    if not isinstance(raw_gpus, list):
        raise ConfigError(f"{where}.gpus: must be a list of {{model, count}}")
    gpus = []
    for index, entry in enumerate(raw_gpus):
        at = f"{where}.gpus[{index}]"
        entry = _mapping(entry, at)
        _only_keys(entry, {"model", "count"}, at)
        model = _text(entry.get("model"), f"{at}.model")
        count = _number(entry.get("count", 1), f"{at}.count", minimum=1)
        if count != int(count):
            raise ConfigError(f"{at}.count: must be a whole number, got {entry.get('count')!r}")
        if match_gpu_price_key(model, price_keys) is None:
            raise ConfigError(f"{at}.model: no key of {table} matches GPU model {model!r}")
        gpus.append(GpuGroup(model, int(count)))
    cost = CostConfig(
        gpus=tuple(gpus),
        gpu_prices_per_hour=prices,
        owned=owned,
        node_extra_per_hour=_optional(section, "node_extra_per_hour", _number, where) or 0.0,
        overhead_ratio=_number(
            section.get("overhead_ratio", 0.3), f"{where}.overhead_ratio", 0, 10
        ),
        fixed_per_month=_optional(section, "fixed_per_month", _number, where) or 0.0,
    )
    if not price_keys and cost.node_extra_per_hour <= 0:
        raise ConfigError(
            f"{where}.gpu_prices_per_hour: no hourly cost configured; price the node's GPU "
            "models (or set node_extra_per_hour for a CPU-only node)"
        )
    return cost


def _nvml(data: Any) -> NvmlConfig:
    where = "nvml"
    section = _mapping(data, where)
    _only_keys(section, {"enabled", "utilization_source"}, where)
    enabled = section.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}.enabled: must be true or false, got {enabled!r}")
    source = str(section.get("utilization_source", "auto"))
    if source not in ("auto", "sm_activity", "busy_time"):
        raise ConfigError(
            f"{where}.utilization_source: must be auto, sm_activity or busy_time, got {source!r}"
        )
    return NvmlConfig(enabled=enabled, utilization_source=source)


def _model_price(data: Any, where: str) -> ModelPrice:
    if isinstance(data, str):
        data = {"catalog": data}
    entry = _mapping(data, where)
    _only_keys(entry, {"catalog", "input", "cached_input", "output"}, where)
    if entry.get("catalog") is not None:
        if set(entry) - {"catalog"}:
            raise ConfigError(f"{where}: give either catalog or input/output prices, not both")
        ref = _text(entry["catalog"], f"{where}.catalog")
        if ref.count("/") != 1 or not all(ref.split("/")):
            raise ConfigError(f"{where}.catalog: {ref!r} is not provider/model")
        return ModelPrice(catalog=ref)
    for key in ("input", "output"):
        if entry.get(key) is None:
            raise ConfigError(f"{where}.{key}: missing API price per 1M tokens")
    price_in = _number(entry["input"], f"{where}.input")
    cached = entry.get("cached_input")
    return ModelPrice(
        prices=ApiPrices(
            input=price_in,
            cached_input=price_in if cached is None else _number(cached, f"{where}.cached_input"),
            output=_number(entry["output"], f"{where}.output"),
        )
    )


def _api_prices(data: Any) -> ApiPriceConfig:
    where = "api_prices"
    if data is None:
        raise ConfigError(
            "api_prices: missing; give the API prices to compare with (default or per model)"
        )
    section = _mapping(data, where)
    _only_keys(section, {"default", "models"}, where)
    models = {
        str(name): _model_price(entry, f"{where}.models.{name}")
        for name, entry in _mapping(section.get("models"), f"{where}.models").items()
    }
    default = _optional(section, "default", _model_price, where)
    if default is None and not models:
        raise ConfigError(f"{where}: no prices; set {where}.default or {where}.models")
    return ApiPriceConfig(default=default, models=models)


def _capacity(data: Any) -> CapacityConfig:
    where = "capacity"
    section = _mapping(data, where)
    _only_keys(section, {"tokens_per_second", "learn", "learn_window"}, where)
    learn = section.get("learn", True)
    if not isinstance(learn, bool):
        raise ConfigError(f"{where}.learn: must be true or false, got {learn!r}")
    tps = _optional(section, "tokens_per_second", _number, where)
    if tps is not None and tps <= 0:
        raise ConfigError(f"{where}.tokens_per_second: must be > 0, got {tps!r}")
    return CapacityConfig(
        tokens_per_second=tps,
        learn=learn,
        learn_window=parse_duration(section.get("learn_window", "5m"), f"{where}.learn_window"),
    )


TOKEN_MIX_TOLERANCE = 1e-6


def _token_mix(data: Any, where: str) -> dict[str, float]:
    """Shares by token kind; kinds not given are 0, and the shares must make a whole."""
    section = _mapping(data, where)
    _only_keys(section, set(TOKEN_KINDS), where)
    given = {kind: _number(share, f"{where}.{kind}", 0.0, 1.0) for kind, share in section.items()}
    total = math.fsum(given.values())
    if abs(total - 1.0) > TOKEN_MIX_TOLERANCE:
        raise ConfigError(f"{where}: the shares must sum to 1, got {total:.10g}")
    return {kind: given.get(kind, 0.0) for kind in TOKEN_KINDS}


def _projection(data: Any) -> Projection:
    where = "projection"
    section = _mapping(data, where)
    _only_keys(
        section,
        {"utilization", "tokens_per_month", "cost_per_million_tokens", "token_mix"},
        where,
    )
    return Projection(
        utilization=_optional(section, "utilization", lambda v, w: _number(v, w, 0.0, 1.0), where),
        tokens_per_month=_optional(section, "tokens_per_month", _number, where),
        cost_per_million_tokens=_optional(section, "cost_per_million_tokens", _number, where),
        token_mix=_optional(section, "token_mix", _token_mix, where),
    )


def _gpu_refs(data: Any, where: str) -> tuple[int | str, ...]:
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{where}: must be a non-empty list of GPU indices or UUIDs")
    refs: list[int | str] = []
    for position, ref in enumerate(data):
        at = f"{where}[{position}]"
        if isinstance(ref, int) and not isinstance(ref, bool) and ref >= 0:
            refs.append(ref)
        elif isinstance(ref, str) and ref.strip().startswith("GPU-"):
            refs.append(ref.strip())
        else:
            raise ConfigError(
                f"{at}: {ref!r} is neither a GPU index nor a GPU- UUID "
                "(cost is split by whole GPU, not by MIG instance)"
            )
    return tuple(refs)


def _engines(data: Any) -> tuple[EngineConfig, ...]:
    if data is None:
        return (EngineConfig(DEFAULT_ENGINE_URL),)
    if not isinstance(data, list) or not data:
        raise ConfigError("engines: must be a non-empty list of {url: ...}")
    engines: list[EngineConfig] = []
    claimed: dict[int | str, int] = {}
    for index, entry in enumerate(data):
        at = f"engines[{index}]"
        if isinstance(entry, str):
            entry = {"url": entry}
        entry = _mapping(entry, at)
        _only_keys(entry, {"url", "type", "gpus", "capacity_tokens_per_second"}, at)
        url = _engine_url(entry.get("url"), f"{at}.url")
        if any(e.url == url for e in engines):
            raise ConfigError(f"{at}.url: {url} is listed twice")
        engine_type = _text(entry.get("type", DEFAULT_ENGINE_TYPE), f"{at}.type")
        if engine_type not in ENGINE_TYPES:
            raise ConfigError(
                f"{at}.type: unknown engine type {engine_type!r} "
                f"(known: {', '.join(sorted(ENGINE_TYPES))})"
            )
        refs = None
        if entry.get("gpus") is not None:
            refs = _gpu_refs(entry["gpus"], f"{at}.gpus")
            for position, ref in enumerate(refs):
                key = ref.lower() if isinstance(ref, str) else ref
                if key in claimed:
                    raise ConfigError(
                        f"{at}.gpus[{position}]: GPU {ref!r} is already claimed by "
                        f"engines[{claimed[key]}]; each engine runs on its own GPUs"
                    )
                claimed[key] = index
        tps = _optional(entry, "capacity_tokens_per_second", _number, at)
        if tps is not None and tps <= 0:
            raise ConfigError(f"{at}.capacity_tokens_per_second: must be > 0, got {tps:g}")
        engines.append(EngineConfig(url, engine_type, refs, tps))
    return tuple(engines)


def _windows(data: Any) -> tuple[str, ...]:
    if data is None:
        return DEFAULT_WINDOWS
    if not isinstance(data, list) or not data:
        raise ConfigError("windows: must be a non-empty list of durations like 5m, 1h")
    names = tuple(str(w).strip() for w in data)
    for index, name in enumerate(names):
        if not _DURATION_RE.match(name):
            raise ConfigError(f"windows[{index}]: {name!r} is not a duration like 5m or 1h")
    return names


TOP_LEVEL = {
    "currency",
    "web",
    "collection",
    "engines",
    "cost",
    "api_prices",
    "capacity",
    "projection",
    "windows",
    "state_file",
    "log_level",
    "nvml",
}


def config_from_mapping(data: Mapping[str, Any]) -> Config:
    """Validate a parsed YAML document into a Config."""
    data = _mapping(data, "(top level)")
    _only_keys(data, TOP_LEVEL, "")
    web = _mapping(data.get("web"), "web")
    _only_keys(web, {"listen_address"}, "web")
    collection = _mapping(data.get("collection"), "collection")
    _only_keys(collection, {"interval", "timeout", "max_page_bytes"}, "collection")
    interval = parse_duration(collection.get("interval", "5s"), "collection.interval")
    timeout = parse_duration(
        collection.get("timeout", min(3.0, interval * 0.8)), "collection.timeout"
    )
    if timeout >= interval:
        raise ConfigError(
            f"collection.timeout: {timeout:g}s must be shorter than collection.interval "
            f"({interval:g}s), or a slow engine would delay every cycle"
        )
    currency = _text(data.get("currency", "USD"), "currency").upper()
    if not re.match(r"^[A-Z]{3}$", currency):
        raise ConfigError(f"currency: {currency!r} is not an ISO 4217 code like USD or EUR")
    log_level = _text(data.get("log_level", "info"), "log_level").lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log_level: must be debug, info, warning or error, got {log_level!r}")
    return Config(
        cost=_cost(data.get("cost")),
        api_prices=_api_prices(data.get("api_prices")),
        listen_address=_listen_address(
            web.get("listen_address", DEFAULT_LISTEN_ADDRESS), "web.listen_address"
        ),
        engines=_engines(data.get("engines")),
        nvml=_nvml(data.get("nvml")),
        interval=interval,
        timeout=timeout,
        max_page_bytes=_size(
            collection.get("max_page_bytes", "16MiB"), "collection.max_page_bytes"
        ),
        currency=currency,
        capacity=_capacity(data.get("capacity")),
        projection=_projection(data.get("projection")),
        windows=_windows(data.get("windows")),
        state_file=_optional(data, "state_file", _text, ""),
        log_level=log_level,
    )


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
    """The configuration as the exporter will run it, catalog prices resolved."""

    def price(entry: ModelPrice, prices: ApiPrices) -> dict[str, Any]:
        out: dict[str, Any] = {"catalog": entry.catalog} if entry.catalog else {}
        out.update(input=prices.input, cached_input=prices.cached_input, output=prices.output)
        return out

    default = config.api_prices.default

    return {
        "currency": config.currency,
        "web": {"listen_address": config.listen_address},
        "collection": {
            "interval": f"{config.interval:g}s",
            "timeout": f"{config.timeout:g}s",
            "max_page_bytes": config.max_page_bytes,
        },
        "engines": [_engine_entry(engine) for engine in config.engines],
        "nvml": {
            "enabled": config.nvml.enabled,
            "utilization_source": config.nvml.utilization_source,
        },
        "cost": {
            "gpus": [{"model": g.model, "count": g.count} for g in config.cost.gpus],
            **_gpu_prices_entry(config.cost),
            "node_extra_per_hour": config.cost.node_extra_per_hour,
            "overhead_ratio": config.cost.overhead_ratio,
            "fixed_per_month": config.cost.fixed_per_month,
        },
        "api_prices": {
            **({"default": price(default, default_price)} if default and default_price else {}),
            "models": {
                name: price(entry, model_prices[name])
                for name, entry in config.api_prices.models.items()
            },
        },
        "capacity": {
            "tokens_per_second": config.capacity.tokens_per_second,
            "learn": config.capacity.learn,
            "learn_window": f"{config.capacity.learn_window:g}s",
        },
        "projection": {
            "utilization": config.projection.utilization,
            "tokens_per_month": config.projection.tokens_per_month,
            "cost_per_million_tokens": config.projection.cost_per_million_tokens,
            "token_mix": (
                dict(config.projection.token_mix)
                if config.projection.token_mix is not None
                else None
            ),
        },
        "windows": list(config.windows),
        "state_file": config.state_file,
        "log_level": config.log_level,
    }


def _engine_entry(engine: EngineConfig) -> dict[str, Any]:
    entry: dict[str, Any] = {"url": engine.url, "type": engine.type}
    if engine.gpus is not None:
        entry["gpus"] = list(engine.gpus)
    if engine.capacity_tokens_per_second is not None:
        entry["capacity_tokens_per_second"] = engine.capacity_tokens_per_second
    return entry


def _gpu_prices_entry(cost: CostConfig) -> dict[str, Any]:
    if cost.owned is None:
        return {"gpu_prices_per_hour": dict(cost.gpu_prices_per_hour)}
    owned = cost.owned
    return {
        "owned": {
            "purchase_prices": dict(owned.purchase_prices),
            "amortization_months": owned.amortization_months,
            "energy_price_per_kwh": owned.energy_price_per_kwh,
            "pue": owned.pue,
        }
    }
