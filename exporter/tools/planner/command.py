"""``llm-cost-exporter plan``: what would have been cheaper, as a table (and the same HTML).

The traffic comes from Prometheus, read exactly as the monthly review reads
it, or from a CSV file of hourly tokens (or LiteLLM spend logs) for a team
still on an API.

Exit codes: 0 printed; 1 Prometheus could not answer, holds no data for the
period, or the data cannot be planned on (no capacity, unpriced models);
2 bad options or a bad CSV file.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.config import ConfigError
from llm_cost_exporter.tools.planner.advise import PlanError, advise
from llm_cost_exporter.tools.planner.arguments import add_planning_arguments, planning_from
from llm_cost_exporter.tools.planner.model import Advice
from llm_cost_exporter.tools.report.command import (
    EXIT_PROMETHEUS,
    EXIT_USAGE,
    add_period_arguments,
    review_of,
)
from llm_cost_exporter.tools.report.period import parse_period, zone_named
from llm_cost_exporter.tools.report.prometheus_api import PrometheusError

PRICE_KEYS = ("input", "cached_input", "output")
EXIT_CODES_HELP = f"""exit codes:
  0  printed
  {EXIT_PROMETHEUS}  Prometheus could not answer, holds no data for the period, or the data
     cannot be planned on (no capacity, unpriced models)
  {EXIT_USAGE}  bad options, a bad CSV file, or the --html file cannot be written"""


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    add_period_arguments(parser)
    source = parser.add_argument_group(
        "traffic from a file", "for a team still on an API: plan from its own usage"
    )
    source.add_argument(
        "--csv",
        metavar="FILE",
        help="hourly tokens by kind, or LiteLLM spend logs, instead of Prometheus "
        "(needs --capacity, --replica-gpu-price and API prices)",
    )
    source.add_argument(
        "--api-prices",
        metavar="input=P,output=P[,cached_input=P]",
        help="API prices per 1M tokens for --csv (cached_input defaults to input)",
    )
    source.add_argument(
        "--api-catalog",
        metavar="PROVIDER/MODEL",
        help="look the API prices up in the offline genai-prices catalog (USD) for --csv",
    )
    source.add_argument(
        "--currency", default="USD", help="currency of --csv prices and costs (default USD)"
    )
    add_planning_arguments(parser)
    parser.add_argument("--html", metavar="FILE", help="also write the comparison as HTML")


def parse_prices(text: str) -> ApiPrices:
    """``input=3,output=15[,cached_input=0.3]``; ValueError names what is wrong."""
    given: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in PRICE_KEYS:
            raise ValueError(f"--api-prices: expected {', '.join(PRICE_KEYS)}=PRICE, got {part!r}")
        try:
            price = float(value)
        except ValueError:
            raise ValueError(f"--api-prices: {key}: expected a price, got {value!r}") from None
        if not 0 <= price < float("inf"):
            raise ValueError(f"--api-prices: {key}: expected a price of 0 or more")
        given[key] = price
    if "input" not in given or "output" not in given:
        raise ValueError("--api-prices: input and output are required")
    return ApiPrices(
        input=given["input"],
        cached_input=given.get("cached_input", given["input"]),
        output=given["output"],
    )


def _prices(args: argparse.Namespace) -> ApiPrices:
    if bool(args.api_prices) == bool(args.api_catalog):
        raise ValueError("--csv: give the API's prices with either --api-prices or --api-catalog")
    if args.api_prices:
        return parse_prices(args.api_prices)
    from llm_cost_exporter.accounting.price_catalog import resolve_catalog_prices

    try:
        return resolve_catalog_prices([args.api_catalog], args.currency)[args.api_catalog]
    except ConfigError as err:
        raise ValueError(f"--api-catalog: {str(err).removeprefix('api_prices: ')}") from None


def _from_csv(args: argparse.Namespace, now: datetime) -> Advice:
    from llm_cost_exporter.tools.planner.csv_input import traffic_from_file

    planning = planning_from(args)
    if planning.replica is None:
        raise ValueError("--csv: describe the replica with --replica-gpu-price and --capacity")
    prices = _prices(args)
    zone = zone_named(args.timezone)
    start = end = None
    if args.month or args.start or args.end:
        period = parse_period(args.month, args.start, args.end, args.timezone, now)
        start, end = period.start, period.end
    traffic = traffic_from_file(
        Path(args.csv),
        prices=prices,
        replica=planning.replica,
        zone=zone,
        currency=args.currency,
        start=start,
        end=end,
    )
    return advise(traffic, planning.knobs)


def _from_prometheus(args: argparse.Namespace, now: datetime) -> Advice:
    report = review_of(args, now, planning_from(args))
    if report.advice is None:
        raise PlanError(report.advice_missing)
    return report.advice


def run_plan(args: argparse.Namespace) -> int:
    from llm_cost_exporter.tools.planner.table import render_table
    from llm_cost_exporter.tools.report.advice_html import render_advice_page

    now = datetime.now(timezone.utc)
    try:
        advice = _from_csv(args, now) if args.csv else _from_prometheus(args, now)
    except PlanError as err:
        print(f"llm-cost-exporter plan: {err}", file=sys.stderr)
        return EXIT_USAGE if args.csv else EXIT_PROMETHEUS
    except PrometheusError as err:
        print(f"llm-cost-exporter plan: {err}", file=sys.stderr)
        return EXIT_PROMETHEUS
    except ValueError as err:
        print(f"llm-cost-exporter plan: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(render_table(advice), end="")
    if args.html:
        path = Path(args.html)
        try:
            path.write_text(render_advice_page(advice, "What would have been cheaper"), "utf-8")
        except OSError as err:
            print(f"llm-cost-exporter plan: cannot write {path}: {err.strerror}", file=sys.stderr)
            return EXIT_USAGE
        print(path, file=sys.stderr)
    return 0
