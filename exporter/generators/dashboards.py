"""The Grafana dashboards, generated from code: one source of truth.

`llm-cost-exporter dashboards --output-dir dashboards` writes the three
dashboards' JSON and `dashboards/README.md`, the per-panel reference built
from that JSON; a test keeps the committed files equal to this module's output.
Panels read the exporter's series and the recording rules of `alerts/`
(rates, never lifetime averages), and the engines' own latency series (vLLM,
SGLang, LMDeploy and TGI histograms, Triton's duration counters).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from llm_cost_exporter.collectors.base import REASONS
from llm_cost_exporter.generators.rules import RUNBOOK_URL

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
NODE = 'cluster=~"$cluster", instance=~"$instance"'
MODEL = 'cluster=~"$cluster", instance=~"$instance", model=~"$model"'
TOKENS_PER_SECOND = "suffix: tok/s"
DASHBOARD_UIDS = {
    "fleet": "llmcost-fleet",
    "node": "llmcost-node",
    "capacity": "llmcost-capacity",
}

MAY_BE_EMPTY = {
    "Hours below break-even (last 7 days)": (
        "reads the hourly recording rules, which Prometheus evaluates once an hour"
    ),
    "Nodes ranked by money lost below break-even": (
        "lists only nodes that cost more than the API would have in the time range"
    ),
    "GPUs unhealthy or lost": "lists only GPUs NVML cannot read",
    "Collection failures by reason": (
        "counts each reason from its first failure: a node whose collections all succeeded has none"
    ),
    "KV-transferred prompt tokens": (
        "has series only for engines receiving KV caches from a prefill engine "
        "(disaggregated serving)"
    ),
}
"""Panels that can be empty on a healthy node with data, and why."""


@dataclass
class Panel:
    """One panel: its queries, unit and the description shown in Grafana."""

    title: str
    description: str
    targets: list[tuple[str, str]]
    """(PromQL, legend) pairs."""
    unit: str
    decimals: int
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    instant: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        panel: dict[str, Any] = {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": self.width, "h": self.height},
            "fieldConfig": {
                "defaults": {"unit": self.unit, "decimals": self.decimals},
                "overrides": [],
            },
            "options": self.options,
            "targets": [
                {
                    "refId": chr(ord("A") + index),
                    "datasource": DATASOURCE,
                    "expr": expr,
                    "legendFormat": legend,
                    "instant": self.instant,
                    "range": not self.instant,
                    **({"format": "table"} if self.kind == "table" else {}),
                }
                for index, (expr, legend) in enumerate(self.targets)
            ],
        }
        return panel


def _stat(title: str, description: str, expr: str, unit: str, decimals: int) -> Panel:
    return Panel(title, description, [(expr, "")], unit, decimals, "stat", 4, 4, instant=True)


def _layout(panels: Iterable[Panel]) -> list[dict[str, Any]]:
    """Place panels left to right, wrapping at Grafana's 24 columns."""
    result, x, y, row_height = [], 0, 0, 0
    for panel_id, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        result.append(panel.to_json(panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return result


def _query_variable(name: str, label: str, query: str, multi: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        **({"allValue": ".*"} if multi else {}),
        "current": {},
    }


def _variables(single_node: bool = False) -> list[dict[str, Any]]:
    return [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
        },
        _query_variable("cluster", "cluster", "label_values(llmcost_build_info, cluster)"),
        _query_variable(
            "instance",
            "node",
            'label_values(llmcost_build_info{cluster=~"$cluster"}, instance)',
            multi=not single_node,
        ),
        _query_variable("model", "model", f"label_values(llmcost_tokens_total{{{NODE}}}, model)"),
    ]


def _links(current: str) -> list[dict[str, Any]]:
    links = [
        {
            "title": title,
            "type": "link",
            "url": f"/d/{DASHBOARD_UIDS[key]}",
            "keepTime": True,
            "includeVars": True,
            "targetBlank": False,
        }
        for key, title in (
            ("fleet", "Fleet cost overview"),
            ("node", "Node and engine detail"),
            ("capacity", "Capacity and latency"),
        )
        if key != current
    ]
    links.append({"title": "Runbook", "type": "link", "url": RUNBOOK_URL, "targetBlank": True})
    return links


def _dashboard(key: str, title: str, description: str, panels: list[Panel], **extra: Any):
    return {
        "uid": DASHBOARD_UIDS[key],
        "title": title,
        "description": description,
        "tags": ["llm-cost"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "time": extra.get("time", {"from": "now-24h", "to": "now"}),
        "timezone": "",
        "templating": {"list": _variables(single_node=key == "node")},
        "annotations": {"list": []},
        "links": _links(key),
        "panels": _layout(panels),
    }


# --- fleet cost overview ------------------------------------------------------------


def _fleet_panels(currency: str) -> list[Panel]:
    money = f"currency{currency}"
    cost = f"sum(instance:llmcost_cost:rate5m{{{NODE}}})"
    tokens = f"sum(instance:llmcost_tokens:rate5m{{{NODE}}})"
    api = f"sum(instance:llmcost_api_equivalent_cost:rate5m{{{NODE}}})"
    priced_tokens = (
        f"sum(instance:llmcost_tokens:rate5m{{{NODE}}} and on (job, instance) "
        f"instance:llmcost_api_equivalent_cost:rate5m{{{NODE}}})"
    )
    in_range = "increase({metric}{{{sel}}}[$__range])"
    spend = "sum(" + in_range.format(metric="llmcost_cost_total", sel=NODE) + ")"
    api_spend = "sum(" + in_range.format(metric="llmcost_api_equivalent_cost_total", sel=NODE) + ")"
    return [
        _stat(
            "Cost per 1M tokens",
            "What 1M tokens really cost on the selected nodes over the last 5 minutes: spend "
            "rate over token rate (idle GPUs included). +Inf means spend with no tokens.",
            f"{cost} / {tokens} * 1e6",
            money,
            3,
        ),
        _stat(
            "API-equivalent per 1M tokens",
            "What the API would have charged per 1M of the same tokens over the last 5 minutes, "
            "at each model's input, cached-input and output prices (priced nodes only).",
            f"{api} / {priced_tokens} * 1e6",
            money,
            3,
        ),
        _stat(
            "Cost ratio",
            "Spend over API-equivalent cost over the last 5 minutes: above 100% the API would "
            "have been cheaper.",
            f"sum(instance:llmcost_cost:rate5m{{{NODE}}} and on (job, instance) "
            f"instance:llmcost_api_equivalent_cost:rate5m{{{NODE}}}) / {api}",
            "percentunit",
            0,
        ),
        _stat(
            "Spend in range",
            "Money spent in the dashboard's time range (set it to 'This month so far' for month "
            "to date): the increase of llmcost_cost_total.",
            spend,
            money,
            2,
        ),
        _stat(
            "API-equivalent in range",
            "What the API would have charged for the same tokens in the time range: the increase "
            "of llmcost_api_equivalent_cost_total.",
            api_spend,
            money,
            2,
        ),
        _stat(
            "Savings (+) or overspend (−) in range",
            "API-equivalent minus spend in the time range: positive, self-hosting saved that much; "
            "negative, the API would have been cheaper by that much.",
            f"{api_spend} - {spend}",
            money,
            2,
        ),
        Panel(
            "Cost per 1M tokens against the API",
            "Fleet cost per 1M tokens (spend rate over token rate, 5m) against the API-equivalent "
            "per 1M of the same token mix. Where cost is above API, self-hosting loses money.",
            [
                (f"{cost} / {tokens} * 1e6", "self-hosted"),
                (f"{api} / {priced_tokens} * 1e6", "API"),
            ],
            money,
            3,
        ),
        Panel(
            "Cost per 1M tokens by node",
            "Each node's spend rate over its token rate (5m): instance:llmcost_cost_per_million_"
            "tokens:ratio_rate5m, against its API-equivalent per 1M.",
            [
                (
                    f"instance:llmcost_cost_per_million_tokens:ratio_rate5m{{{NODE}}}",
                    "{{instance}}",
                ),
                (
                    f"instance:llmcost_api_equivalent_cost_per_million_tokens:ratio_rate5m{{{NODE}}}",
                    "{{instance}} API",
                ),
            ],
            money,
            3,
        ),
        Panel(
            "Cost per 1M tokens by model",
            "Each model's attributed spend (its GPUs and its share of the node) over its tokens "
            "(5m), against the API-equivalent per 1M of its own token mix.",
            [
                (
                    f"sum by (model) (instance_model:llmcost_cost:rate5m{{{MODEL}}}) / sum by "
                    f"(model) (instance_model:llmcost_tokens:rate5m{{{MODEL}}}) * 1e6",
                    "{{model}}",
                ),
                (
                    f"sum by (model) (instance_model:llmcost_api_equivalent_cost:rate5m{{{MODEL}}})"
                    f" / sum by (model) (instance_model:llmcost_tokens:rate5m{{{MODEL}}}) * 1e6",
                    "{{model}} API",
                ),
            ],
            money,
            3,
        ),
        _cost_per_request(currency),
        Panel(
            "Utilization against break-even by node",
            "Throughput over capacity (5m) against the break-even utilization, where self-hosting "
            "costs what the API would. Below its break-even line a node loses money.",
            [
                (f"instance:llmcost_throughput_utilization:ratio_rate5m{{{NODE}}}", "{{instance}}"),
                (
                    f"instance:llmcost_breakeven_utilization:ratio_rate5m{{{NODE}}}",
                    "{{instance}} break-even",
                ),
            ],
            "percentunit",
            1,
        ),
        Panel(
            "Hours below break-even (last 7 days)",
            "For each node and hour of the last week, 1 when that hour's spend exceeded its "
            "API-equivalent (hourly recording rules): the weekly shape that decides the "
            "economics — nights and weekends.",
            [
                (
                    f"sum by (instance) (instance:llmcost_cost:increase1h{{{NODE}}}) > bool "
                    f"sum by (instance) (instance_model:llmcost_api_equivalent_cost:increase1h"
                    f"{{{NODE}}})",
                    "{{instance}}",
                )
            ],
            "bool_yes_no",
            0,
            kind="state-timeline",
            options={"mergeValues": True, "showValue": "never"},
        ),
        Panel(
            "Spend by component",
            "Hourly spend rate by cost component (gpu, energy, node_extra, overhead, fixed), "
            "from the 5m rate of llmcost_cost_total.",
            [
                (
                    f"sum by (component) (instance_component:llmcost_cost:rate5m{{{NODE}}}) * 3600",
                    "{{component}}",
                )
            ],
            f"{money}",
            2,
            options={"legend": {"displayMode": "table", "placement": "right"}},
        ),
        Panel(
            "Tokens by kind",
            "Tokens per second by kind (5m): prompt (computed), cached_prompt (served from the "
            "prefix cache) and generation. Their sum is every token served.",
            [(f"sum by (kind) (instance_kind:llmcost_tokens:rate5m{{{NODE}}})", "{{kind}}")],
            TOKENS_PER_SECOND,
            0,
        ),
        Panel(
            "Spend by model in range",
            "Spend attributed to each model in the time range, including (unclaimed): GPUs no "
            "engine serves from, idle capacity.",
            [
                (
                    "sort_desc(sum by (model) (increase(llmcost_model_cost_total"
                    f"{{{NODE}}}[$__range])))",
                    "{{model}}",
                )
            ],
            money,
            2,
            kind="bargauge",
            instant=True,
        ),
        Panel(
            "Nodes ranked by money lost below break-even",
            "Nodes whose spend exceeded the API-equivalent of their tokens in the time range, "
            "by the money lost (spend minus API-equivalent).",
            [
                (
                    "sort_desc(sum by (instance) (increase(llmcost_cost_total"
                    f"{{{NODE}}}[$__range])) - sum by (instance) (increase("
                    f"llmcost_api_equivalent_cost_total{{{NODE}}}[$__range])) > 0)",
                    "{{instance}}",
                )
            ],
            money,
            2,
            kind="table",
            instant=True,
        ),
    ]


# --- node and engine detail -----------------------------------------------------------


def _gpu_panels() -> list[Panel]:
    gpu = NODE
    return [
        Panel(
            "GPU utilization used for alerts",
            "The figure LLMCostGpuUtilizationLow averages: SM activity where the GPU reports it, "
            "busy time otherwise (the source label says which; metrics.gpu_diagnostics exports "
            "both sources).",
            [(f"llmcost_gpu_selected_utilization_ratio{{{gpu}}}", "GPU {{gpu}} ({{source}})")],
            "percentunit",
            1,
        ),
        Panel(
            "GPU memory used",
            "Memory in use on each GPU (NVML v2, reserved memory excluded) against its total.",
            [
                (f"llmcost_gpu_memory_used_bytes{{{gpu}}}", "GPU {{gpu}} used"),
                (f"llmcost_gpu_memory_total_bytes{{{gpu}}}", "GPU {{gpu}} total"),
            ],
            "bytes",
            1,
        ),
        Panel(
            "GPU power",
            "Power draw of each GPU (a 1 s average on Ampere and newer).",
            [(f"llmcost_gpu_power_watts{{{gpu}}}", "GPU {{gpu}}")],
            "watt",
            0,
        ),
        Panel(
            "GPU energy in range",
            "Energy each GPU drew in the time range: the increase of llmcost_gpu_energy_joules_"
            "total, which survives driver reloads.",
            [
                (
                    f"increase(llmcost_gpu_energy_joules_total{{{gpu}}}[$__range]) / 3.6e6",
                    "GPU {{gpu}}",
                )
            ],
            "kwatth",
            2,
            kind="bargauge",
            instant=True,
        ),
        Panel(
            "GPUs unhealthy or lost",
            "GPUs NVML could not read in the last cycle (fallen off the bus or failing): they "
            "are still billed. Empty when every GPU answers.",
            [(f"llmcost_gpu_healthy{{{gpu}}} == 0", "GPU {{gpu}} {{uuid}}")],
            "none",
            0,
            kind="table",
            instant=True,
        ),
    ]


def _node_panels(currency: str) -> list[Panel]:
    money = f"currency{currency}"
    return [
        Panel(
            "Throughput by model",
            "Tokens served per second by model (5m rate of llmcost_tokens_total).",
            [
                (
                    f"sum by (model) (instance_model:llmcost_tokens:rate5m{{{MODEL}}})",
                    "{{model}}",
                )
            ],
            TOKENS_PER_SECOND,
            0,
        ),
        Panel(
            "Cost per 1M tokens against the API",
            "This node's spend rate over its token rate (5m) against the API-equivalent per 1M.",
            [
                (f"instance:llmcost_cost_per_million_tokens:ratio_rate5m{{{NODE}}}", "self-hosted"),
                (
                    f"instance:llmcost_api_equivalent_cost_per_million_tokens:ratio_rate5m{{{NODE}}}",
                    "API",
                ),
            ],
            money,
            3,
        ),
        Panel(
            "Tokens in flight",
            "Tokens resident in the KV cache of running requests, by model, against what the "
            "KV cache holds.",
            [
                (f"llmcost_tokens_in_flight{{{MODEL}}}", "{{model}} in flight"),
                (f"llmcost_kv_cache_capacity_tokens{{{MODEL}}}", "{{model}} KV capacity"),
            ],
            "short",
            0,
        ),
        Panel(
            "Running and waiting requests",
            "Requests in the engines' running batches and queued, by model.",
            [
                (f"llmcost_requests_running{{{MODEL}}}", "{{model}} running"),
                (f"llmcost_requests_waiting{{{MODEL}}}", "{{model}} waiting"),
            ],
            "short",
            0,
        ),
        Panel(
            "KV-cache usage",
            "Tokens in flight over KV-cache capacity, by model: near 100% requests queue for "
            "cache, not for compute.",
            [
                (
                    f"llmcost_tokens_in_flight{{{MODEL}}} / llmcost_kv_cache_capacity_tokens"
                    f"{{{MODEL}}}",
                    "{{model}}",
                )
            ],
            "percentunit",
            1,
        ),
        Panel(
            "Finished and preempted requests",
            "Requests finished and requests preempted per second, by model (5m rates of "
            "llmcost_requests_total and llmcost_preemptions_total). A preempted request's KV "
            "cache is dropped and recomputed: work paid for twice. Models whose engines count "
            "neither (llama.cpp) have no line.",
            [
                (
                    f"sum by (model) (rate(llmcost_requests_total{{{MODEL}}}[5m]))",
                    "{{model}} finished",
                ),
                (
                    f"sum by (model) (rate(llmcost_preemptions_total{{{MODEL}}}[5m]))",
                    "{{model}} preempted",
                ),
            ],
            "reqps",
            2,
        ),
        Panel(
            "KV-transferred prompt tokens",
            "Prompt tokens per second whose KV cache a prefill engine computed and sent to this "
            "node's decode engines (disaggregated serving), by model, beside the tokens served "
            "here: transferred tokens are priced on the prefill node, not in this node's "
            "throughput. Zero for engines that run prefill and decode together.",
            [
                (
                    f"sum by (model) (rate(llmcost_kv_transferred_prompt_tokens_total{{{MODEL}}}"
                    f"[5m]))",
                    "{{model}} transferred in",
                ),
                (
                    f"sum by (model) (instance_model:llmcost_tokens:rate5m{{{MODEL}}})",
                    "{{model}} served",
                ),
            ],
            TOKENS_PER_SECOND,
            0,
        ),
        Panel(
            "Spend by component",
            "Hourly spend rate of this node by cost component.",
            [(f"instance_component:llmcost_cost:rate5m{{{NODE}}} * 3600", "{{component}}")],
            money,
            2,
        ),
        *_gpu_panels(),
        Panel(
            "Collector health",
            "1 when the source (engine page or NVML) answered the last collection cycle.",
            [(f"llmcost_collector_up{{{NODE}}}", "{{collector}} {{target}}")],
            "bool_yes_no",
            0,
            kind="state-timeline",
            options={"mergeValues": True, "showValue": "never"},
        ),
        Panel(
            "Collection durations",
            "How long the last collection of each source (engine page scrape or NVML read) "
            "took; a source near collection.timeout is about to fail with reason timeout.",
            [(f"llmcost_collector_duration_seconds{{{NODE}}}", "{{collector}} {{target}}")],
            "s",
            3,
        ),
        Panel(
            "Collection failures by reason",
            f"Failed collections per 5 minutes by source and reason ({', '.join(REASONS)}).",
            [
                (
                    f"sum by (collector, target, reason) (increase(llmcost_collector_errors_total"
                    f"{{{NODE}}}[5m]))",
                    "{{collector}} {{target}} {{reason}}",
                )
            ],
            "short",
            0,
        ),
    ]


# --- capacity and latency -------------------------------------------------------------------

QUANTILES = ("0.5", "0.95")
LATENCY_WINDOW = "5m"


@dataclass(frozen=True)
class Histogram:
    """An engine family's latency histogram, under each name its releases used."""

    engine: str
    """The engine as the legend names it."""
    names: tuple[str, ...]
    model_label: str | None = "model_name"
    """The label naming the model, which `$model` filters; None where the page names none."""

    def targets(self) -> list[tuple[str, str]]:
        selector = f'{{{self.model_label}=~"$model"}}' if self.model_label else ""
        by = self.model_label or "instance"
        rates = " or ".join(
            f"rate({name}_bucket{selector}[{LATENCY_WINDOW}])" for name in self.names
        )
        return [
            (
                f"histogram_quantile({q}, sum by (le, {by}) ({rates}))",
                f"{self.engine} {{{{{by}}}}} p{round(float(q) * 100)}",
            )
            for q in QUANTILES
        ]

    def source(self) -> str:
        return f"{self.engine} {' or '.join(self.names)} (p50, p95)"


@dataclass(frozen=True)
class Mean:
    """Triton's cumulative microseconds over its successful requests: a mean, not a
    percentile. Only the models that count tokens (the TensorRT-LLM ones the exporter
    reads), not the ensemble or its pre- and postprocessing steps."""

    engine: str
    microseconds: str
    requests: str = "nv_inference_request_success"
    llm_models: str = "nv_llm_output_token_len_count"

    def targets(self) -> list[tuple[str, str]]:
        selector = '{model=~"$model"}'
        duration = (
            f"sum by (model) (rate({self.microseconds}{selector}[{LATENCY_WINDOW}]) "
            f"and on (job, instance, model, version) {self.llm_models})"
        )
        requests = f"sum by (model) (rate({self.requests}{selector}[{LATENCY_WINDOW}]))"
        return [(f"{duration} / {requests} / 1e6", f"{self.engine} {{{{model}}}} mean")]

    def source(self) -> str:
        return f"{self.engine} {self.microseconds} over {self.requests} (a mean)"


LATENCY_LEGEND = {
    "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
    "tooltip": {"mode": "multi", "sort": "desc"},
}
LATENCY_NOTE = (
    "Read from the engines' own /metrics pages, which Prometheus must scrape beside the "
    "exporter. $model filters model_name, and Triton's model label (its own model name, "
    "which is the exporter's unless engines[].model renames it). TGI's page names no model: "
    "its lines carry the scraped instance and ignore $model. llama.cpp exposes no latency "
    "histogram, so it has no line."
)
LATENCY_PANELS: dict[str, tuple[str, tuple[Histogram | Mean, ...]]] = {
    "Time to first token": (
        "p50 and p95 time to first token (5m) by engine and model: the latency side of the "
        "batching trade-off, more batching makes tokens cheaper and first tokens slower. TGI "
        "and Triton expose no time-to-first-token histogram.",
        (
            Histogram("vLLM", ("vllm:time_to_first_token_seconds",)),
            Histogram("SGLang", ("sglang:time_to_first_token_seconds",)),
            Histogram("LMDeploy", ("lmdeploy:time_to_first_token_seconds",)),
        ),
    ),
    "Inter-token latency": (
        "p50 and p95 time between output tokens (5m) by engine and model: what a streaming "
        "reader feels. vLLM's inter_token_latency (time_per_output_token on older releases), "
        "LMDeploy's time per output token; TGI records each request's mean time per token, "
        "so its percentiles are over requests, not tokens. Triton exposes none.",
        (
            Histogram(
                "vLLM",
                ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
            ),
            Histogram("SGLang", ("sglang:inter_token_latency_seconds",)),
            Histogram("LMDeploy", ("lmdeploy:time_per_output_token_seconds",)),
            Histogram("TGI", ("tgi_request_mean_time_per_token_duration",), None),
        ),
    ),
    "End-to-end request latency": (
        "p50 and p95 time from a request's arrival to its last token (5m) by engine and "
        "model, over finished requests (TGI: successful ones). Triton gives only a mean "
        "request duration of its TensorRT-LLM model.",
        (
            Histogram("vLLM", ("vllm:e2e_request_latency_seconds",)),
            Histogram("SGLang", ("sglang:e2e_request_latency_seconds",)),
            Histogram("LMDeploy", ("lmdeploy:e2e_request_latency_seconds",)),
            Histogram("TGI", ("tgi_request_duration",), None),
            Mean("Triton", "nv_inference_request_duration_us"),
        ),
    ),
    "Queue time": (
        "p50 and p95 time requests waited before their first step (5m) by engine and model: "
        "growing queue time with flat throughput means the engine is saturated. Triton gives "
        "a mean; SGLang's page has no queue-time histogram by default.",
        (
            Histogram("vLLM", ("vllm:request_queue_time_seconds",)),
            Histogram("LMDeploy", ("lmdeploy:request_queue_time_seconds",)),
            Histogram("TGI", ("tgi_request_queue_duration",), None),
            Mean("Triton", "nv_inference_queue_duration_us"),
        ),
    ),
}
"""One panel per latency, one query per engine family and percentile: families have their
own bucket bounds, so they cannot be summed into one histogram, and one panel per latency
puts every engine of a node on the same axis (a panel per family would leave most empty)."""


def _latency_panels() -> list[Panel]:
    panels = []
    for title, (description, sources) in LATENCY_PANELS.items():
        read = "; ".join(source.source() for source in sources)
        panels.append(
            Panel(
                title,
                f"{description} Series: {read}. {LATENCY_NOTE}",
                [target for source in sources for target in source.targets()],
                "s",
                3,
                height=10,
                options=LATENCY_LEGEND,
            )
        )
    return panels


def _cost_per_request(currency: str) -> Panel:
    return Panel(
        "Cost per request by model",
        "Spend attributed to each model over the requests its engines finished (5m): "
        "llmcost_model_cost_total over llmcost_requests_total. Only models whose engines "
        "count finished requests (vLLM, LMDeploy, Triton, TGI) have a line.",
        [
            (
                f"sum by (model) (instance_model:llmcost_cost:rate5m{{{MODEL}}}) / sum by "
                f"(model) (rate(llmcost_requests_total{{{MODEL}}}[5m]))",
                "{{model}}",
            )
        ],
        f"currency{currency}",
        4,
    )


def _request_panels() -> list[Panel]:
    return [
        Panel(
            "Finished requests by model",
            "Requests the engines finished per second by model (5m rate of llmcost_requests_"
            "total; vLLM counts every finish reason, LMDeploy, Triton and TGI successful "
            "ones). SGLang and llama.cpp pages give no count the exporter reads.",
            [
                (
                    f"sum by (model) (rate(llmcost_requests_total{{{MODEL}}}[5m]))",
                    "{{model}}",
                )
            ],
            "reqps",
            2,
        ),
        Panel(
            "Preemptions by model",
            "Requests preempted per second by model (5m rate of llmcost_preemptions_total: "
            "vLLM preemptions, SGLang retractions): their KV cache was dropped and is "
            "recomputed, work paid for twice. Non-zero means the KV cache is too small for "
            "the batch; compare with Finished requests by model.",
            [
                (
                    f"sum by (model) (rate(llmcost_preemptions_total{{{MODEL}}}[5m]))",
                    "{{model}}",
                )
            ],
            "reqps",
            3,
        ),
    ]


def _capacity_panels(currency: str) -> list[Panel]:
    money = f"currency{currency}"
    per_million = (
        f"sum by (model) (instance_model:llmcost_cost:rate5m{{{MODEL}}}) / sum by (model) "
        f"(instance_model:llmcost_tokens:rate5m{{{MODEL}}}) * 1e6"
    )
    finished, preemptions = _request_panels()
    return [
        Panel(
            "Cost per 1M tokens by model",
            "Attributed spend over tokens (5m), by model: the price side of the batching "
            "trade-off shown beside the latencies below.",
            [(per_million, "{{model}}")],
            money,
            3,
        ),
        _cost_per_request(currency),
        *_latency_panels(),
        finished,
        Panel(
            "Running requests (batch size)",
            "Requests in the running batches by model: the batch size that buys the cost per 1M.",
            [(f"llmcost_requests_running{{{MODEL}}}", "{{model}}")],
            "short",
            0,
        ),
        preemptions,
        Panel(
            "Tokens in flight against KV capacity",
            "Tokens resident in the KV cache against its capacity, by model: a full KV cache "
            "queues requests and preempts running ones.",
            [
                (f"llmcost_tokens_in_flight{{{MODEL}}}", "{{model}} in flight"),
                (f"llmcost_kv_cache_capacity_tokens{{{MODEL}}}", "{{model}} capacity"),
            ],
            "short",
            0,
        ),
        Panel(
            "Throughput against capacity",
            "Tokens per second served (5m) against the capacity utilization is measured by: "
            "configured, else the learned sustained peak.",
            [
                (f"instance:llmcost_tokens:rate5m{{{NODE}}}", "{{instance}} served"),
                (
                    f"instance:llmcost_capacity_tokens_per_second:preferred{{{NODE}}}",
                    "{{instance}} capacity",
                ),
            ],
            TOKENS_PER_SECOND,
            0,
        ),
        Panel(
            "Learned against configured capacity",
            "The capacity configured and the one learned from sustained peak throughput, per node "
            "and per model: a learned peak far below the configured one means the node never "
            "gets the load it was sized for.",
            [
                (f"llmcost_capacity_tokens_per_second{{{NODE}}}", "{{instance}} {{source}}"),
                (
                    f"llmcost_model_capacity_tokens_per_second{{{MODEL}}}",
                    "{{model}} {{source}}",
                ),
            ],
            TOKENS_PER_SECOND,
            0,
        ),
    ]


def render_dashboards(currency: str = "USD") -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON."""
    return {
        "fleet-cost-overview.json": _dashboard(
            "fleet",
            "LLM cost: fleet overview",
            "What self-hosting costs per 1M tokens against the API, where the money goes, and "
            "which nodes lose it.",
            _fleet_panels(currency),
            time={"from": "now/M", "to": "now"},
        ),
        "node-detail.json": _dashboard(
            "node",
            "LLM cost: node and engine detail",
            "One node: throughput, requests, KV cache, GPUs and the health of each source.",
            _node_panels(currency),
        ),
        "capacity-latency.json": _dashboard(
            "capacity",
            "LLM cost: capacity and latency",
            "The batching trade-off: cost per 1M tokens and per request against each engine's "
            "time to first token, inter-token, end-to-end and queue latency; requests finished "
            "and preempted, KV cache, and capacity learned against configured.",
            _capacity_panels(currency),
        ),
    }


def render_markdown(dashboards: dict[str, dict[str, Any]]) -> str:
    """The per-panel reference, built from the dashboards' JSON."""
    lines = [
        "# Dashboards",
        "",
        "Generated by `llm-cost-exporter dashboards` from `exporter/generators/dashboards.py`,",
        "like the JSON next to it: edit the source, not these files. Import the JSON into Grafana",
        "(Dashboards → Import) and pick your Prometheus data source; the recording rules",
        "of `alerts/recording-rules.yml` must be loaded. The latency panels of the capacity",
        "dashboard read the engines' own histograms: Prometheus must scrape each engine's",
        "`/metrics` page as well as the exporter.",
        "",
    ]
    for name, board in dashboards.items():
        lines += [f"## {board['title']} (`{name}`)", "", board["description"], ""]
        for panel in board["panels"]:
            lines += [f"### {panel['title']}", "", panel["description"], ""]
            unit = panel["fieldConfig"]["defaults"]["unit"]
            lines.append(f"Unit: `{unit}`.")
            if panel["title"] in MAY_BE_EMPTY:
                lines.append(f"May be empty: it {MAY_BE_EMPTY[panel['title']]}.")
            lines.append("")
            lines += ["```promql", *(t["expr"] for t in panel["targets"]), "```", ""]
    return "\n".join(lines)


def render_files(currency: str = "USD") -> dict[str, str]:
    """Every file of `dashboards/`: the JSON and the markdown reference."""
    dashboards = render_dashboards(currency)
    files = {name: json.dumps(board, indent=2) + "\n" for name, board in dashboards.items()}
    files["README.md"] = render_markdown(dashboards)
    return files
