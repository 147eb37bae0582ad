"""``llm-cost-exporter report``: write the monthly review as HTML, CSV and JSON.

Exit codes: 0 written; 1 Prometheus could not answer, or holds no data for
the period; 2 bad options; 3 written, but the data covers less of the period
than ``--min-coverage`` (the report states what is missing).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from llm_cost_exporter.environment import env
from llm_cost_exporter.tools.report.build import Planning, build_report
from llm_cost_exporter.tools.report.model import Report
from llm_cost_exporter.tools.report.period import Period, PeriodError, parse_period
from llm_cost_exporter.tools.report.prometheus_api import (
    Credentials,
    PrometheusClient,
    PrometheusError,
)
from llm_cost_exporter.tools.report.selection import Selection, SelectionError
from llm_cost_exporter.tools.report.units import display

EXIT_PROMETHEUS = 1
EXIT_USAGE = 2
EXIT_COVERAGE = 3
EXIT_CODES_HELP = f"""exit codes:
  0  written
  {EXIT_PROMETHEUS}  Prometheus could not answer, or holds no cost data for the selection and
     period (or, with --source rules, no recording rules)
  {EXIT_USAGE}  bad options, or the output directory cannot be written
  {EXIT_COVERAGE}  written, but the data covers less of the period than --min-coverage"""


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    from llm_cost_exporter.tools.planner.arguments import add_planning_arguments

    add_period_arguments(parser)
    parser.add_argument(
        "--min-coverage",
        type=float,
        default=0.9,
        metavar="FRACTION",
        help="exit 3 when data covers less than this share of node-hours (default 0.9)",
    )
    parser.add_argument(
        "--output-dir", default=".", metavar="DIR", help="where to write the report (default .)"
    )
    add_planning_arguments(parser)


def add_period_arguments(parser: argparse.ArgumentParser) -> None:
    """Where to read from and which period: shared by ``report`` and ``plan``."""
    parser.add_argument(
        "--prometheus.url",
        dest="url",
        default=env("PROMETHEUS_URL") or "http://localhost:9090",
        help="Prometheus (or compatible) base URL [LLMCOST_PROMETHEUS_URL] "
        "(default http://localhost:9090)",
    )
    parser.add_argument(
        "--prometheus.bearer-token-file",
        dest="token_file",
        metavar="FILE",
        help="file holding a bearer token [or LLMCOST_PROMETHEUS_BEARER_TOKEN]",
    )
    parser.add_argument(
        "--prometheus.basic-auth-user", dest="basic_user", metavar="USER", help="basic auth user"
    )
    parser.add_argument(
        "--prometheus.basic-auth-password-file",
        dest="password_file",
        metavar="FILE",
        help="file holding the basic auth password [or LLMCOST_PROMETHEUS_PASSWORD]",
    )
    parser.add_argument(
        "--prometheus.header",
        dest="headers",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra request header, e.g. X-Scope-OrgID=team-a (repeatable)",
    )
    parser.add_argument(
        "--prometheus.timeout",
        dest="timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="timeout of each query (default 120)",
    )
    parser.add_argument(
        "--match",
        dest="matchers",
        action="append",
        default=[],
        metavar="MATCHER",
        help='select targets or models, e.g. --match cluster="prod" --match model=~"llama.*" '
        "(repeatable; all must hold)",
    )
    parser.add_argument("--month", metavar="YYYY-MM", help="calendar month (default: the last)")
    parser.add_argument("--start", metavar="TIME", help="start of a custom period, e.g. 2026-10-01")
    parser.add_argument("--end", metavar="TIME", help="end of a custom period (exclusive)")
    parser.add_argument(
        "--timezone",
        default="UTC",
        help="zone for months, days and hours of the week, e.g. Europe/Berlin (default UTC)",
    )
    parser.add_argument(
        "--source",
        choices=("auto", "rules", "raw"),
        default="auto",
        help="raw counters (clock hours) or the hourly recording rules; default: raw "
        "while Prometheus holds the period's raw samples, else rules",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on standard error")


def _read_secret(path: str | None, env_name: str, option: str) -> str | None:
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as err:
            raise SelectionError(f"{option} {path}: {err.strerror}") from None
    return env(env_name)


def credentials_from(args: argparse.Namespace) -> Credentials:
    token = _read_secret(
        args.token_file, "PROMETHEUS_BEARER_TOKEN", "--prometheus.bearer-token-file"
    )
    password = _read_secret(
        args.password_file, "PROMETHEUS_PASSWORD", "--prometheus.basic-auth-password-file"
    )
    if token and args.basic_user:
        raise SelectionError("use either a bearer token or basic auth, not both")
    headers = []
    for text in args.headers:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise SelectionError(f"--prometheus.header {text!r}: expected NAME=VALUE")
        headers.append((name.strip(), value.strip()))
    basic = (args.basic_user, password or "") if args.basic_user else None
    return Credentials(token, basic, tuple(headers))


class Progress:
    """One updating line on a terminal; a line per day otherwise (logs stay readable)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last_day = ""

    def __call__(self, done: int, total: int, what: str) -> None:
        if self.quiet:
            return
        day = what.split(" ", 1)[0]
        text = f"querying Prometheus: {done}/{total} ({what})"
        if self.tty:
            end = "\n" if done == total else ""
            print(f"\r{text:<72}", end=end, file=sys.stderr, flush=True)
        elif day != self.last_day or done == total:
            print(text, file=sys.stderr, flush=True)
        self.last_day = day


def prometheus_period(
    args: argparse.Namespace, now: datetime
) -> tuple[Period, Selection, PrometheusClient]:
    """The period, selection and client the options name; SelectionError says which is bad."""
    if args.timeout <= 0:
        raise SelectionError("--prometheus.timeout: expected a positive number of seconds")
    try:
        period = parse_period(args.month, args.start, args.end, args.timezone, now)
        selection = Selection.parse(args.matchers)
        client = PrometheusClient(args.url, credentials_from(args), args.timeout)
    except (PeriodError, PrometheusError) as err:
        raise SelectionError(str(err)) from None
    return period, selection, client


def review_of(args: argparse.Namespace, now: datetime, planning: Planning) -> Report:
    """The review the options ask for, read from Prometheus with progress on standard error.

    Options are checked first (``prometheus_period``): a bad one raises
    SelectionError, an unanswering Prometheus PrometheusError.
    """
    period, selection, client = prometheus_period(args, now)
    return build_report(
        client,
        selection,
        period,
        source=args.source,
        now=now,
        progress=Progress(args.quiet),
        planning=planning,
    )


def run_report(args: argparse.Namespace) -> int:
    from llm_cost_exporter.tools.planner.arguments import planning_from
    from llm_cost_exporter.tools.report.html import render_html
    from llm_cost_exporter.tools.report.tabular import render_csv, render_json

    now = datetime.now(timezone.utc)
    try:
        if not 0.0 <= args.min_coverage <= 1.0:
            raise SelectionError("--min-coverage: expected a fraction between 0 and 1")
        period = prometheus_period(args, now)[0]
        planning = planning_from(args)
    except ValueError as err:  # SelectionError, and a bad planning knob
        print(f"llm-cost-exporter report: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = review_of(args, now, planning)
    except PrometheusError as err:
        print(f"llm-cost-exporter report: {err}", file=sys.stderr)
        return EXIT_PROMETHEUS
    directory = Path(args.output_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        stem = directory / f"llmcost-review-{_slug(period, bool(args.start))}"
        for suffix, text in (
            (".html", render_html(report)),
            (".csv", render_csv(report)),
            (".json", render_json(report)),
        ):
            path = stem.with_suffix(suffix)
            path.write_text(text, encoding="utf-8")
            print(path)
    except OSError as err:
        print(
            f"llm-cost-exporter report: cannot write to {directory}: {err.strerror}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    coverage = report.coverage
    if coverage.gaps or coverage.ratio < 1.0:
        print(
            f"llm-cost-exporter report: warning: data covers {display(coverage.ratio, 'ratio')} "
            f"of node-hours ({display(coverage.missing_node_hours, 'hours')} h missing in "
            f"{len(coverage.gaps)} gaps); totals cover observed hours only",
            file=sys.stderr,
        )
    if coverage.ratio < args.min_coverage:
        print(
            f"llm-cost-exporter report: coverage {display(coverage.ratio, 'ratio')} is below "
            f"--min-coverage {display(args.min_coverage, 'ratio')}",
            file=sys.stderr,
        )
        return EXIT_COVERAGE
    return 0


def _slug(period: Period, custom: bool) -> str:
    if custom:
        return f"{period.start:%Y-%m-%dT%H%M}_{period.end:%Y-%m-%dT%H%M}"
    return f"{period.start:%Y-%m}" + ("-to-date" if period.to_date else "")
