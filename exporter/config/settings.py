"""The exporter's configuration, declared once: each dataclass field is a setting
with its type, default and one-line documentation, and each section lists the
rules that tie its settings together.

The parser, the allowed keys, the defaults, `check-config`'s printout and the
README's reference table are all derived from these declarations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm_cost_exporter.accounting import costmodel
from llm_cost_exporter.accounting.costmodel import HOURS_PER_MONTH, TOKEN_KINDS, ApiPrices
from llm_cost_exporter.accounting.gpu_inventory import match_gpu_price_key
from llm_cost_exporter.collectors.credentials import BasicAuth, BearerTokenFile, Credentials
from llm_cost_exporter.collectors.registry import DEFAULT_ENGINE_TYPE, ENGINE_TYPES
from llm_cost_exporter.config.errors import ConfigError, child
from llm_cost_exporter.config.otlp_settings import OTLP, OtlpConfig
from llm_cost_exporter.config.scalars import (
    CatalogRef,
    Choice,
    Currency,
    Duration,
    Flag,
    GpuRef,
    HttpUrl,
    ListenAddress,
    Number,
    Secret,
    SecretFile,
    Size,
    Text,
    Whole,
    WindowName,
    format_duration,
    parse_duration,
)
from llm_cost_exporter.config.schema import (
    ListOf,
    Loaded,
    MapOf,
    Section,
    Setting,
    dataclass_section,
    setting,
)
from llm_cost_exporter.config.urls import first_duplicate, split_userinfo

DEFAULT_LISTEN_ADDRESS = "0.0.0.0:9478"
DEFAULT_ENGINE_URL = "http://127.0.0.1:8000/metrics"
DEFAULT_WINDOWS = ("5m", "1h")
TOKEN_MIX_TOLERANCE = 1e-6
LOG_LEVELS = ("debug", "info", "warning", "error")

PRICE = Number()
SHARE = Number(0.0, 1.0)
MONTH = f"{HOURS_PER_MONTH:g} h"

MAX_GPUS = 64
"""GPUs one node may declare or claim: far above any real node, low enough that a
mistyped count cannot hang the start."""
MAX_ENGINES = 64
MAX_WINDOWS = 8
"""Each window is a label value of the windowed gauges."""
LONGEST_WINDOW = 86400.0
"""Longer spans belong to Prometheus (`increase()` over the counters)."""
MAX_HISTORY_POINTS = 100_000
"""Collection cycles the longest window (or learn_window) may span: the history
holds one point per cycle, per node and per model."""
MAX_PAGE_BYTES = 256 * 1024**2


# --- cost -------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuGroup:
    model: str = setting(
        Text(), "GPU model, matched against the price keys", missing="missing; give the GPU model"
    )
    count: int = setting(Whole(1, MAX_GPUS), "How many GPUs of this model", 1)


GPU_GROUP = dataclass_section(GpuGroup)


_NO_PURCHASE_PRICES = "missing; give each GPU model's purchase price"


def _purchase_prices_given(loaded: Loaded) -> None:
    if not loaded["purchase_prices"]:
        raise ConfigError(f"{loaded.path('purchase_prices')}: {_NO_PURCHASE_PRICES}")


@dataclass(frozen=True)
class OwnedHardware:
    """GPUs the team bought: purchase amortized over months, plus metered energy."""

    purchase_prices: Mapping[str, float] = setting(
        MapOf(PRICE, "model"),
        "Purchase price per GPU, keyed by model name like hourly prices",
        missing=_NO_PURCHASE_PRICES,
    )
    amortization_months: float = setting(
        Number(above=True),
        f"The purchase is spread evenly over this many months of {MONTH}",
        36.0,
        money=True,
    )
    energy_price_per_kwh: float = setting(
        PRICE,
        "Electricity tariff, applied to the energy the GPUs draw",
        missing="missing; give the electricity tariff",
        kw_only=True,
    )
    pue: float = setting(
        Number(1.0, 5.0),
        "Facility power over IT power (cooling etc.), applied to energy",
        1.0,
        money=True,
    )


OWNED = dataclass_section(OwnedHardware, rules=(_purchase_prices_given,))


def _rented_or_owned(loaded: Loaded) -> None:
    if loaded["owned"] is not None and loaded["gpu_prices_per_hour"]:
        raise ConfigError(
            f"{loaded.path('owned')}: give either gpu_prices_per_hour (rented) "
            "or owned (bought), not both"
        )


def _declared_gpus_priced(loaded: Loaded) -> None:
    owned = loaded["owned"]
    keys = owned.purchase_prices if owned is not None else loaded["gpu_prices_per_hour"]
    table = (
        child(loaded.path("owned"), "purchase_prices")
        if owned is not None
        else loaded.path("gpu_prices_per_hour")
    )
    for index, group in enumerate(loaded["gpus"]):
        if match_gpu_price_key(group.model, keys) is None:
            raise ConfigError(
                f"{loaded.path('gpus')}[{index}].model: no key of {table} "
                f"matches GPU model {group.model!r}"
            )


def _gpus_within_bound(loaded: Loaded) -> None:
    total = sum(group.count for group in loaded["gpus"])
    if total > MAX_GPUS:
        raise ConfigError(f"{loaded.path('gpus')}: {total} GPUs; a node has at most {MAX_GPUS}")


def _some_hourly_cost(loaded: Loaded) -> None:
    owned = loaded["owned"]
    keys = owned.purchase_prices if owned is not None else loaded["gpu_prices_per_hour"]
    if not keys and loaded["node_extra_per_hour"] <= 0:
        raise ConfigError(
            f"{loaded.path('gpu_prices_per_hour')}: no hourly cost configured; price the "
            "node's GPU models (or set node_extra_per_hour for a CPU-only node)"
        )


@dataclass(frozen=True)
class CostConfig:
    gpu_prices_per_hour: Mapping[str, float] = setting(
        MapOf(PRICE, "model"), "Rented GPUs: price per GPU per hour, keyed by model name", {}
    )
    owned: OwnedHardware | None = setting(
        OWNED, "GPUs the team bought, instead of gpu_prices_per_hour", None
    )
    gpus: tuple[GpuGroup, ...] = setting(
        ListOf(GPU_GROUP, "{model, count}", max_items=MAX_GPUS),
        "The node's GPUs, billed when NVML cannot list them",
        (),
    )
    node_extra_per_hour: float = setting(
        PRICE, "CPU, RAM, disk and network of the node", 0.0, money=True
    )
    overhead_ratio: float = setting(
        Number(0.0, 10.0),
        "Ops, safety margin, evals, storage, on top of the hourly cost",
        0.3,
        money=True,
    )
    fixed_per_month: float = setting(
        PRICE, f"Engineering time etc., amortized over {MONTH} a month", 0.0, money=True
    )

    @property
    def gpu_hourly_by_key(self) -> dict[str, float]:
        """Hourly cost of one GPU per price key: rental price, or amortized purchase."""
        if self.owned is not None:
            return {
                key: costmodel.amortized_hourly_cost(price, self.owned.amortization_months)
                for key, price in self.owned.purchase_prices.items()
            }
        return dict(self.gpu_prices_per_hour)


COST = dataclass_section(
    CostConfig,
    rules=(_rented_or_owned, _gpus_within_bound, _declared_gpus_priced, _some_hourly_cost),
)


# --- GPUs -------------------------------------------------------------------------


@dataclass(frozen=True)
class NvmlConfig:
    enabled: bool = setting(Flag(), "Read the GPUs through NVML (false on CPU-only nodes)", True)
    utilization_source: str = setting(
        Choice(("auto", "sm_activity", "busy_time")),
        "GPU utilization alerts and dashboards use; auto: SM activity where the GPU "
        "reports it, busy time otherwise",
        "auto",
    )


NVML = dataclass_section(NvmlConfig)


@dataclass(frozen=True)
class MetricsConfig:
    """Families beyond what the rules, dashboards and review read: off by default, so a
    node stays within its series budget, on where someone looks at them."""

    gpu_diagnostics: bool = setting(
        Flag(),
        "Export each GPU's temperature, SM clock and occupancy, clock events, feature "
        "support, MIG mode and utilization by each source (llmcost_gpu_selected_"
        "utilization_ratio is always exported)",
        False,
    )
    model_gauges: bool = setting(
        Flag(),
        "Export the live gauges per model (llmcost_model_hourly_cost and the window figures "
        "llmcost_model_*_per_million_tokens, _ratio, _window_span_seconds); the recording "
        "rules compute the same from the counters",
        False,
    )


METRICS = dataclass_section(MetricsConfig)


# --- API prices -------------------------------------------------------------------

_HAND_PRICES = ("input", "cached_input", "output")


@dataclass(frozen=True)
class ModelPrice:
    """An API price given by hand, or a `provider/model` catalog reference."""

    prices: ApiPrices | None = None
    catalog: str | None = None


def _catalog_or_prices(loaded: Loaded) -> None:
    """A catalog reference stands alone, except next to all three prices: that is how
    check-config prints it (the prices the catalog gave), so its output loads."""
    prices = loaded.given & set(_HAND_PRICES)
    if "catalog" in loaded.given:
        if prices and prices != set(_HAND_PRICES):
            raise ConfigError(
                f"{loaded.where}: give either catalog or input/output prices, not both"
            )
        return
    for key in ("input", "output"):
        if key not in loaded.given:
            raise ConfigError(f"{loaded.path(key)}: missing API price per 1M tokens")


def _model_price(
    catalog: str | None, input: float | None, cached_input: float | None, output: float | None
) -> ModelPrice:
    if catalog is not None:
        return ModelPrice(catalog=catalog)
    assert input is not None and output is not None  # _catalog_or_prices
    cached = input if cached_input is None else cached_input
    return ModelPrice(prices=ApiPrices(input=input, cached_input=cached, output=output))


def _model_price_values(entry: ModelPrice) -> dict[str, Any]:
    if entry.catalog is not None:
        return {"catalog": entry.catalog}
    assert entry.prices is not None
    return {name: getattr(entry.prices, name) for name in _HAND_PRICES}


MODEL_PRICE = Section(
    settings=(
        Setting(
            "catalog",
            CatalogRef(),
            "Looked up in the offline genai-prices catalog (USD) at start",
            None,
        ),
        Setting(
            "input", PRICE, "Per 1M prompt tokens", None, default_doc="required without catalog"
        ),
        Setting(
            "cached_input",
            PRICE,
            "Per 1M prompt tokens read from the cache",
            None,
            default_doc="the input price",
            money=True,
        ),
        Setting(
            "output", PRICE, "Per 1M generated tokens", None, default_doc="required without catalog"
        ),
    ),
    build=_model_price,
    unbuild=_model_price_values,
    rules=(_catalog_or_prices,),
    shorthand="catalog",
    type_name="mapping or provider/model",
)


def _some_price(loaded: Loaded) -> None:
    if loaded["default"] is None and not loaded["models"]:
        where = loaded.where
        raise ConfigError(f"{where}: no prices; set {where}.default or {where}.models")


@dataclass(frozen=True)
class ApiPriceConfig:
    default: ModelPrice | None = setting(
        MODEL_PRICE, "Price of every served model without its own entry", None
    )
    models: Mapping[str, ModelPrice] = setting(
        MapOf(MODEL_PRICE, "model"), "Prices by served model name (the model_name label)", {}
    )

    def catalog_refs(self) -> list[str]:
        entries = [self.default, *self.models.values()]
        return sorted({e.catalog for e in entries if e is not None and e.catalog})


API_PRICES = dataclass_section(ApiPriceConfig, rules=(_some_price,))


# --- capacity and projection -----------------------------------------------------


@dataclass(frozen=True)
class CapacityConfig:
    tokens_per_second: float | None = setting(
        Number(above=True), "The node's throughput at 100% load; unset to learn it", None
    )
    learn: bool = setting(Flag(), "Learn the sustained peak as well", True)
    learn_window: float = setting(
        Duration(maximum=LONGEST_WINDOW), "A peak must last this long to count", 300.0
    )


CAPACITY = dataclass_section(CapacityConfig)


def _shares_make_a_whole(loaded: Loaded) -> None:
    total = math.fsum(loaded.values.values())
    if abs(total - 1.0) > TOKEN_MIX_TOLERANCE:
        raise ConfigError(f"{loaded.where}: the shares must sum to 1, got {total:.10g}")


TOKEN_MIX = Section(
    settings=tuple(Setting(kind, SHARE, f"Share of {kind} tokens", 0.0) for kind in TOKEN_KINDS),
    build=lambda **shares: dict(shares),
    unbuild=dict,
    rules=(_shares_make_a_whole,),
    type_name="shares by token kind, summing to 1",
)


@dataclass(frozen=True)
class Projection:
    utilization: float | None = setting(SHARE, "Planned throughput utilization", None)
    tokens_per_month: float | None = setting(Number(), "Planned tokens per month", None)
    cost_per_million_tokens: float | None = setting(Number(), "Planned cost per 1M tokens", None)
    token_mix: Mapping[str, float] | None = setting(
        TOKEN_MIX, "Planned share of each token kind; a kind left out counts as 0", None
    )
    """Share of each token kind the plan assumed, every kind present (0 where not
    given), so a review can tell a cost gap caused by the traffic's mix."""


PROJECTION = dataclass_section(Projection)


# --- limits -----------------------------------------------------------------------

MAX_MODELS_PER_ENGINE = 256
MAX_MODELS_PER_NODE = 1024


@dataclass(frozen=True)
class LimitsConfig:
    """Bounds on what an engine page can make the exporter keep and export."""

    models_per_engine: int = setting(
        Whole(1, MAX_MODELS_PER_ENGINE),
        "Models with series of their own per engine; more are counted as model=(overflow)",
        4,
    )
    models_per_node: int = setting(
        Whole(1, MAX_MODELS_PER_NODE),
        "Models with series of their own on the node, for the life of their counters; "
        "more are counted as model=(overflow)",
        16,
    )
    model_idle_timeout: float = setting(
        Duration(),
        "A model no engine has served for this long leaves the live per-model gauges "
        "(its counters stay)",
        3600.0,
    )


LIMITS = dataclass_section(LimitsConfig)


# --- kubernetes -------------------------------------------------------------------

DEFAULT_POD_RESOURCES_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DISCOVERY_ANNOTATION_PREFIX = "llm-cost-exporter.io"
"""Pod annotations `<prefix>/scrape`, `/port`, `/path`, `/scheme` and `/engine`."""


@dataclass(frozen=True)
class PodResourcesConfig:
    """Which pod holds each GPU, from the kubelet: how costs reach pods and namespaces."""

    enabled: bool = setting(
        Flag(),
        "Ask the kubelet which pod, namespace and container hold each GPU "
        "(where its socket is absent nothing changes and one line says so)",
        True,
    )
    socket: str = setting(
        Text(), "The kubelet's pod-resources API socket", DEFAULT_POD_RESOURCES_SOCKET
    )


POD_RESOURCES = dataclass_section(PodResourcesConfig)


@dataclass(frozen=True)
class DiscoveryConfig:
    """Engines found among the pods of this node through the Kubernetes API, watched so
    that pods which come and go become and stop being targets (beside engines[])."""

    enabled: bool = setting(Flag(), "Find engine pods on this node", False)
    node_name: str | None = setting(
        Text(),
        "This node's name (pods with spec.nodeName equal to it are candidates)",
        None,
        default_doc="the `NODE_NAME` environment variable",
    )
    label_selector: str | None = setting(
        Text(),
        "Pods matching this label selector are engines; without one, pods annotated "
        f'`{DISCOVERY_ANNOTATION_PREFIX}/scrape: "true"` are',
        None,
    )
    port: int = setting(
        Whole(1, 65535),
        f"Metrics port of a pod without a `{DISCOVERY_ANNOTATION_PREFIX}/port` annotation",
        8000,
    )
    path: str = setting(
        Text(),
        f"Metrics path of a pod without a `{DISCOVERY_ANNOTATION_PREFIX}/path` annotation",
        "/metrics",
    )
    type: str = setting(
        Choice(tuple(sorted(ENGINE_TYPES)), error="unknown engine type {value} (known: {known})"),
        f"Engine type of a pod without a `{DISCOVERY_ANNOTATION_PREFIX}/engine` annotation",
        DEFAULT_ENGINE_TYPE,
    )
    api_server: str | None = setting(
        HttpUrl(),
        "The Kubernetes API server",
        None,
        default_doc="in-cluster (`KUBERNETES_SERVICE_HOST` and `_PORT`)",
    )
    token_file: str = setting(
        Text(),
        "Service account token, read again when it rotates",
        f"{SERVICE_ACCOUNT_DIR}/token",
    )
    ca_file: str = setting(
        Text(), "CA bundle that signs the API server's certificate", f"{SERVICE_ACCOUNT_DIR}/ca.crt"
    )


DISCOVERY = dataclass_section(DiscoveryConfig)


@dataclass(frozen=True)
class KubernetesConfig:
    """Where the node runs Kubernetes: GPU-to-pod attribution and engine discovery."""

    pod_resources: PodResourcesConfig = setting(
        POD_RESOURCES, "GPU-to-pod attribution from the kubelet", PodResourcesConfig()
    )
    discovery: DiscoveryConfig = setting(
        DISCOVERY, "Engine pods found through the Kubernetes API", DiscoveryConfig()
    )


KUBERNETES = dataclass_section(KubernetesConfig)


# --- engines ----------------------------------------------------------------------


def _one_password(loaded: Loaded) -> None:
    if ":" in loaded["username"]:
        raise ConfigError(f"{loaded.path('username')}: a basic-auth user name has no colon")
    if loaded["password"] is not None and loaded["password_file"] is not None:
        raise ConfigError(f"{loaded.where}: give either password or password_file, not both")


BASIC_AUTH = Section(
    settings=(
        Setting("username", Text(), "User name", missing="missing; give the user name"),
        Setting(
            "password",
            Secret(),
            "Password given inline (password_file is safer); check-config prints <secret>",
            None,
        ),
        Setting(
            "password_file",
            SecretFile(),
            "File holding the password, read at every collection (rotation needs no restart)",
            None,
        ),
    ),
    build=BasicAuth,
    unbuild=lambda auth: {
        "username": auth.username,
        "password": auth.password,
        "password_file": auth.password_file,
    },
    rules=(_one_password,),
)


@dataclass(frozen=True)
class EngineConfig:
    """One inference engine this node runs: where to read it, and what it runs on.

    `url` never holds credentials: userinfo written in the file's URL is moved
    into `basic_auth` when the file is loaded, so the URL can be shown anywhere.
    """

    url: str = setting(
        HttpUrl(),
        "The engine's metrics page; a user:password@ in it is sent as basic auth and never shown",
        missing="missing; give the engine's metrics URL",
    )
    type: str = setting(
        Choice(tuple(sorted(ENGINE_TYPES)), error="unknown engine type {value} (known: {known})"),
        "Which collector reads it",
        DEFAULT_ENGINE_TYPE,
    )
    model: str | None = setting(
        Text(),
        "The served model's name, in place of the page's; engines whose page names no "
        "model (llama.cpp, TGI) are otherwise asked for it (/v1/models, /info)",
        None,
    )
    gpus: tuple[int | str, ...] | None = setting(
        ListOf(GpuRef(MAX_GPUS), "GPU indices or UUIDs", non_empty=True, max_items=MAX_GPUS),
        "The GPUs it runs on (index in nvidia-smi order, or UUID); its GPUs' cost is its own",
        None,
    )
    """GPUs it runs on, by NVML index or UUID; None when not configured."""
    capacity_tokens_per_second: float | None = setting(
        Number(above=True), "This engine's throughput at 100% load", None
    )
    bearer_token_file: str | None = setting(
        SecretFile(),
        "File holding a bearer token for the page, read at every collection",
        None,
    )
    basic_auth: BasicAuth | None = setting(
        BASIC_AUTH, "Basic auth for the page (as Prometheus's scrape configuration)", None
    )

    @property
    def credentials(self) -> Credentials | None:
        """What the engine's page is read with: an Authorization header, or None."""
        if self.bearer_token_file is not None:
            return BearerTokenFile(self.bearer_token_file)
        return self.basic_auth


def _one_kind_of_credentials(loaded: Loaded) -> None:
    _, userinfo = split_userinfo(loaded["url"])
    if userinfo is not None and "basic_auth" in loaded.given:
        raise ConfigError(f"{loaded.path('url')}: give user:password in the URL or basic_auth")
    if "bearer_token_file" in loaded.given and (
        userinfo is not None or "basic_auth" in loaded.given
    ):
        raise ConfigError(
            f"{loaded.path('bearer_token_file')}: give a bearer token or basic auth, not both"
        )


def _engine(url: str, basic_auth: BasicAuth | None, **settings: Any) -> EngineConfig:
    """The engine with its URL's userinfo moved into basic_auth."""
    bare, userinfo = split_userinfo(url)
    if userinfo is not None:
        basic_auth = BasicAuth(userinfo.username, userinfo.password)
    return EngineConfig(url=bare, basic_auth=basic_auth, **settings)


ENGINE = dataclasses.replace(
    dataclass_section(
        EngineConfig,
        rules=(_one_kind_of_credentials,),
        shorthand="url",
        type_name="mapping or URL",
    ),
    build=_engine,
)


def _engines_apart(engines: tuple[EngineConfig, ...], where: str) -> None:
    """Each engine once, each on its own GPUs: a GPU's cost goes to one engine."""
    duplicate = first_duplicate([engine.url for engine in engines])
    if duplicate is not None:
        first, second = duplicate
        raise ConfigError(
            f"{where}[{second}].url: {engines[second].url} is the same engine as "
            f"{where}[{first}] ({engines[first].url})"
        )
    claimed: dict[int | str, int] = {}
    for index, engine in enumerate(engines):
        at = f"{where}[{index}]"
        for position, ref in enumerate(engine.gpus or ()):
            key = ref.lower() if isinstance(ref, str) else ref
            if key in claimed:
                raise ConfigError(
                    f"{at}.gpus[{position}]: GPU {ref!r} is already claimed by "
                    f"{where}[{claimed[key]}]; each engine runs on its own GPUs"
                )
            claimed[key] = index


# --- the whole file ---------------------------------------------------------------

ENGINES_DESCRIBED = "{url: ...}"


def _discovering(loaded: Mapping[str, Any]) -> bool:
    """Whether engines are discovered; the kubernetes section is loaded only when given
    in the file before the defaults are derived (see Section.load)."""
    kubernetes = loaded.get("kubernetes")
    return kubernetes is not None and kubernetes.discovery.enabled


def _engines_default(loaded: Mapping[str, Any]) -> tuple[EngineConfig, ...]:
    """The engine at the default URL, unless pods are discovered: then none is assumed."""
    return () if _discovering(loaded) else (EngineConfig(DEFAULT_ENGINE_URL),)


def _some_engine(loaded: Loaded) -> None:
    if not loaded["engines"] and not _discovering(loaded.values):
        raise ConfigError(
            f"{loaded.path('engines')}: must be a non-empty list of {ENGINES_DESCRIBED} "
            "(or enable kubernetes.discovery)"
        )


def _timeout_default(loaded: Mapping[str, Any]) -> float:
    return min(3.0, loaded["interval"] * 0.8)


def _timeout_within_interval(loaded: Loaded) -> None:
    interval, timeout = loaded["interval"], loaded["timeout"]
    if timeout >= interval:
        raise ConfigError(
            f"{loaded.path('timeout')}: {timeout:g}s must be shorter than "
            f"{loaded.path('interval')} ({interval:g}s), or a slow engine would delay every cycle"
        )


def _windows_apart(windows: tuple[str, ...], where: str) -> None:
    """A window name is a label value: the same one twice would repeat series."""
    for index, name in enumerate(windows):
        if name in windows[:index]:
            raise ConfigError(f"{where}[{index}]: {name} is listed twice")


def _history_within_bound(loaded: Loaded) -> None:
    """The longest window, in cycles, is how many points each history keeps."""
    interval = loaded["interval"]
    longest = max(parse_duration(name, "windows") for name in loaded["windows"])
    learn_window = child(loaded.path("capacity"), "learn_window")
    seconds, where = max(
        (longest, loaded.path("windows")), (loaded["capacity"].learn_window, learn_window)
    )
    if seconds / interval > MAX_HISTORY_POINTS:
        raise ConfigError(
            f"{where}: {format_duration(seconds)} spans {seconds / interval:.0f} collection "
            f"intervals of {format_duration(interval)}; at most {MAX_HISTORY_POINTS}"
        )


def _catalog_in_its_currency(loaded: Loaded) -> None:
    # price_catalog imports this package for ConfigError: import it late.
    from llm_cost_exporter.accounting.price_catalog import CATALOG_CURRENCY

    currency = loaded["currency"]
    if loaded["api_prices"].catalog_refs() and currency != CATALOG_CURRENCY:
        raise ConfigError(
            f"{loaded.path('api_prices')}: catalog prices are in {CATALOG_CURRENCY} but "
            f"currency is {currency}; give prices by hand"
        )


def _something_to_bill(loaded: Loaded) -> None:
    """Without NVML the declared GPUs are the bill: the file alone shows it is empty."""
    cost = loaded["cost"]
    if not loaded["nvml"].enabled and not cost.gpus and cost.node_extra_per_hour <= 0:
        raise ConfigError(
            f"{child(loaded.path('cost'), 'gpus')}: nothing to bill on this node: NVML is "
            "disabled and cost.gpus declares none (declare the GPUs, or set "
            "cost.node_extra_per_hour for a CPU-only node)"
        )


def _some_output(loaded: Loaded) -> None:
    if not loaded["serve_metrics"] and not loaded["otlp"].enabled:
        raise ConfigError(
            f"{loaded.path('serve_metrics')}: false leaves the figures nowhere to go; "
            "configure otlp or serve /metrics"
        )


@dataclass(frozen=True, kw_only=True)
class Config:
    """The validated configuration file; `web` and `collection` keys are flattened here."""

    currency: str = setting(
        Currency(), "One currency per deployment; every money figure is in it", "USD"
    )
    listen_address: str = setting(
        ListenAddress(),
        "Where to serve /metrics: host:port, [v6]:port, or :port for every interface",
        DEFAULT_LISTEN_ADDRESS,
        group="web",
    )
    serve_metrics: bool = setting(
        Flag(),
        "Serve /metrics; false on a node that only pushes OTLP (/healthz and the landing "
        "page stay, /metrics answers 404)",
        True,
        group="web",
    )
    idle_timeout: float = setting(
        Duration(1.0, 3600.0),
        "How long an idle keep-alive connection stays open: longer than the scrape "
        "interval, so a scraper keeps its connection, and longer than the idle timeout of "
        "a load balancer in front, so that the balancer closes first",
        45.0,
        group="web",
    )
    interval: float = setting(
        Duration(0.1, 3600.0),
        "Engines are read in the background on this interval",
        5.0,
        group="collection",
    )
    timeout: float = setting(
        Duration(maximum=3600.0),
        "Per engine; must be shorter than the interval",
        3.0,
        group="collection",
        derive=_timeout_default,
        default_doc="`3s`, or 80% of a shorter interval",
    )
    max_page_bytes: int = setting(
        Size(MAX_PAGE_BYTES),
        "A larger page marks the engine down (too_large)",
        16 * 1024**2,
        group="collection",
    )
    engines: tuple[EngineConfig, ...] = setting(
        ListOf(ENGINE, ENGINES_DESCRIBED, check=_engines_apart, max_items=MAX_ENGINES),
        "The inference engines on this node",
        (EngineConfig(DEFAULT_ENGINE_URL),),
        derive=_engines_default,
        default_doc=f"one, at `{DEFAULT_ENGINE_URL}`; none with kubernetes.discovery",
    )
    nvml: NvmlConfig = setting(NVML, "The GPUs, read through NVML", NvmlConfig())
    cost: CostConfig = setting(
        COST,
        "What the node costs",
        missing="missing; give the hourly prices of the node's GPUs",
    )
    api_prices: ApiPriceConfig = setting(
        API_PRICES,
        "The API the node is compared with, per 1M tokens",
        missing="missing; give the API prices to compare with (default or per model)",
    )
    capacity: CapacityConfig = setting(
        CAPACITY, "Throughput at 100% load, configured or learned", CapacityConfig()
    )
    projection: Projection = setting(
        PROJECTION, "What the self-hosting decision assumed", Projection()
    )
    metrics: MetricsConfig = setting(
        METRICS, "Optional metric families, off by default", MetricsConfig()
    )
    windows: tuple[str, ...] = setting(
        ListOf(
            WindowName(LONGEST_WINDOW),
            "durations like 5m, 1h",
            non_empty=True,
            check=_windows_apart,
            max_items=MAX_WINDOWS,
        ),
        "Windows of the live gauges",
        DEFAULT_WINDOWS,
    )
    limits: LimitsConfig = setting(
        LIMITS, "Bounds on the models an engine page can add", LimitsConfig()
    )
    kubernetes: KubernetesConfig = setting(
        KUBERNETES,
        "Pods and namespaces on a Kubernetes node (nothing changes elsewhere)",
        KubernetesConfig(),
    )
    otlp: OtlpConfig = setting(
        OTLP,
        "Push the same figures over OTLP (off unless an endpoint is configured)",
        OtlpConfig(),
        derive=lambda loaded: OTLP.load(None, "otlp"),
    )
    state_file: str | None = setting(
        Text(), "Where the counters and learned capacity are kept across restarts", None
    )
    state_max_gap: float = setting(
        Duration(),
        "Downtime billed at the last hourly cost on restart, at most (see State file)",
        3600.0,
    )
    log_level: str = setting(Choice(LOG_LEVELS, lower=True), "Log verbosity", "info")

    def window_seconds(self) -> dict[str, float]:
        return {name: parse_duration(name, "windows") for name in self.windows}


CONFIG = dataclass_section(
    Config,
    rules=(
        _some_engine,
        _timeout_within_interval,
        _history_within_bound,
        _catalog_in_its_currency,
        _something_to_bill,
        _some_output,
    ),
)
"""The schema of the whole configuration file."""
