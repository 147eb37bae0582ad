"""The plain HTML landing page: is this node beating the API, and since when.

For a person with a browser and no Grafana: a headline with the verdict over
the page's window and how long it has held, its key figures, whether they are
current (which sources are down, a stalled loop) and as of when; charts of the
live history; the figures over every window, per model, the GPUs and each
source's state. Rendered from the in-memory state of the last cycle; no I/O,
no external assets. A small inline script fetches the page again every
collection interval and swaps its main element when a new cycle has ended;
without script the page is whole, only static.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from html import escape

from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.accounting.windows import WindowFigures, blended_api_cost_per_million
from llm_cost_exporter.collectors.readings import GpuReading
from llm_cost_exporter.daemon.landing_charts import Line, line_chart
from llm_cost_exporter.daemon.landing_format import (
    MISSING,
    Money,
    data_value,
    known,
    percent,
    percent_axis,
    span,
)
from llm_cost_exporter.daemon.landing_history import (
    Sample,
    beating,
    sample_history,
    verdict_since,
)
from llm_cost_exporter.daemon.loop import LoopHealth

PAGE_WINDOW_LIMIT = 3600.0
"""The page's window is the longest configured one up to this: long enough that its
verdict does not flip from one refresh to the next, short enough to mean "now"."""

SIMULATED_GPU_COLLECTOR = "simulated_gpu"
"""The GPU collector of `--demo`: its GPUs are not real, and the page says so."""

COST_CHART_CEILING = 4.0
"""The cost chart is cut at this multiple of the highest API-equivalent price."""


def page_window(windows: Mapping[str, float]) -> tuple[str, float]:
    """The configured window the headline, charts and model table use: the longest up to
    PAGE_WINDOW_LIMIT, else the shortest."""
    within = [(seconds, name) for name, seconds in windows.items() if seconds <= PAGE_WINDOW_LIMIT]
    seconds, name = max(within) if within else min((s, n) for n, s in windows.items())
    return name, seconds


def _when(wall: float, seconds: bool = True) -> str:
    moment = datetime.fromtimestamp(wall, timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def _cycle_wall(state: NodeState, health: LoopHealth) -> float | None:
    """Wall time of the last cycle: the node's clock less the time since that cycle."""
    if health.state == "starting" or state.history.latest() is None:
        return None
    return state.wall_now() - health.age_seconds


def _cycle_key(state: NodeState, health: LoopHealth) -> str:
    """Changes with every cycle and with the loop's state: the script swaps on a change."""
    latest = state.history.latest()
    return f"{latest.time!r}:{health.state}" if latest is not None else health.state


def _figure(name: str, value: float | None, shown: str, window: str = "") -> str:
    """A figure a machine can find: its name, its exact value, its window."""
    of = f' data-window="{escape(window)}"' if window else ""
    return (
        f'<b class=value data-figure="{name}"{of} data-value="{data_value(value)}">'
        f"{escape(shown)}</b>"
    )


def _health(state: NodeState, health: LoopHealth) -> str:
    """Whether the figures are current: the loop's state, then the sources'."""
    if health.state == "starting":
        return "Starting: the first collection has not finished yet."
    loop = ""
    if health.state == "stalled":
        loop = (
            f"<b class=bad>Stale: no collection has finished for {span(health.age_seconds)}"
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
    if beating(figure) is None:
        return "unknown (API price missing)"
    if not beating(figure):
        return "<b class=bad>below break-even: the API would be cheaper</b>"
    return "<b class=good>above break-even: self-hosting is cheaper</b>"


# --- the headline -------------------------------------------------------------------


def _since(samples: list[Sample], now: bool, cycle_wall: float | None) -> str:
    """`… since 2025-01-01 14:05 UTC (2h 10m).`: how long the verdict of now has held."""
    since = verdict_since(samples, now)
    if since is None or cycle_wall is None:
        return ""
    cheaper = "Self-hosting has been cheaper" if now else "The API has been cheaper"
    if since.age <= 0:
        return f"{cheaper} since the last collection only."
    started = _when(cycle_wall - since.age, seconds=False)
    if since.whole_history:
        return f"{cheaper} all along the {span(since.age)} of history kept (since {started})."
    return f"{cheaper} since {started} ({span(since.age)})."


def _headline(
    state: NodeState,
    health: LoopHealth,
    window: tuple[str, float],
    samples: list[Sample],
    cycle_wall: float | None,
) -> str:
    currency = state.config.currency
    name, seconds = window
    figure = state.window(seconds)
    withheld = _withheld(state, health)
    if figure is None:
        verdict = "<p class=verdict>Beating the API? Not known yet: collecting…</p>"
    elif withheld is not None or beating(figure) is None:
        why = withheld or "unknown (API price missing)"
        verdict = f"<p class=verdict>Beating the API? {escape(why)}.</p>"
    else:
        now = bool(beating(figure))
        words = (
            "<b class=good>Beating the API: self-hosting is cheaper</b>"
            if now
            else "<b class=bad>Not beating the API: the API would be cheaper</b>"
        )
        ratio = figure.cost_ratio or 0.0
        compared = (
            f"self-hosted tokens cost {ratio:,.2f}× what the API would charge for them"
            if math.isfinite(ratio)
            else "no token was served while the node's cost ran on"
        )
        verdict = (
            f"<p class=verdict>{words}.</p><p>Over the last {escape(name)} (covering "
            f"{span(figure.seconds)}), {compared}. {_since(samples, now, cycle_wall)}</p>"
        )
    figures = [figure.effective_cost_per_million, figure.api_cost_per_million] if figure else []
    prices, amounts = Money.prices(currency, figures), Money.amounts(currency)

    def value(attr: str) -> float | None:
        return getattr(figure, attr) if figure is not None else None

    cost, api = value("effective_cost_per_million"), value("api_cost_per_million")
    utilization, breakeven = value("utilization"), value("breakeven_utilization")
    spend, hourly = state.accrual.spend_total, state.accrual.hourly_total
    spend_today = spend - state.spend_at_day_start
    day_start = _when(max(state.day_started_wall, state.started_wall), seconds=False)
    cells = [
        (
            "Cost per 1M tokens",
            _figure("cost_per_million", cost, prices(cost), name),
            f"over the last {escape(name)}",
        ),
        (
            "API-equivalent per 1M",
            _figure("api_cost_per_million", api, prices(api), name),
            "the same token mix at API prices",
        ),
        (
            "Utilization",
            _figure("utilization", utilization, percent(utilization), name),
            "break-even " + _figure("breakeven_utilization", breakeven, percent(breakeven), name),
        ),
        (
            "Spend today",
            _figure("spend_today", spend_today, amounts(spend_today)),
            f"since {day_start}",
        ),
        ("Spend, all time", _figure("spend", spend, amounts(spend)), "since counting began"),
        (
            "Loaded cost per hour",
            _figure("hourly_cost", hourly, amounts(hourly)),
            "GPUs, overhead and fixed costs",
        ),
    ]
    boxes = "".join(
        f"<div class=figure><span class=label>{label}</span>{shown}"
        f"<span class=note>{note}</span></div>"
        for label, shown, note in cells
    )
    as_of = (
        f'As of <time data-figure="as_of" datetime="{_iso(cycle_wall)}">{_when(cycle_wall)}</time>.'
        if cycle_wall is not None
        else "No collection has finished yet."
    )
    return (
        f"<section class=headline>{verdict}<div class=figures>{boxes}</div>"
        f"<p>{_health(state, health)}</p><p class=asof>{as_of}</p></section>"
    )


def _iso(wall: float | None) -> str:
    if wall is None:
        return ""
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="seconds")


# --- charts ---------------------------------------------------------------------------


def _charts(
    state: NodeState, window: tuple[str, float], samples: list[Sample], cycle_wall: float | None
) -> str:
    if len(samples) < 2 or cycle_wall is None:
        return "<section class=charts><h2>History</h2><p>Collecting…</p></section>"
    currency = state.config.currency
    name = window[0]
    times = [cycle_wall - s.age for s in samples]

    def of(attr: str) -> list[float | None]:
        return [getattr(s.figures, attr) if s.figures else None for s in samples]

    cost, api = of("effective_cost_per_million"), of("api_cost_per_million")
    known_api = [v for v in api if known(v)]
    ceiling = COST_CHART_CEILING * max(known_api) if known_api else None
    spend = [s.spend for s in samples]
    captions = ("Cost per 1M tokens", "Utilization", "Spend")
    charts = [
        line_chart(
            "cost",
            f"Cost per 1M tokens against the API, over the {name} before each time",
            times,
            [
                Line("cost_per_million", "cost per 1M", cost, "#2563eb"),
                Line("api_cost_per_million", "API-equivalent per 1M", api, "#6b7280", True),
            ],
            lambda ticks: Money.axis(currency, ticks),
            f"{currency} per 1M tokens",
            ceiling,
        ),
        line_chart(
            "utilization",
            f"Utilization against break-even, over the {name} before each time",
            times,
            [
                Line("utilization", "utilization", of("utilization"), "#047857"),
                Line(
                    "breakeven_utilization",
                    "break-even",
                    of("breakeven_utilization"),
                    "#b91c1c",
                    True,
                ),
            ],
            percent_axis,
            "of capacity",
        ),
        line_chart(
            "spend",
            "Spend since the start of the chart",
            times,
            [Line("spend", "spend", spend, "#7c3aed")],
            lambda ticks: Money.axis(currency, ticks),
            currency,
        ),
    ]
    covered = span(samples[0].age)
    return (
        f"<section class=charts><h2>The last {covered}</h2>"
        f"<p class=note>Each point of the first two charts covers the {escape(name)} before "
        "it, as the headline does; break-even above utilization means the API would have "
        "been cheaper.</p>"
        + "<div class=grid>"
        + "".join(
            f"<figure><figcaption>{escape(caption)}</figcaption>{chart}</figure>"
            for caption, chart in zip(captions, charts, strict=True)
        )
        + "</div></section>"
    )


# --- tables ---------------------------------------------------------------------------


def _price_columns(currency: str, figures: Iterable[WindowFigures | None]) -> tuple[Money, Money]:
    """The formats of a table's cost per 1M column and its API-equivalent column."""
    known_figures = [f for f in figures if f is not None]
    return (
        Money.prices(currency, [f.effective_cost_per_million for f in known_figures]),
        Money.prices(currency, [f.api_cost_per_million for f in known_figures]),
    )


def _scroll(table: str) -> str:
    return f"<div class=scroll>{table}</div>"


def _window_rows(state: NodeState, health: LoopHealth) -> str:
    withheld = _withheld(state, health)
    figures = {name: state.window(seconds) for name, seconds in state.windows.items()}
    cost, api = _price_columns(state.config.currency, figures.values())
    rows = []
    for name, figure in figures.items():
        if figure is None:
            rows.append(f"<tr><td>{escape(name)}</td><td colspan=7>collecting…</td></tr>")
            continue
        rows.append(
            "<tr>"
            f"<td>{escape(name)}</td><td>{span(figure.seconds)}</td>"
            f"<td class=num>{figure.tokens_per_second:,.1f}</td>"
            f"<td class=num>{cost(figure.effective_cost_per_million)}</td>"
            f"<td class=num>{api(figure.api_cost_per_million)}</td>"
            f"<td class=num>{percent(figure.utilization)}</td>"
            f"<td class=num>{percent(figure.breakeven_utilization)}</td>"
            f"<td>{_verdict(figure, withheld)}</td>"
            "</tr>"
        )
    return _scroll(
        "<table><tr><th>window</th><th>covers</th><th>tokens/s</th>"
        "<th>cost per 1M tokens</th><th>API-equivalent per 1M</th><th>utilization</th>"
        f"<th>break-even utilization</th><th>verdict</th></tr>{''.join(rows)}</table>"
    )


def _model_rows(state: NodeState, health: LoopHealth, window: tuple[str, float]) -> str:
    """Per-model figures over the page's window, and each owner's hourly cost."""
    currency = state.config.currency
    name, seconds = window
    owners = sorted(state.accrual.owner_hourly.items())
    figures = {
        owner: state.model_window(owner, seconds) if owner in state.model_history else None
        for owner, _ in owners
    }
    cost, api = _price_columns(currency, figures.values())
    amounts = Money.amounts(currency)
    rows = []
    for owner, hourly in owners:
        figure = figures[owner]
        cells = (
            f"<td class=num>{cost(figure.effective_cost_per_million)}</td>"
            f"<td class=num>{api(figure.api_cost_per_million)}</td>"
            f"<td class=num>{percent(figure.utilization)}</td>"
            f"<td class=num>{percent(figure.breakeven_utilization)}</td>"
            f"<td>{_verdict(figure, _withheld(state, health, owner))}</td>"
            f"<td>{span(figure.seconds)}</td>"
            if figure is not None
            else f"<td colspan=6>{MISSING}</td>"
        )
        rows.append(f"<tr><td>{escape(owner)}</td><td class=num>{amounts(hourly)}</td>{cells}</tr>")
    return (
        f"<p class=note>Over the last {escape(name)}: the longest configured window up to "
        f"{span(PAGE_WINDOW_LIMIT)}. <i>covers</i> is how much of it the history spans.</p>"
        + _scroll(
            "<table><tr><th>model</th><th>cost per hour</th>"
            f"<th>cost per 1M ({escape(name)})</th><th>API-equivalent per 1M</th>"
            "<th>utilization</th><th>break-even utilization</th><th>verdict</th>"
            f"<th>covers</th></tr>{''.join(rows)}</table>"
        )
    )


def _gpu_title(state: NodeState) -> str:
    simulated = any(
        s.collector == SIMULATED_GPU_COLLECTOR for s in state.targets.values() if not s.engine
    )
    return "GPUs (simulated)" if simulated else "GPUs"


def _gpu_rows(state: NodeState) -> str:
    amounts = Money.amounts(state.config.currency)
    owners = state.gpu_owners
    preferred = state.config.nvml.utilization_source
    rows = []
    for status in state.fleet.gpus.values():
        gpu, reading = status.gpu, status.reading
        health = {None: "not read", True: "healthy", False: "<b class=bad>unhealthy</b>"}[
            status.healthy
        ]
        chosen = reading.utilization(preferred) if reading is not None else None
        utilization = f"{percent(chosen[0])} ({chosen[1]})" if chosen else MISSING
        rows.append(
            f"<tr><td>{escape(gpu.label)}</td><td>{escape(gpu.name)}</td>"
            f"<td>{escape(', '.join(owners.get(gpu.key, ())))}</td><td>{health}</td>"
            f"<td class=num>{utilization}</td>"
            + "".join(f"<td class=num>{cell}</td>" for cell in _gpu_readings(reading))
            + f"<td class=num>{amounts(gpu.hourly)}</td></tr>"
        )
    return _scroll(
        "<table><tr><th>gpu</th><th>name</th><th>serves</th><th>health</th>"
        "<th>utilization</th><th>busy time</th><th>memory</th><th>power</th>"
        "<th>energy</th><th>price per hour</th></tr>"
        f"{''.join(rows)}</table>"
    )


def _gpu_readings(reading: GpuReading | None) -> tuple[str, str, str, str]:
    """Busy time, memory used of total, power and energy (since the driver loaded)."""
    if reading is None:
        return (MISSING,) * 4
    busy = percent(reading.busy_utilization) if reading.busy_utilization is not None else MISSING
    used, total = reading.memory_used_bytes, reading.memory_total_bytes
    known = used is not None and total is not None
    memory = f"{used / 2**30:,.1f} / {total / 2**30:,.0f} GiB" if known else MISSING
    power = f"{reading.power_watts:,.0f} W" if reading.power_watts is not None else MISSING
    energy = (
        f"{reading.energy_joules / 3.6e6:,.2f} kWh"
        if reading.energy_joules is not None
        else MISSING
    )
    return busy, memory, power, energy


def _source_rows(state: NodeState) -> str:
    rows = "".join(
        f"<tr><td>{escape(s.collector)}</td><td>{escape(s.target)}</td>"
        f"<td>{'up' if s.up else 'down'}</td><td>{escape(s.last_error)}</td></tr>"
        for s in sorted(state.targets.values(), key=lambda s: s.target)
    )
    return _scroll(
        "<table><tr><th>collector</th><th>target</th><th>state</th><th>last error</th></tr>"
        f"{rows}</table>"
    )


# --- the page -------------------------------------------------------------------------

STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:0 auto;padding:1em;max-width:72em;
color:#1f2937;line-height:1.45}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin:1.6em 0 .5em}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;margin:.5em 0;font-variant-numeric:tabular-nums}
td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4;font-weight:600}td.num{text-align:right;white-space:nowrap}
.bad{color:#b91c1c}.good{color:#047857}.note,.asof{color:#6b7280;font-size:.92em}
.headline{border:1px solid #ddd;border-radius:8px;padding:.6em 1em;background:#fafafa}
.verdict{font-size:1.3em;margin:.2em 0}
.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(8.5em,1fr));gap:.6em;
margin:.8em 0}
.figure{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:.4em .6em}
.figure .label,.figure .note{display:block;color:#6b7280;font-size:.85em}
.figure .value{display:block;font-size:1.35em;font-variant-numeric:tabular-nums}
.figure .note .value{display:inline;font-size:1em}
.charts .grid{display:grid;gap:1em;
grid-template-columns:repeat(auto-fit,minmax(min(100%,26em),1fr))}
.charts figure{margin:0}figcaption{font-weight:600;margin-bottom:.2em}
svg.chart{width:100%;height:auto;display:block}
footer{margin-top:2em;color:#6b7280;font-size:.92em}
@media (max-width:600px){body{padding:.6em}.verdict{font-size:1.1em}td{white-space:nowrap}}
"""

REFRESH_SCRIPT = """
(() => {
  const main = () => document.querySelector("main");
  const status = document.getElementById("refresh");
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const response = await fetch(location.pathname, {cache: "no-store"});
      if (!response.ok) throw new Error("HTTP " + response.status);
      const html = await response.text();
      const next = new DOMParser().parseFromString(html, "text/html").querySelector("main");
      if (next && next.dataset.cycle !== main().dataset.cycle) main().replaceWith(next);
      status.textContent = "";
    } catch (error) {
      status.textContent = "Could not refresh (" + error.message + "); retrying.";
    } finally {
      busy = false;
    }
  }, 1000 * Number(main().dataset.interval));
})();
"""


def render_landing(state: NodeState, health: LoopHealth) -> str:
    window = page_window(state.windows)
    capacity = state.capacity
    samples = sample_history(
        state.history,
        window[1],
        capacity[0] if capacity else None,
        blended_api_cost_per_million(state.history.latest()),
    )
    cycle_wall = _cycle_wall(state, health)
    links = '<a href="/healthz">/healthz</a>'
    if state.config.serve_metrics:
        links = f'<a href="/metrics">/metrics</a> · {links}'
    if state.config.otlp.enabled:
        links += f" · pushed over OTLP to {escape(state.config.otlp.target)}"
    capacity_text = (
        f"{capacity[0]:,.0f} tokens/s ({capacity[1]})" if capacity else "not known yet (learning)"
    )
    interval = state.config.interval
    every = span(interval) if interval >= 1 else f"{interval:g}s"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>llm-cost-exporter</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style></head><body>
<header><h1>llm-cost-exporter</h1></header>
<main data-cycle="{escape(_cycle_key(state, health))}" data-interval="{interval:g}">
{_headline(state, health, window, samples, cycle_wall)}
{_charts(state, window, samples, cycle_wall)}
<h2>Every window</h2>
<p class=note>Capacity: {capacity_text}.</p>
{_window_rows(state, health)}
<h2>Cost by model</h2>
{_model_rows(state, health, window)}
<h2>{_gpu_title(state)}</h2>
{_gpu_rows(state)}
<h2>Sources</h2>
{_source_rows(state)}
</main>
<footer><p>{links} · updates every {every} while open<noscript> (reload to
update)</noscript>. <span id="refresh" role="status"></span></p></footer>
<script>{REFRESH_SCRIPT}</script>
</body></html>
"""
