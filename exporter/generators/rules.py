"""The Prometheus recording and alerting rules, from one source with parameters.

The files in `alerts/` are this module rendered with the default parameters
(`llm-cost-exporter rules --output-dir alerts`), and a test keeps them equal.
Tests render the same rules with short windows; deployments change the
thresholds and windows with `--set NAME=VALUE` instead of copying rules.

Names follow `level:metric:operation`. `instance` rules keep every target
label Prometheus adds (job, instance, cluster, ...), aggregating only our own
labels away; fleet rules sum `by (cluster)`, which is one series when the
targets carry no cluster label.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from llm_cost_exporter.collectors.kubelet.pod_resources import PodResourcesCollector
from llm_cost_exporter.collectors.nvml import NvmlCollector
from llm_cost_exporter.collectors.registry import ENGINE_TYPES
from llm_cost_exporter.daemon.engine_targets import SOURCE as POD_WATCH

RUNBOOK_URL = "https://github.com/llm-cost-exporter/llm-cost-exporter/blob/main/alerts/runbook.md"
RECORDING_FILE = "recording-rules.yml"
ALERTING_FILE = "alerting-rules.yml"
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
GPU_COLLECTOR = NvmlCollector.name
ENGINE_COLLECTORS = "|".join(sorted(ENGINE_TYPES))
"""The `collector` label of every engine collector, whatever the engine."""
ATTRIBUTION_SOURCES = "|".join(sorted((PodResourcesCollector.name, POD_WATCH)))
"""The sources that say which pods hold the GPUs and which pods are engines."""


SCRAPE_ONLY = frozenset({"LLMCostExporterDown", "LLMCostMetricsMissing", "LLMCostDataStale"})
"""Alerts on a scrape's `up`, which nodes that only push over OTLP never have (the
pushed ones have LLMCostExporterSilent; LLMCostExporterAbsent counts both)."""


HELP = "help"
"""The metadata key of each parameter's meaning, which `rules --list` prints."""


def _param(default: Any, meaning: str) -> Any:
    return dataclasses.field(default=default, metadata={HELP: meaning})


@dataclass(frozen=True)
class RuleParams:
    """Every threshold and window the rules use; see alerts/runbook.md for the choices."""

    job: str = _param("llm-cost", "scrape job of the exporters (up{job=...})")
    push_job: str = _param(
        "llm-cost-exporter",
        "job a receiver gives figures pushed over OTLP: the exporters' service.name",
    )
    push_silent_for: str = _param(
        "10m", "how long a node that pushed may stay silent before LLMCostExporterSilent"
    )
    rate_window: str = _param("5m", "window of the rates the dashboards read")
    aggregate_interval: str = _param(
        "1m",
        "how often the breakdowns and the fleet's figures are recorded (llmcost-aggregates)",
    )
    """How often each node's breakdowns (by component, model and kind) and the fleet's
    per-model and per-cluster figures are recorded (the group llmcost-aggregates): as
    often as a global Prometheus federates them. A node's own totals and the ratios the
    alerts read are recorded at every evaluation."""
    window_step: str = _param(
        "5m",
        "step of the longer windows: their rates are recorded and their alerts evaluated "
        "once per step; at least twice the scrape interval",
    )
    """The longer windows (the break-even and GPU utilization alerts') average rates
    recorded once per step, and their alerts are evaluated as often: a fleet's raw
    samples are read once per step rather than once per window and cycle. At least
    twice the scrape interval, as a rate needs two samples."""
    breakeven_page_window: str = _param(
        "24h", "window of the cost ratio LLMCostBelowBreakEven (critical) reads"
    )
    breakeven_page_for: str = _param(
        "1h", "how long the node costs more than the API before LLMCostBelowBreakEven"
    )
    breakeven_warn_window: str = _param(
        "6h", "window of the cost ratio LLMCostBelowBreakEvenWarning reads"
    )
    breakeven_warn_for: str = _param(
        "30m", "how long the node costs more than the API before LLMCostBelowBreakEvenWarning"
    )
    gpu_utilization_threshold: float = _param(
        0.6, "LLMCostGpuUtilizationLow fires below this GPU utilization (a ratio in (0, 1])"
    )
    gpu_utilization_window: str = _param(
        "6h", "window of the GPU utilization LLMCostGpuUtilizationLow averages"
    )
    gpu_utilization_for: str = _param(
        "30m", "how long under the threshold before LLMCostGpuUtilizationLow"
    )
    health_interval: str = _param(
        "1m", "how often the health alerts (llmcost-health) are evaluated"
    )
    """How often the health alerts (llmcost-health) are evaluated: each waits 5m or more
    before it fires, so a minute is a fifth of its wait at most."""
    exporter_down_for: str = _param(
        "5m", "how long scrapes of an exporter fail before LLMCostExporterDown"
    )
    exporter_absent_for: str = _param(
        "15m", "how long the job has no target and no node pushes before LLMCostExporterAbsent"
    )
    engine_down_for: str = _param("5m", "how long an engine goes unread before LLMCostEngineDown")
    attribution_down_for: str = _param(
        "15m",
        "how long the kubelet pod-resources or pod-watch source goes unread before "
        "LLMCostAttributionSourceDown",
    )
    collector_errors_window: str = _param(
        "15m", "window in which LLMCostCollectorFailing counts failed collections"
    )
    collector_errors_threshold: float = _param(
        3, "failed collections in that window that make LLMCostCollectorFailing"
    )
    collector_failing_for: str = _param(
        "15m", "how long collections keep failing before LLMCostCollectorFailing"
    )
    stale_window: str = _param(
        "10m", "window over which spend that does not move is stale (LLMCostDataStale)"
    )
    stale_for: str = _param("5m", "how long before LLMCostDataStale and LLMCostMetricsMissing fire")
    price_missing_for: str = _param(
        "5m", "how long a model or GPU goes without a price before LLMCostPriceMissing"
    )
    nvml_unavailable_for: str = _param(
        "10m", "how long NVML cannot be read before LLMCostNvmlUnavailable"
    )
    gpu_unhealthy_for: str = _param(
        "5m", "how long a GPU does not answer NVML before LLMCostGpuUnhealthy"
    )
    runbook_url: str = _param(
        RUNBOOK_URL, "runbook each alert links to, with #the-alert-name appended"
    )

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name.endswith(
                ("_window", "_for", "_step", "_interval")
            ) and not _DURATION.match(str(value)):
                raise ValueError(f"{item.name}: {value!r} is not a Prometheus duration")
        if not 0 < self.gpu_utilization_threshold <= 1:
            raise ValueError("gpu_utilization_threshold: must be in (0, 1]")

    @property
    def long_windows(self) -> list[str]:
        """The windows the break-even alerts read, other than the dashboards' one."""
        windows = [self.breakeven_warn_window, self.breakeven_page_window]
        return [w for w in dict.fromkeys(windows) if w != self.rate_window]


def params_with(overrides: Mapping[str, str]) -> RuleParams:
    """Default parameters with `NAME=VALUE` overrides, converted to each field's type."""
    fields = {f.name: f for f in dataclasses.fields(RuleParams)}
    values: dict[str, Any] = {}
    for name, text in overrides.items():
        if name not in fields:
            raise ValueError(f"{name}: unknown parameter (known: {', '.join(sorted(fields))})")
        default = getattr(RuleParams(), name)
        try:
            values[name] = float(text) if isinstance(default, float | int) else str(text)
        except ValueError:
            raise ValueError(f"{name}: {text!r} is not a number") from None
    return RuleParams(**values)


# --- recording rules -------------------------------------------------------------


def _record(name: str, expr: str) -> dict[str, str]:
    return {"record": name, "expr": expr}


UNLESS_PRICE_MISSING = "unless on (job, instance)\nllmcost_api_price_missing == 1"
"""A node serving a model without an API price has no API-equivalent figures: the
exporter withholds them too, and LLMCostPriceMissing says why."""


def _instance_rates(window: str, spent: str, served: str, priced: str) -> list[dict[str, str]]:
    """Per-node rates over `window`, and the figures the break-even alerts compare, from
    the node's spend, tokens and API-equivalent cost per second (`spent`, `served`,
    `priced`: expressions of the node's own labels).

    Tokens and API-equivalent cost fall back to 0 on a node that has served
    nothing yet, so "no traffic" yields an infinite cost ratio (below
    break-even) instead of no series at all.
    """
    cost = f"instance:llmcost_cost:rate{window}"
    tokens = f"instance:llmcost_tokens:rate{window}"
    api = f"instance:llmcost_api_equivalent_cost:rate{window}"
    utilization = f"instance:llmcost_throughput_utilization:ratio_rate{window}"
    ratio = f"instance:llmcost_cost_ratio:ratio_rate{window}"
    return [
        _record(cost, spent),
        _record(tokens, f"{served}\nor\n0 * {cost}"),
        _record(api, f"(\n  {priced}\n  or\n  0 * {cost}\n)\n{UNLESS_PRICE_MISSING}"),
        _record(
            f"instance:llmcost_cost_per_million_tokens:ratio_rate{window}",
            f"{cost} / {tokens} * 1e6",
        ),
        _record(
            f"instance:llmcost_api_equivalent_cost_per_million_tokens:ratio_rate{window}",
            f"{api} / {tokens} * 1e6",
        ),
        _record(ratio, f"{cost} / {api}"),
        _record(utilization, f"{tokens} / instance:llmcost_capacity_tokens_per_second:preferred"),
        _record(
            f"instance:llmcost_breakeven_utilization:ratio_rate{window}", f"{utilization} * {ratio}"
        ),
    ]


def _live_rates(window: str) -> list[dict[str, str]]:
    """The dashboards' window, at every evaluation: each node's totals straight from its
    counters, which records one series a node where the breakdowns record dozens."""
    return _instance_rates(
        window,
        f"sum without (component) (rate(llmcost_cost_total[{window}]))",
        f"sum without (model, kind) (rate(llmcost_tokens_total[{window}]))",
        f"sum without (model) (rate(llmcost_api_equivalent_cost_total[{window}]))",
    )


GPU_UTILIZATION = "llmcost_gpu_selected_utilization_ratio"


def _steps(step: str) -> list[dict[str, str]]:
    """Each node's rates and GPU utilization over the last `step`, recorded once per
    `step`: what the longer windows average, so that they read a few samples a node
    instead of every raw sample of every series."""
    return [
        _record(
            f"instance:llmcost_cost:rate{step}_step",
            f"sum without (component) (rate(llmcost_cost_total[{step}]))",
        ),
        _record(
            f"instance:llmcost_tokens:rate{step}_step",
            f"sum without (model, kind) (rate(llmcost_tokens_total[{step}]))",
        ),
        _record(
            f"instance:llmcost_api_equivalent_cost:rate{step}_step",
            f"sum without (model) (rate(llmcost_api_equivalent_cost_total[{step}]))",
        ),
        _record(
            f"instance:{GPU_UTILIZATION}:avg{step}_step",
            f"avg without (gpu, uuid, source) (avg_over_time({GPU_UTILIZATION}[{step}]))",
        ),
    ]


def _long_rates(window: str, step: str) -> list[dict[str, str]]:
    """A longer window's figures: the average of the rates recorded every `step`."""

    def average(name: str) -> str:
        return f"avg_over_time(instance:llmcost_{name}:rate{step}_step[{window}])"

    return _instance_rates(
        window, average("cost"), average("tokens"), average("api_equivalent_cost")
    )


def _long_gpu_utilization(window: str, step: str) -> dict[str, str]:
    return _record(
        f"instance:{GPU_UTILIZATION}:avg{window}",
        f"avg_over_time(instance:{GPU_UTILIZATION}:avg{step}_step[{window}])",
    )


def _breakdown_bases(window: str) -> list[dict[str, str]]:
    """Each node's rates by component, model and kind: the breakdowns the dashboards and
    the aggregates read, each counter decoded once per evaluation of its group."""
    return [
        _record(
            f"instance_component:llmcost_cost:rate{window}", f"rate(llmcost_cost_total[{window}])"
        ),
        _record(
            f"instance_model_kind:llmcost_tokens:rate{window}",
            f"rate(llmcost_tokens_total[{window}])",
        ),
        _record(
            f"instance_model:llmcost_cost:rate{window}", f"rate(llmcost_model_cost_total[{window}])"
        ),
        _record(
            f"instance_model:llmcost_api_equivalent_cost:rate{window}",
            f"rate(llmcost_api_equivalent_cost_total[{window}])",
        ),
    ]


def _node_splits(window: str) -> list[dict[str, str]]:
    """A node's tokens by kind and by model, which the dashboards read."""
    served = f"instance_model_kind:llmcost_tokens:rate{window}"
    return [
        _record(f"instance_kind:llmcost_tokens:rate{window}", f"sum without (model) ({served})"),
        _record(f"instance_model:llmcost_tokens:rate{window}", f"sum without (kind) ({served})"),
    ]


def _aggregates(window: str) -> list[dict[str, str]]:
    """Each model's figures on a node, and the per-model and per-cluster figures of the
    fleet: for queries of your own and for federation (the dashboards compute theirs
    from the node figures, through their variables)."""
    rules: list[dict[str, str]] = []
    for level, by, source in (
        ("instance_model", None, "instance_model"),
        ("model", "cluster, model", "instance_model"),
    ):
        cost, tokens, api = (
            f"{level}:llmcost_{name}:rate{window}"
            for name in ("cost", "tokens", "api_equivalent_cost")
        )
        if by is not None:
            for name in ("cost", "tokens", "api_equivalent_cost"):
                rules.append(
                    _record(
                        f"{level}:llmcost_{name}:rate{window}",
                        f"sum by ({by}) ({source}:llmcost_{name}:rate{window})",
                    )
                )
        rules += _ratios(level, window, cost, tokens, api, cost, tokens)
    return rules + _cluster_rates(window)


def _ratios(
    level: str, window: str, cost: str, tokens: str, api: str, priced_cost: str, priced_tokens: str
) -> list[dict[str, str]]:
    """Cost per 1M, API-equivalent per 1M and cost ratio; the API figures compare
    only the spend and tokens that have an API price."""
    return [
        _record(
            f"{level}:llmcost_cost_per_million_tokens:ratio_rate{window}",
            f"{cost} / {tokens} * 1e6",
        ),
        _record(
            f"{level}:llmcost_api_equivalent_cost_per_million_tokens:ratio_rate{window}",
            f"{api} / {priced_tokens} * 1e6",
        ),
        _record(f"{level}:llmcost_cost_ratio:ratio_rate{window}", f"{priced_cost} / {api}"),
    ]


def _cluster_rates(window: str) -> list[dict[str, str]]:
    """Fleet totals; the API comparison covers the nodes whose prices are all known."""
    names = {
        n: f"cluster:llmcost_{n}:rate{window}" for n in ("cost", "tokens", "api_equivalent_cost")
    }
    priced = {n: f"cluster:llmcost_priced_{n}:rate{window}" for n in ("cost", "tokens")}
    rules = [
        _record(names[n], f"sum by (cluster) (instance:llmcost_{n}:rate{window})") for n in names
    ]
    api_nodes = f"and on (job, instance)\n  instance:llmcost_api_equivalent_cost:rate{window}"
    rules += [
        _record(
            priced[n], f"sum by (cluster) (\n  instance:llmcost_{n}:rate{window}\n  {api_nodes}\n)"
        )
        for n in priced
    ]
    return rules + _ratios(
        "cluster",
        window,
        names["cost"],
        names["tokens"],
        names["api_equivalent_cost"],
        priced["cost"],
        priced["tokens"],
    )


def _sum_without(label: str, expr: str) -> str:
    if "\n" not in expr:
        return f"sum without ({label}) ({expr})"
    return f"sum without ({label}) (\n" + "".join(f"  {line}\n" for line in expr.split("\n")) + ")"


def _increases(window: str, *, two_samples: bool = False) -> list[dict[str, str]]:
    """Money and tokens per `window`, evaluated once per `window`: summing these
    samples over a month gives the month's totals, at any downsampling. Tokens by
    model and kind together let a review price each model's own mix.

    `two_samples` records a window only where it holds two samples of the
    counter, as PromQL's increase() needs anyway. MetricsQL's increase() also
    takes the last sample before the window as its base, and so records 0 for
    a window holding one sample or none (an exporter gone, or a restarted one's
    first scrape): an hour a review would count as seen.
    """

    def increase(counter: str) -> str:
        expr = f"increase({counter}[{window}])"
        if two_samples:
            expr += f"\nand count_over_time({counter}[{window}]) > 1"
        return expr

    return [
        _record(
            f"instance:llmcost_cost:increase{window}",
            _sum_without("component", increase("llmcost_cost_total")),
        ),
        _record(
            f"instance_component:llmcost_cost:increase{window}", increase("llmcost_cost_total")
        ),
        _record(
            f"instance_model:llmcost_cost:increase{window}", increase("llmcost_model_cost_total")
        ),
        _record(
            f"instance_kind:llmcost_tokens:increase{window}",
            _sum_without("model", increase("llmcost_tokens_total")),
        ),
        _record(
            f"instance_model:llmcost_tokens:increase{window}",
            _sum_without("kind", increase("llmcost_tokens_total")),
        ),
        _record(
            f"instance_model_kind:llmcost_tokens:increase{window}", increase("llmcost_tokens_total")
        ),
        _record(
            f"instance_model:llmcost_api_equivalent_cost:increase{window}",
            increase("llmcost_api_equivalent_cost_total"),
        ),
    ]


def preferred_capacity(selector: Callable[[str], str], window: str) -> str:
    """The configured capacity where there is one, else the learned one, averaged over
    `window`, as the exporter prefers them; `selector` gives a source's series."""

    def averaged(source: str) -> str:
        return f"max without (source) (avg_over_time({selector(source)}[{window}]))"

    return f"{averaged('configured')}\nor\n{averaged('learned')}"


def _of_source(metric: str) -> Callable[[str], str]:
    return lambda source: f'{metric}{{source="{source}"}}'


def _hourly_readings() -> list[dict[str, str]]:
    """What a review reads besides money and tokens, once an hour: each node's and each
    model's capacity, how many samples the exporter left, how often its counters reset,
    and its currency. A review through the rules then reads no raw sample of a month."""
    return [
        _record(
            "instance:llmcost_capacity_tokens_per_second:avg1h",
            preferred_capacity(_of_source("llmcost_capacity_tokens_per_second"), "1h"),
        ),
        _record(
            "instance_model:llmcost_capacity_tokens_per_second:avg1h",
            preferred_capacity(_of_source("llmcost_model_capacity_tokens_per_second"), "1h"),
        ),
        _record(
            "instance:llmcost_build_info:count_over_time1h",
            "count_over_time(llmcost_build_info[1h])",
        ),
        _record("instance_model:llmcost_cost:resets1h", "resets(llmcost_model_cost_total[1h])"),
        _record(
            "instance:llmcost_pricing_info:last_over_time1h",
            "last_over_time(llmcost_pricing_info[1h])",
        ),
    ]


def recording_rules(params: RuleParams) -> dict[str, Any]:
    capacity = _record(
        "instance:llmcost_capacity_tokens_per_second:preferred",
        'max without (source) (\n  llmcost_capacity_tokens_per_second{source="configured"}\n'
        '  or on (job, instance)\n  llmcost_capacity_tokens_per_second{source="learned"}\n)',
    )
    rates = [capacity, *_live_rates(params.rate_window)]
    breakdowns = _breakdown_bases(params.rate_window) + _node_splits(params.rate_window)
    step = params.window_step
    windows = _steps(step)
    for window in params.long_windows:
        windows += _long_rates(window, step)
    windows.append(_long_gpu_utilization(params.gpu_utilization_window, step))
    return {
        "groups": [
            {"name": "llmcost-rates", "rules": rates},
            {
                "name": "llmcost-aggregates",
                "interval": params.aggregate_interval,
                "rules": breakdowns + _aggregates(params.rate_window),
            },
            {"name": "llmcost-windows", "interval": step, "rules": windows},
            {
                "name": "llmcost-hourly",
                "interval": "1h",
                "rules": _increases("1h", two_samples=True) + _hourly_readings(),
            },
            {"name": "llmcost-daily", "interval": "1d", "rules": _increases("1d")},
        ]
    }


# --- alerting rules ----------------------------------------------------------------


FIGURES = "$figures"
"""The template variable holding the alerting node's figures, read with one query."""


def _node_figures(names: list[str]) -> str:
    """A template snippet setting `$figures` to the alerting node's current samples of
    `names`: one query per alert and evaluation, however many figures it prints (each
    active alert's annotations are expanded at every evaluation, so on a fleet whose
    nodes are below break-even, queries per figure would dominate the rules' cost)."""
    pattern = "|".join(dict.fromkeys(names))
    selector = f'{{__name__=~"{pattern}",job="%s",instance="%s"}}'
    return f"{{{{ {FIGURES} := printf `{selector}` $labels.job $labels.instance | query }}}}"


NO_TOKENS = "n/a (no tokens)"


@dataclass(frozen=True)
class _Shown:
    """A figure a description prints: the template variable it is kept in, its series,
    the input that is 0 exactly when the series is NaN for lack of tokens, and its format."""

    var: str
    series: str
    no_tokens: str
    fmt: str = "%.2f"


def _values_of(shown: list[_Shown]) -> str:
    """A template snippet setting each figure's variable from `$figures` (see
    `_node_figures`) in two passes over it, however many figures there are: NaN (a
    ratio over no tokens) reads "n/a (no tokens)", no series reads "unknown".

    MetricsQL returns no NaN sample at all, so the first pass marks "n/a (no tokens)"
    where a figure's `no_tokens` input is 0, and the second prints the figures there
    are over it: on VictoriaMetrics as on Prometheus such a figure reads the same.
    Each active alert expands its annotations at every evaluation: two passes over
    the figures cost less than two per figure.
    """
    name = 'label "__name__" .'
    out = "".join(f'{{{{ ${f.var} := "unknown" }}}}' for f in shown)
    guards = ""
    for i, guard in enumerate(dict.fromkeys(f.no_tokens for f in shown)):
        marks = "".join(
            f'{{{{ ${f.var} = "{NO_TOKENS}" }}}}' for f in shown if f.no_tokens == guard
        )
        guards += f'{{{{ {"if" if i == 0 else "else if"} eq $n "{guard}" }}}}{marks}'
    out += (
        f"{{{{ range {FIGURES} }}}}{{{{ if eq (value .) 0.0 }}}}{{{{ $n := {name} }}}}"
        f"{guards}{{{{ end }}}}{{{{ end }}}}{{{{ end }}}}"
    )
    assigns = ""
    for i, f in enumerate(shown):
        keyword = "if" if i == 0 else "else if"
        assigns += (
            f'{{{{ {keyword} eq $n "{f.series}" }}}}{{{{ ${f.var} = "{NO_TOKENS}" }}}}'
            f'{{{{ if eq $v $v }}}}{{{{ ${f.var} = printf "{f.fmt}" $v }}}}{{{{ end }}}}'
        )
    out += (
        f"{{{{ range {FIGURES} }}}}{{{{ $n := {name} }}}}{{{{ $v := value . }}}}"
        f"{assigns}{{{{ end }}}}{{{{ end }}}}"
    )
    return out


def _alert(
    params: RuleParams,
    name: str,
    expr: str,
    duration: str,
    severity: str,
    summary: str,
    description: str,
    anchor: str,
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{params.runbook_url}#{anchor}",
        },
    }


def _breakeven_alert(params: RuleParams, name: str, window: str, duration: str, severity: str):
    tokens = f"instance:llmcost_tokens:rate{window}"
    capacity = "instance:llmcost_capacity_tokens_per_second:preferred"
    cost_per_million = f"instance:llmcost_cost_per_million_tokens:ratio_rate{window}"
    api_per_million = f"instance:llmcost_api_equivalent_cost_per_million_tokens:ratio_rate{window}"
    utilization_series = f"instance:llmcost_throughput_utilization:ratio_rate{window}"
    breakeven_series = f"instance:llmcost_breakeven_utilization:ratio_rate{window}"
    figures = _node_figures(
        [cost_per_million, api_per_million, utilization_series, breakeven_series, tokens, capacity]
    )
    values = _values_of(
        [
            _Shown("cost", cost_per_million, tokens),
            _Shown("api", api_per_million, tokens),
            _Shown("utilization", utilization_series, capacity, "%.3f"),
            _Shown("breakeven", breakeven_series, utilization_series, "%.3f"),
        ]
    )
    return _alert(
        params,
        name,
        f"instance:llmcost_cost_ratio:ratio_rate{window} > 1",
        duration,
        severity,
        f"{{{{ $labels.instance }}}} cost more than the API over the last {window}",
        f"{figures}{values}Over the last {window} this node spent "
        '{{ $value | printf "%.2f" }}x what the API would have charged for the same tokens: '
        "{{ $cost }} per 1M tokens against {{ $api }} on the API. Throughput utilization "
        "{{ $utilization }} against a break-even utilization of {{ $breakeven }}.",
        name.lower(),
    )


def alerting_rules(params: RuleParams) -> dict[str, Any]:
    job = params.job
    threshold = f"{params.gpu_utilization_threshold:g}"
    economics = [
        _breakeven_alert(
            params,
            "LLMCostBelowBreakEven",
            params.breakeven_page_window,
            params.breakeven_page_for,
            "critical",
        ),
        _breakeven_alert(
            params,
            "LLMCostBelowBreakEvenWarning",
            params.breakeven_warn_window,
            params.breakeven_warn_for,
            "warning",
        ),
        _alert(
            params,
            "LLMCostGpuUtilizationLow",
            f"instance:{GPU_UTILIZATION}:avg{params.gpu_utilization_window} < {threshold}",
            params.gpu_utilization_for,
            "warning",
            f"{{{{ $labels.instance }}}} GPUs under {params.gpu_utilization_threshold:.0%} busy",
            f"The node's GPUs averaged {{{{ $value | humanizePercentage }}}} utilization over the "
            f"last {params.gpu_utilization_window} "
            f"(threshold {params.gpu_utilization_threshold:.0%}; "
            "SM activity where the GPU reports it, else busy time, as "
            "llmcost_gpu_selected_utilization_ratio's source label says).",
            "llmcostgpuutilizationlow",
        ),
    ]
    health = [
        _alert(
            params,
            "LLMCostExporterDown",
            f'up{{job="{job}"}} == 0',
            params.exporter_down_for,
            "warning",
            "llm-cost-exporter on {{ $labels.instance }} is down",
            f"Prometheus has not scraped {{{{ $labels.instance }}}} (job {job}) for "
            f"{params.exporter_down_for}: this node's cost and token figures are unknown, "
            "not zero.",
            "llmcostexporterdown",
        ),
        _alert(
            params,
            "LLMCostExporterAbsent",
            f'absent(up{{job="{job}"}})\nand on ()\n'
            f'absent(llmcost_build_info{{job="{params.push_job}"}})',
            params.exporter_absent_for,
            "warning",
            f"No llm-cost-exporter target in job {job}",
            f"Prometheus has no target in job {job} and no node pushes to it (job "
            f"{params.push_job}): no node's cost is being watched.",
            "llmcostexporterabsent",
        ),
        _alert(
            params,
            "LLMCostExporterSilent",
            f'max by (job, instance) (max_over_time(llmcost_build_info{{job="{params.push_job}"}}'
            "[6h]))\nunless on (job, instance)\n"
            f'llmcost_build_info{{job="{params.push_job}"}}',
            params.push_silent_for,
            "warning",
            "llm-cost-exporter on {{ $labels.instance }} stopped pushing",
            "No figure pushed over OTLP by {{ $labels.instance }} has arrived for over "
            f"{params.push_silent_for} (it pushed in the last 6h): this node's cost and token "
            "figures are unknown, not zero.",
            "llmcostexportersilent",
        ),
        _alert(
            params,
            "LLMCostEngineDown",
            f'llmcost_collector_up{{collector=~"{ENGINE_COLLECTORS}"}} == 0',
            params.engine_down_for,
            "warning",
            "Engine {{ $labels.target }} on {{ $labels.instance }} is not answering",
            "The exporter on {{ $labels.instance }} has not read {{ $labels.target }} for "
            f"{params.engine_down_for}; its tokens are not counted while the node's spend goes on. "
            "The reason is in llmcost_collector_errors_total's reason label.",
            "llmcostenginedown",
        ),
        _alert(
            params,
            "LLMCostCollectorFailing",
            "sum without (reason) (\n"
            f"  increase(llmcost_collector_errors_total[{params.collector_errors_window}])\n"
            f") >= {params.collector_errors_threshold:g}\n"
            "and on (job, instance, collector, target)\n"
            f"max_over_time(llmcost_collector_up[{params.collector_errors_window}]) == 1",
            params.collector_failing_for,
            "warning",
            "{{ $labels.collector }} collection of {{ $labels.target }} keeps failing",
            '{{ $value | printf "%.0f" }} collections of {{ $labels.target }} on '
            f"{{{{ $labels.instance }}}} failed in the last {params.collector_errors_window}, "
            "though it answers between failures.",
            "llmcostcollectorfailing",
        ),
        _alert(
            params,
            "LLMCostMetricsMissing",
            f'up{{job="{job}"}} == 1\nunless on (job, instance)\nllmcost_cost_total',
            params.stale_for,
            "warning",
            "{{ $labels.instance }} answers but exports no llm-cost metrics",
            "The target {{ $labels.instance }} is up but has no llmcost_cost_total: it is not an "
            "llm-cost-exporter, or it cannot render its figures. Its cost is unknown, not zero.",
            "llmcostmetricsmissing",
        ),
        _alert(
            params,
            "LLMCostDataStale",
            f"sum without (component) (rate(llmcost_cost_total[{params.stale_window}])) == 0\n"
            f'and on (job, instance)\nup{{job="{job}"}} == 1',
            params.stale_for,
            "warning",
            "Spend on {{ $labels.instance }} stopped accruing",
            f"llmcost_cost_total on {{{{ $labels.instance }}}} has not moved for "
            f"{params.stale_window} although the exporter answers: its collection loop is stuck "
            "and every figure it serves is stale.",
            "llmcostdatastale",
        ),
        _alert(
            params,
            "LLMCostPriceMissing",
            "llmcost_api_price_missing == 1 or llmcost_gpu_price_missing == 1",
            params.price_missing_for,
            "warning",
            "A price is missing on {{ $labels.instance }}",
            "{{ if $labels.model }}Model {{ $labels.model }} has no API price: its API-equivalent "
            "cost and the break-even figures are withheld.{{ else }}GPU {{ $labels.gpu }} "
            "({{ $labels.name }}) has no price: it is not billed.{{ end }}",
            "llmcostpricemissing",
        ),
        _alert(
            params,
            "LLMCostNvmlUnavailable",
            f'llmcost_collector_up{{collector="{GPU_COLLECTOR}"}} == 0',
            params.nvml_unavailable_for,
            "warning",
            "NVML unavailable on {{ $labels.instance }}",
            "The exporter on {{ $labels.instance }} cannot read its GPUs through NVML: GPU "
            "utilization and energy are unknown and the GPUs declared in cost.gpus are billed.",
            "llmcostnvmlunavailable",
        ),
        _alert(
            params,
            "LLMCostAttributionSourceDown",
            f'llmcost_collector_up{{collector=~"{ATTRIBUTION_SOURCES}"}} == 0',
            params.attribution_down_for,
            "warning",
            "{{ $labels.collector }} unreachable on {{ $labels.instance }}",
            "The exporter on {{ $labels.instance }} has not read {{ $labels.target }} for "
            f"{params.attribution_down_for}: {{{{ if eq $labels.collector "
            f'"{PodResourcesCollector.name}" }}}}GPU cost goes to the pods that held the GPUs '
            "at its last answer: pods started or stopped since are not seen{{ else }}engine "
            "pods that start or stop on the node are not followed{{ end }}. Tokens and spend "
            "are still counted.",
            "llmcostattributionsourcedown",
        ),
        _alert(
            params,
            "LLMCostGpuUnhealthy",
            "llmcost_gpu_healthy == 0",
            params.gpu_unhealthy_for,
            "warning",
            "GPU {{ $labels.gpu }} on {{ $labels.instance }} is not answering",
            "NVML cannot read GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on "
            "{{ $labels.instance }}; it is still billed.",
            "llmcostgpuunhealthy",
        ),
    ]
    return {
        "groups": [
            {"name": "llmcost-economics", "interval": params.window_step, "rules": economics},
            {"name": "llmcost-health", "interval": params.health_interval, "rules": health},
        ]
    }


# --- rendering -------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks and long texts folded, so the rule files
    read like hand-written ones."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else ">" if len(value) > 80 else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = (
    "# Generated by `llm-cost-exporter rules` from exporter/generators/rules.py:"
    " edit that, not this.\n"
    "# Parameters: {params}\n"
)


def render(params: RuleParams) -> dict[str, str]:
    """File name -> text of both rule files."""
    changed = {
        f.name: getattr(params, f.name)
        for f in dataclasses.fields(params)
        if getattr(params, f.name) != f.default
    }
    header = HEADER.format(params=", ".join(f"{k}={v}" for k, v in changed.items()) or "defaults")
    return {
        name: header + yaml.dump(rules, Dumper=_Dumper, sort_keys=False, width=100)
        for name, rules in (
            (RECORDING_FILE, recording_rules(params)),
            (ALERTING_FILE, alerting_rules(params)),
        )
    }


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """`NAME=VALUE` arguments as a mapping."""
    result = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"{pair!r}: expected NAME=VALUE")
        result[name.strip()] = value.strip()
    return result
