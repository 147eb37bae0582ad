"""The plain HTML landing page: the node's key figures at a glance.

For a person with a browser and no Grafana: a headline saying whether the
figures are current (which sources are down, a stalled loop), cost per 1M
against the API and the span each window really covers, utilization against
break-even, spend today, per-model cost, the GPUs and each source's state.
Rendered from the in-memory state on request; no I/O, no external assets.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from html import escape

from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.accounting.windows import WindowFigures
from llm_cost_exporter.daemon.loop import LoopHealth


def _money(value: float | None, currency: str) -> str:
    if value is None or math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞ (no tokens)"
    return f"{value:,.4f} {currency}" if value < 1 else f"{value:,.2f} {currency}"


def _percent(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return "∞" if math.isinf(value) else f"{value * 100:.1f}%"


def _span(seconds: float) -> str:
    """`1h`, `5m`, `2m 10s`: the time a window's figures cover."""
    whole = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    if whole or not parts:
        parts.append(f"{whole}s")
    return " ".join(parts[:2])


def _headline(state: NodeState, health: LoopHealth) -> str:
    """Whether the figures below are current: the loop's state, then the sources'."""
    if health.state == "starting":
        return "Starting: the first collection has not finished yet."
    loop = ""
    if health.state == "stalled":
        loop = (
            f"<b class=bad>Stale: no collection has finished for {_span(health.age_seconds)}"
            "; the figures below are from the last one.</b> "
        )
    sources = sorted(state.targets.values(), key=lambda s: (s.collector, s.target))
    down = [f"{s.collector} {s.target}" for s in sources if not s.up]
    if not down:
        return f"{loop}<b class=good>All {len(sources)} sources up.</b>"
    if len(down) == len(sources):
        return f"{loop}<b class=bad>All sources down: no figure below is current.</b>"
    return (
        f"{loop}<b class=bad>Partially up: {len(down)} of {len(sources)} sources down "
        f"({escape(', '.join(down))}).</b>"
    )


def _withheld(state: NodeState, health: LoopHealth, model: str | None = None) -> str | None:
    """Why no verdict is given: a stalled loop, or no engine (of `model`) answering."""
    if not health.alive:
        return "unknown (stale)"
    engines = [s for s in state.targets.values() if s.engine]
    if model is not None:
        engines = [s for s in engines if model in s.models]
    if engines and not any(s.up for s in engines):
        return "unknown (no engine answers)"
    return None


def _verdict(figure: WindowFigures, withheld: str | None = None) -> str:
    if withheld is not None:
        return withheld
    if figure.cost_ratio is None or math.isnan(figure.cost_ratio):
        return "unknown (API price missing)"
    if figure.cost_ratio > 1:
        return "<b class=bad>below break-even: the API would be cheaper</b>"
    return "<b class=good>above break-even: self-hosting is cheaper</b>"


def _model_rows(state: NodeState, health: LoopHealth) -> str:
    """Per-model cost over the shortest window, and each owner's hourly cost."""
    currency = state.config.currency
    window, seconds = next(iter(state.windows.items()))
    rows = []
    for owner, hourly in sorted(state.accrual.owner_hourly.items()):
        figure = state.model_window(owner, seconds) if owner in state.model_history else None
        cells = (
            f"<td>{_money(figure.effective_cost_per_million, currency)}</td>"
            f"<td>{_money(figure.api_cost_per_million, currency)}</td>"
            f"<td>{_verdict(figure, _withheld(state, health, owner))}</td>"
            f"<td>{_span(figure.seconds)}</td>"
            if figure is not None
            else "<td colspan=4>–</td>"
        )
        rows.append(f"<tr><td>{escape(owner)}</td><td>{_money(hourly, currency)}</td>{cells}</tr>")
    return (
        f"<table><tr><th>model</th><th>cost per hour</th><th>cost per 1M ({escape(window)})</th>"
        f"<th>API-equivalent per 1M</th><th>verdict</th><th>covers</th></tr>{''.join(rows)}</table>"
    )


def _gpu_rows(state: NodeState) -> str:
    currency = state.config.currency
    owners = state.gpu_owners
    preferred = state.config.nvml.utilization_source
    rows = []
    for status in state.fleet.gpus.values():
        gpu, reading = status.gpu, status.reading
        health = {None: "not read", True: "healthy", False: "<b class=bad>unhealthy</b>"}[
            status.healthy
        ]
        chosen = reading.utilization(preferred) if reading is not None else None
        utilization = f"{_percent(chosen[0])} ({chosen[1]})" if chosen else "–"
        power = (
            f"{reading.power_watts:,.0f} W"
            if reading is not None and reading.power_watts is not None
            else "–"
        )
        rows.append(
            f"<tr><td>{escape(gpu.label)}</td><td>{escape(gpu.name)}</td>"
            f"<td>{escape(', '.join(owners.get(gpu.key, ())))}</td><td>{health}</td>"
            f"<td>{utilization}</td><td>{power}</td><td>{_money(gpu.hourly, currency)}</td></tr>"
        )
    return (
        "<table><tr><th>gpu</th><th>name</th><th>serves</th><th>health</th>"
        "<th>utilization</th><th>power</th><th>price per hour</th></tr>"
        f"{''.join(rows)}</table>"
    )


def render_landing(state: NodeState, health: LoopHealth) -> str:
    currency = state.config.currency
    withheld = _withheld(state, health)
    rows = []
    for name, seconds in state.windows.items():
        figure = state.window(seconds)
        if figure is None:
            rows.append(f"<tr><td>{escape(name)}</td><td colspan=7>collecting…</td></tr>")
            continue
        rows.append(
            "<tr>"
            f"<td>{escape(name)}</td><td>{_span(figure.seconds)}</td>"
            f"<td>{figure.tokens_per_second:,.1f}</td>"
            f"<td>{_money(figure.effective_cost_per_million, currency)}</td>"
            f"<td>{_money(figure.api_cost_per_million, currency)}</td>"
            f"<td>{_percent(figure.utilization)}</td>"
            f"<td>{_percent(figure.breakeven_utilization)}</td>"
            f"<td>{_verdict(figure, withheld)}</td>"
            "</tr>"
        )
    targets = "".join(
        f"<tr><td>{escape(s.collector)}</td><td>{escape(s.target)}</td>"
        f"<td>{'up' if s.up else 'down'}</td><td>{escape(s.last_error)}</td></tr>"
        for s in sorted(state.targets.values(), key=lambda s: s.target)
    )
    links = '<a href="/healthz">/healthz</a>'
    if state.config.serve_metrics:
        links = f'<a href="/metrics">/metrics</a> · {links}'
    if state.config.otlp.enabled:
        links += f" · pushed over OTLP to {escape(state.config.otlp.target)}"
    since = datetime.fromtimestamp(
        max(state.day_started_wall, state.started_wall), timezone.utc
    ).strftime("%Y-%m-%d %H:%M UTC")
    spend_today = state.accrual.spend_total - state.spend_at_day_start
    capacity = state.capacity
    capacity_text = (
        f"{capacity[0]:,.0f} tokens/s ({capacity[1]})" if capacity else "not known yet (learning)"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>llm-cost-exporter</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.3em .6em}}
th{{background:#f4f4f4}}.bad{{color:#b00}}.good{{color:#070}}
</style></head><body>
<h1>llm-cost-exporter</h1>
<p>Loaded cost of this node: <b>{_money(state.accrual.hourly_total, currency)}</b> per hour.
Capacity: {capacity_text}. Spend today: <b>{_money(spend_today, currency)}</b>
(since {since}).</p>
<p>{_headline(state, health)}</p>
<table><tr><th>window</th><th>covers</th><th>tokens/s</th><th>cost per 1M tokens</th>
<th>API-equivalent per 1M</th><th>utilization</th><th>break-even utilization</th>
<th>verdict</th></tr>
{"".join(rows)}
</table>
<h2>Cost by model</h2>
{_model_rows(state, health)}
<h2>GPUs</h2>
{_gpu_rows(state)}
<h2>Sources</h2>
<table><tr><th>collector</th><th>target</th><th>state</th><th>last error</th></tr>{targets}</table>
<p>{links}</p>
</body></html>
"""
