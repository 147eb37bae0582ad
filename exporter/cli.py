"""Command line: the daemon, `check-config`, `simulate`, `rules`, `prices`, `dashboards`,
`chart`, `report`, `plan`, `systemd-unit`, and `--demo`.

Flag names follow Prometheus exporter convention; each has an `LLMCOST_`
environment variable. Precedence: flag, then environment, then the file,
then built-in defaults. Any configuration problem exits 2 with one line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import difflib
import logging
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

import yaml

from llm_cost_exporter import __version__
from llm_cost_exporter.accounting.costmodel import HOURS_PER_MONTH
from llm_cost_exporter.config import (
    DEFAULT_ENGINE_URL,
    DEFAULT_LISTEN_ADDRESS,
    LOG_LEVELS,
    Config,
    ConfigError,
    effective_config_dict,
    money_defaults,
    parse_currency,
    read_config,
)
from llm_cost_exporter.environment import env

EXIT_CONFIG = 2
EXIT_NO_MATCH = 1
NOTHING_TO_RUN = (
    "llm-cost-exporter: nothing to run: no configuration given.\n"
    "Run with --demo (a simulated node, no GPU needed) or --config FILE "
    "(validate it with `llm-cost-exporter check-config FILE`)."
)
DAEMON_EPILOG = (
    "Start with --demo (a simulated node with example prices, no GPU needed) or "
    "--config FILE. exit codes: 0 stopped (SIGTERM, Ctrl-C); 2 a configuration error, "
    "or the address cannot be listened on (one line on standard error)."
)


def _env_flag(name: str) -> bool:
    return (env(name) or "").lower() in ("1", "true", "yes", "on")


def _daemon_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=env("CONFIG"),
        help="YAML file; `check-config FILE` validates it [LLMCOST_CONFIG]",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        metavar="HOST:PORT",
        default=env("WEB_LISTEN_ADDRESS"),
        help=f"address to serve /metrics on (default {DEFAULT_LISTEN_ADDRESS}) "
        "[LLMCOST_WEB_LISTEN_ADDRESS]",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        default=env("WEB_CONFIG_FILE"),
        help="TLS, basic auth and headers, in Prometheus's web configuration format "
        "[LLMCOST_WEB_CONFIG_FILE]",
    )
    parser.add_argument(
        "--vllm.target",
        dest="targets",
        metavar="URL",
        action="append",
        default=None,
        help=f"vLLM /metrics URL; repeat for several engines (default {DEFAULT_ENGINE_URL}) "
        "[LLMCOST_VLLM_TARGETS, comma-separated]",
    )
    parser.add_argument(
        "--collection.interval",
        dest="interval",
        metavar="DURATION",
        default=env("COLLECTION_INTERVAL"),
        help="how often to read the engines (default 5s) [LLMCOST_COLLECTION_INTERVAL]",
    )
    parser.add_argument(
        "--state-file",
        dest="state_file",
        metavar="FILE",
        default=env("STATE_FILE"),
        help="where the counters and learned capacity are kept across restarts "
        "(default: none, counters start at zero) [LLMCOST_STATE_FILE]",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        choices=LOG_LEVELS,
        default=env("LOG_LEVEL"),
        help="(default info) [LLMCOST_LOG_LEVEL]",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        default=_env_flag("DEMO"),
        help="run against a built-in simulated node with example prices [LLMCOST_DEMO]",
    )


def build_parser() -> argparse.ArgumentParser:
    from llm_cost_exporter.tools.planner.command import EXIT_CODES_HELP as PLAN_EXIT_CODES
    from llm_cost_exporter.tools.planner.command import add_plan_arguments
    from llm_cost_exporter.tools.report.command import EXIT_CODES_HELP as REPORT_EXIT_CODES
    from llm_cost_exporter.tools.report.command import add_report_arguments
    from llm_cost_exporter.tools.simulator.arguments import add_simulate_arguments

    parser = argparse.ArgumentParser(
        prog="llm-cost-exporter",
        description="Prometheus exporter for the live cost of self-hosted LLM inference.",
        epilog=DAEMON_EPILOG,
    )
    parser.add_argument("--version", action="version", version=__version__)
    _daemon_arguments(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check-config",
        help="validate a configuration file and print the effective settings",
        epilog="exit codes: 0 valid; 2 not (one line on standard error naming the field)",
    )
    check.add_argument("file", metavar="FILE")
    check.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="also validate this web configuration file (TLS, basic auth, headers) "
        "[LLMCOST_WEB_CONFIG_FILE]",
    )
    simulate = commands.add_parser(
        "simulate",
        help="serve vLLM-compatible /metrics pages driven by traffic profiles",
        epilog="exit codes: 0 stopped (Ctrl-C); 2 a bad option, or the address cannot be "
        "listened on",
    )
    add_simulate_arguments(simulate)
    rules = commands.add_parser(
        "rules", help="render the Prometheus recording and alerting rules with your parameters"
    )
    rules.add_argument(
        "--set",
        dest="rule_overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change a threshold or window (repeatable; `rules --list` names them all)",
    )
    rules_output = rules.add_mutually_exclusive_group(required=True)
    rules_output.add_argument("--output-dir", help="directory to write the two rule files into")
    rules_output.add_argument(
        "--list",
        action="store_true",
        help="print every parameter --set can change, with its default and meaning",
    )
    _add_prices_parser(commands)
    report = commands.add_parser(
        "report",
        help="write the monthly cost review (HTML, CSV, JSON) from Prometheus",
        description="Realized versus projected cost over a period, read from Prometheus.",
        epilog=REPORT_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_report_arguments(report)
    plan = commands.add_parser(
        "plan",
        help="what would have been cheaper: right-sizing, scheduled scaling, hybrid routing",
        description="Every policy costed over the same hours of real traffic, read from "
        "Prometheus (as the monthly review reads it) or from a CSV file of hourly tokens.",
        epilog=PLAN_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_plan_arguments(plan)
    dashboards = commands.add_parser(
        "dashboards", help="render the Grafana dashboards and their per-panel reference"
    )
    dashboards.add_argument(
        "--currency", default="USD", help="currency unit of the money panels (default USD)"
    )
    dashboards.add_argument(
        "--output-dir", required=True, help="directory to write the dashboards into"
    )
    chart = commands.add_parser(
        "chart",
        help="write the Helm chart's generated files: its PrometheusRule template "
        "(the rules of `rules`, parameters from values) and its dashboards",
    )
    chart.add_argument(
        "--output-dir", required=True, help="the chart's directory (helm/llm-cost-exporter)"
    )
    unit = commands.add_parser(
        "systemd-unit",
        help="print the hardened systemd unit, ExecStart pointing at this installation",
    )
    unit.add_argument(
        "--exec",
        dest="exec_path",
        metavar="PATH",
        default=None,
        help="absolute path of the llm-cost-exporter command "
        "(default: the one installed beside this Python)",
    )
    return parser


def _add_prices_parser(commands: argparse._SubParsersAction) -> None:
    """`prices search TEXT`: the catalog names api_prices takes, found by part of a name."""
    prices = commands.add_parser(
        "prices", help="find a model's API prices in the offline catalog, for api_prices"
    )
    actions = prices.add_subparsers(dest="prices_command", metavar="COMMAND", required=True)
    search = actions.add_parser(
        "search",
        help="list the catalog models whose name contains TEXT, with their prices",
        description="Catalog models whose name contains TEXT (case, -, ., _ and spaces "
        "aside), with their prices per 1M tokens and the name api_prices takes.",
        epilog="exit codes: 0 listed; 1 no model matches; 2 TEXT has no letter or digit",
    )
    search.add_argument("text", metavar="TEXT", help="part of the model's name, e.g. haiku")


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    targets = args.targets
    if targets is None and env("VLLM_TARGETS"):
        targets = [t.strip() for t in env("VLLM_TARGETS").split(",") if t.strip()]
    return {
        "web.listen_address": args.listen_address,
        "engines": [{"url": t} for t in targets] if targets else None,
        "collection.interval": args.interval,
        "state_file": args.state_file,
        "log_level": args.log_level,
    }


def load_config(path: str | None, overrides: dict[str, object]) -> Config:
    return read_config(path, overrides)[0]


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _check_config(path: str, web_config_file: str | None) -> int:
    from llm_cost_exporter.daemon.assembly import resolve_prices

    config, given = read_config(path, {})
    model_prices, default = resolve_prices(config)
    gpu_lines = _gpus_to_bill(config)
    web_line = _check_web_config(web_config_file)
    print(f"# {path}: valid.")
    print(web_line)
    print("\n".join(gpu_lines))
    if config.kubernetes.discovery.enabled:
        print(_discovery_line(config))
    print(f"# A month is {HOURS_PER_MONTH:g} h: cost.fixed_per_month and the amortized")
    print("# purchase (cost.owned.amortization_months) are spread over it.")
    print("# Defaults in effect that change what is billed:")
    print("\n".join(f"#   {line}" for line in money_defaults(given) or ["none"]))
    print("# Effective configuration (secrets given inline print as <secret>):")
    effective = effective_config_dict(config, model_prices, default)
    print(yaml.safe_dump(effective, sort_keys=False), end="")
    return 0


def _discovery_line(config: Config) -> str:
    """Where the engines come from when pods are discovered."""
    from llm_cost_exporter.discovery.connection import NODE_NAME_VARIABLE, node_name
    from llm_cost_exporter.discovery.pods import SCRAPE

    discovery = config.kubernetes.discovery
    node = node_name(discovery) or (
        f"${NODE_NAME_VARIABLE} (unset here; the daemon needs it, or "
        "kubernetes.discovery.node_name)"
    )
    chosen = (
        f"labels {discovery.label_selector}"
        if discovery.label_selector
        else f'annotated {SCRAPE}: "true"'
    )
    static = f", besides the {len(config.engines)} in engines" if config.engines else ""
    return f"# Engines: discovered from the pods on node {node} ({chosen}){static}."


def _check_web_config(path: str | None) -> str:
    """What the daemon would serve with this web configuration (certificates loaded)."""
    if path is None:
        return "# Web: plain HTTP, no authentication (no --web.config.file)."
    from llm_cost_exporter.daemon.web_reload import LiveWebConfig

    web = LiveWebConfig(Path(path))
    users = len(web.config.users)
    return (
        f"# Web: {path}: valid; {'TLS' if web.tls_enabled else 'plain HTTP'}, "
        f"{f'basic auth for {users} user(s)' if users else 'no authentication'}."
    )


def _gpus_to_bill(config: Config) -> list[str]:
    """What the daemon would bill on this machine, each GPU with its matched price key.

    Refuses, as the daemon's start does, GPU claims and a utilization source that
    the GPUs NVML lists contradict.
    """
    from llm_cost_exporter.collectors.nvml import NvmlCollector
    from llm_cost_exporter.daemon.gpu_checks import billed_gpus, check_against_nvml, one_line

    nvml = NvmlCollector(config.timeout) if config.nvml.enabled else None
    unavailable = nvml.start() if nvml is not None else "disabled (nvml.enabled: false)"
    try:
        inventory = billed_gpus(config, nvml)
        findings = check_against_nvml(config, nvml, inventory)
    finally:
        if nvml is not None:
            nvml.close()
    if findings.problems:
        raise ConfigError(one_line(findings.problems))
    lines = [f"# Not checked: {note}" for note in findings.unchecked]
    lines.append(f"# NVML: {unavailable or 'available'}; GPUs to bill:")
    for gpu in inventory:
        lines.append(
            f"#   gpu {gpu.label} {gpu.uuid or '(no UUID)'} {gpu.name!r} -> price key "
            f"{gpu.price_key!r} at {gpu.hourly:.4f} {config.currency}/h ({gpu.source})"
        )
    if not inventory:
        lines.append("#   none: the node's cost is cost.node_extra_per_hour alone")
    return lines


def _write_dashboards(currency: str, directory: Path) -> int:
    from llm_cost_exporter.generators.dashboards import render_files

    currency = parse_currency(currency, "--currency")
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in render_files(currency).items():
        (directory / name).write_text(text)
        print(directory / name)
    return 0


def _write_chart(directory: Path) -> int:
    from llm_cost_exporter.generators.helm_chart import render

    for name, text in render().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path)
    return 0


def _write_rules(overrides: list[str], directory: Path) -> int:
    from llm_cost_exporter.generators.rules import params_with, parse_overrides, render

    try:
        given = parse_overrides(overrides)
        _check_rule_names(given)
        params = params_with(given)
    except ValueError as error:
        raise ConfigError(f"--set {error}") from None
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in render(params).items():
        (directory / name).write_text(text)
        print(directory / name)
    return 0


def _check_rule_names(names: Iterable[str]) -> None:
    """ValueError for the first unknown name, with the likeliest meant and where to look."""
    from llm_cost_exporter.generators.rules import RuleParams

    known = [item.name for item in dataclasses.fields(RuleParams)]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            guess = f"did you mean {close[0]}? " if close else ""
            raise ValueError(
                f"{name}: unknown parameter; {guess}"
                "`llm-cost-exporter rules --list` prints them all"
            )


def _list_rule_params(overrides: list[str]) -> int:
    """Every rule parameter as `--set` takes it, with its default and meaning."""
    from llm_cost_exporter.generators.rules import HELP, RuleParams

    if overrides:
        raise SystemExit("rules: --list prints the defaults; drop --set")
    pairs = [(f"{f.name}={f.default}", f.metadata[HELP]) for f in dataclasses.fields(RuleParams)]
    # The runbook URL would push every meaning far right: long pairs overflow instead.
    width = max(len(pair) for pair, _ in pairs if len(pair) <= 40)
    print("# --set NAME=VALUE changes a parameter; each with its default:")
    for pair, meaning in pairs:
        print(f"{pair:<{width}}  {meaning}")
    return 0


def _search_prices(text: str) -> int:
    """The catalog models matching `text` as a table, or exit 1 with close names."""
    from importlib.metadata import version

    from llm_cost_exporter.accounting.price_catalog import (
        CATALOG_CURRENCY,
        close_refs,
        search_catalog,
    )
    from llm_cost_exporter.tools.planner.table import Column, grid

    try:
        found = search_catalog(text)
    except ValueError as error:
        raise SystemExit(f"prices search {error}") from None
    if not found:
        close = close_refs(text)
        similar = f"close names: {', '.join(close)}; " if close else ""
        print(
            f"llm-cost-exporter prices search: no catalog model matches {text!r}", file=sys.stderr
        )
        print(f"{similar}try a shorter part of the name, e.g. haiku or gpt-4o", file=sys.stderr)
        return EXIT_NO_MATCH
    columns = [
        Column(("catalog (api_prices)",), right=False),
        Column(("input",)),
        Column(("cached input",)),
        Column(("output",)),
        Column(("model",), right=False, wrap=True),
    ]
    rows = [[m.ref, *map(_exact, dataclasses.astuple(m.prices)), m.name] for m in found]
    print(grid(columns, rows))
    print(
        f"# {CATALOG_CURRENCY} per 1M tokens, as the exporter looks them up "
        f"(genai-prices {version('genai-prices')}). In the configuration:\n"
        f"#   api_prices: {{default: {{catalog: {found[0].ref}}}}}"
    )
    return 0


def _exact(price: float) -> str:
    """A price in plain decimal notation with every digit the float holds."""
    from decimal import Decimal

    return format(Decimal(repr(price)).normalize(), "f")


def _print_systemd_unit(exec_path: str | None) -> int:
    from llm_cost_exporter.generators.systemd_unit import installed_command, render_unit

    command = Path(exec_path) if exec_path else installed_command()
    if command is None:
        raise ConfigError("--exec: llm-cost-exporter is not on PATH; give its absolute path")
    try:
        print(render_unit(command), end="")
    except ValueError as error:
        raise ConfigError(f"--exec: {error}") from None
    return 0


class StartInterrupted(KeyboardInterrupt):
    """A SIGTERM that arrived before the event loop took SIGTERM over.

    Not a plain KeyboardInterrupt: CPython run with `-m` exits by SIGINT after a plain
    one raised inside exec() or eval(), even once caught, and modules run both while
    they import (dataclasses, namedtuples).
    """


def interrupt_start(signum: int, frame: FrameType | None) -> NoReturn:
    raise StartInterrupted


def _run_daemon(args: argparse.Namespace) -> int:
    # Until the event loop takes SIGTERM over, it interrupts the start like Ctrl-C; as
    # a container's PID 1 it would otherwise be ignored until the stop's grace ran out.
    # Set inside the suppress, so a SIGTERM right after it is one too.
    with contextlib.suppress(KeyboardInterrupt):
        signal.signal(signal.SIGTERM, interrupt_start)
        return _start_daemon(args)
    return 0


def _start_daemon(args: argparse.Namespace) -> int:
    from llm_cost_exporter.daemon.assembly import resolve_prices, serve
    from llm_cost_exporter.daemon.web_reload import LiveWebConfig

    if args.demo:
        from llm_cost_exporter.daemon.demo import run_demo

        if args.config:
            raise ConfigError("--demo: runs its own built-in node; do not combine with --config")
        if args.web_config_file:
            raise ConfigError("--demo: serves plain HTTP; do not combine with --web.config.file")
        _setup_logging(args.log_level or "info")
        return run_demo(args.listen_address)
    overrides = _overrides(args)
    try:
        config = load_config(args.config, overrides)
    except ConfigError:
        if args.config or any(value is not None for value in overrides.values()):
            raise
        print(NOTHING_TO_RUN, file=sys.stderr)
        return EXIT_CONFIG
    web_config = LiveWebConfig(Path(args.web_config_file) if args.web_config_file else None)
    _setup_logging(config.log_level)
    model_prices, default = resolve_prices(config)
    asyncio.run(serve(config, model_prices, default, web_config))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(args.file, args.web_config_file)
        if args.command == "dashboards":
            return _write_dashboards(args.currency, Path(args.output_dir))
        if args.command == "chart":
            return _write_chart(Path(args.output_dir))
        if args.command == "rules" and args.list:
            return _list_rule_params(args.rule_overrides)
        if args.command == "rules":
            return _write_rules(args.rule_overrides, Path(args.output_dir))
        if args.command == "prices":
            return _search_prices(args.text)
        if args.command == "systemd-unit":
            return _print_systemd_unit(args.exec_path)
        if args.command == "report":
            from llm_cost_exporter.tools.report.command import run_report

            return run_report(args)
        if args.command == "plan":
            from llm_cost_exporter.tools.planner.command import run_plan

            return run_plan(args)
        if args.command == "simulate":
            from llm_cost_exporter.tools.simulator.server import run_simulate

            return run_simulate(args)
        return _run_daemon(args)
    except ConfigError as error:
        print(f"llm-cost-exporter: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except SystemExit as error:
        if isinstance(error.code, str):
            print(f"llm-cost-exporter: {error.code}", file=sys.stderr)
            return EXIT_CONFIG
        raise


if __name__ == "__main__":
    sys.exit(main())
