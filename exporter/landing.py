"""The plain HTML landing page: the node's key figures at a glance.

For a person with a browser and no Grafana: cost per 1M against the API,
utilization against break-even, spend today, and which sources are up.
Rendered from the in-memory state on request; no I/O, no external assets.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from html import escape

from exporter.node import NodeState, WindowFigures


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


def _verdict(figure: WindowFigures) -> str:
    if figure.cost_ratio is None or math.isnan(figure.cost_ratio):
        return "unknown (API price missing)"
    if figure.cost_ratio > 1:
        return "<b class=bad>below break-even: the API would be cheaper</b>"
    return "<b class=good>above break-even: self-hosting is cheaper</b>"


def render_landing(state: NodeState, healthy: bool) -> str:
    currency = state.config.currency
    rows = []
    for name, seconds in state.windows.items():
        figure = state.window(seconds)
        if figure is None:
            rows.append(f"<tr><td>{escape(name)}</td><td colspan=6>collecting…</td></tr>")
            continue
        covered = "" if figure.seconds >= seconds * 0.99 else f" (first {figure.seconds:.0f}s)"
        rows.append(
            "<tr>"
            f"<td>{escape(name)}{covered}</td>"
            f"<td>{figure.tokens_per_second:,.1f}</td>"
            f"<td>{_money(figure.effective_cost_per_million, currency)}</td>"
            f"<td>{_money(figure.api_cost_per_million, currency)}</td>"
            f"<td>{_percent(figure.utilization)}</td>"
            f"<td>{_percent(figure.breakeven_utilization)}</td>"
            f"<td>{_verdict(figure)}</td>"
            "</tr>"
        )
    targets = "".join(
        f"<tr><td>{escape(s.collector)}</td><td>{escape(s.target)}</td>"
        f"<td>{'up' if s.up else 'down'}</td><td>{escape(s.last_error)}</td></tr>"
        for s in sorted(state.targets.values(), key=lambda s: s.target)
    )
    since = datetime.fromtimestamp(
        max(state.day_started_wall, state.started_wall), timezone.utc
    ).strftime("%Y-%m-%d %H:%M UTC")
    spend_today = state.spend_total - state.spend_at_day_start
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
<p>Loaded cost of this node: <b>{_money(state.hourly_total, currency)}</b> per hour.
Capacity: {capacity_text}. Spend today: <b>{_money(spend_today, currency)}</b>
(since {since}). Exporter {"healthy" if healthy else "NOT healthy"}.</p>
<table><tr><th>window</th><th>tokens/s</th><th>cost per 1M tokens</th>
<th>API-equivalent per 1M</th><th>utilization</th><th>break-even utilization</th>
<th>verdict</th></tr>
{"".join(rows)}
</table>
<h2>Sources</h2>
<table><tr><th>collector</th><th>target</th><th>state</th><th>last error</th></tr>{targets}</table>
<p><a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a></p>
</body></html>
"""
