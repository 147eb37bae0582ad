"""Traffic months for the planner's tests, built hour by hour from a known shape.

``b2b_month`` is the traffic the planner is for: a weekday business peak
around midday, quiet nights and weekends, a chosen peak-to-trough ratio.
The peak is a narrow bump (Gaussian, sigma 1.2 h, centred on 12:30), the way
B2B traffic crowds into a few hours; nights and weekends stay at the trough.
Pure and deterministic.

``python tests/plan_traffic.py --write`` writes the README's example month
as an hourly CSV (``tests/fixtures/plan/b2b-month.csv``).
"""

from __future__ import annotations

import argparse
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

from llm_cost_exporter.accounting.costmodel import ApiPrices, api_equivalent_cost
from llm_cost_exporter.tools.planner.model import Hour, Traffic

OCTOBER = datetime(2026, 10, 1, tzinfo=timezone.utc)
MIX = {"prompt": 0.55, "cached_prompt": 0.15, "generation": 0.30}
PRICES = ApiPrices(input=0.80, cached_input=0.08, output=4.00)
EXAMPLE_CSV = Path(__file__).parent / "fixtures" / "plan" / "b2b-month.csv"


def b2b_level(when: datetime, peak_to_trough: float) -> float:
    """Demand relative to the peak hour (1.0 at 12:00-13:00 on weekdays)."""
    trough = 1.0 / peak_to_trough
    if when.weekday() >= 5:
        return trough
    bump = math.exp(-((when.hour + 0.5 - 12.5) ** 2) / (2 * 1.2**2))
    return trough + (1.0 - trough) * bump


def b2b_hours(
    peak_to_trough: float,
    peak_tokens_per_second: float,
    *,
    start: datetime = OCTOBER,
    days: int = 31,
) -> list[tuple[datetime, dict[str, int]]]:
    """Each hour's start and its whole tokens by kind."""
    out = []
    for index in range(days * 24):
        when = start + timedelta(hours=index)
        total = round(peak_tokens_per_second * 3600 * b2b_level(when, peak_to_trough))
        prompt, cached = round(total * MIX["prompt"]), round(total * MIX["cached_prompt"])
        out.append(
            (
                when,
                {"prompt": prompt, "cached_prompt": cached, "generation": total - prompt - cached},
            )
        )
    return out


def b2b_month(
    peak_to_trough: float,
    peak_tokens_per_second: float,
    *,
    capacity: float,
    replica_cost: float,
    prices: ApiPrices = PRICES,
    days: int = 31,
) -> Traffic:
    """The month as the planner sees it, run on one replica the whole time."""
    hours = tuple(
        Hour(
            start=when,
            tokens=float(sum(kinds.values())),
            api_cost=api_equivalent_cost(kinds, prices),
            replica_cost=replica_cost,
            spend=replica_cost,
            replicas=1.0,
            capacity_tokens=capacity * 3600,
            tokens_by_kind={k: float(v) for k, v in kinds.items()},
        )
        for when, kinds in b2b_hours(peak_to_trough, peak_tokens_per_second, days=days)
    )
    return Traffic(hours, capacity, "one test replica", "USD", "a synthetic B2B month")


def example_csv() -> str:
    """The README's month: 15x peak-to-trough, 4,000 tokens/s at the weekday peak."""
    lines = ["hour,model,prompt_tokens,cached_prompt_tokens,generation_tokens"]
    for when, kinds in b2b_hours(15.0, 4000.0):
        stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(
            f"{stamp},llama-3.1-70b,{kinds['prompt']},{kinds['cached_prompt']},"
            f"{kinds['generation']}"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {EXAMPLE_CSV.name}")
    if parser.parse_args().write:
        EXAMPLE_CSV.parent.mkdir(parents=True, exist_ok=True)
        EXAMPLE_CSV.write_text(example_csv(), encoding="utf-8")
        print(EXAMPLE_CSV)
