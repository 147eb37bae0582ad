"""The command line tells a newcomer what to do: how to start, which rule parameters
exist, which catalog name a model has, what the exit codes and defaults are.

Every command runs as a real `python -m llm_cost_exporter` process, with no
`LLMCOST_` variable inherited unless a test sets one.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import yaml
from conftest import minimal_config_dict
from realparts.ports import free_port
from realparts.timeouts import scaled

from llm_cost_exporter.config import DEFAULT_ENGINE_URL, DEFAULT_LISTEN_ADDRESS, config_from_mapping
from llm_cost_exporter.generators.rules import HELP, RuleParams, render
from llm_cost_exporter.tools.report.command import EXIT_COVERAGE, EXIT_PROMETHEUS, EXIT_USAGE
from llm_cost_exporter.tools.simulator.arguments import add_simulate_arguments

ROOT = Path(__file__).parent.parent


def run_cli(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLMCOST_")}
    return subprocess.run(
        [sys.executable, "-m", "llm_cost_exporter", *args],
        capture_output=True,
        text=True,
        timeout=scaled(60),
        env={**clean, **variables},
    )


def flat(text: str) -> str:
    """Help text with argparse's line wrapping undone."""
    return " ".join(text.split())


def write_config(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- starting --------------------------------------------------------------------


def test_a_bare_start_names_the_two_ways_to_start() -> None:
    done = run_cli()
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    assert "nothing to run" in lines[0]
    assert "--demo" in lines[1] and "--config FILE" in lines[1] and "check-config" in lines[1]
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_an_incomplete_configuration_still_names_what_is_missing(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"collection": {"interval": "10s"}})
    for done in (run_cli("--config", str(path)), run_cli(LLMCOST_CONFIG=str(path))):
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1, done.stderr
        assert "cost: missing" in done.stderr and "nothing to run" not in done.stderr


def test_settings_from_the_environment_alone_are_a_configuration() -> None:
    done = run_cli(LLMCOST_VLLM_TARGETS="http://127.0.0.1:8000/metrics")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "cost: missing" in done.stderr


def test_the_daemon_help_shows_its_defaults_and_how_to_start() -> None:
    defaults = config_from_mapping(minimal_config_dict())
    text = flat(run_cli("--help").stdout)
    assert f"default {DEFAULT_LISTEN_ADDRESS}" in text
    assert f"default {DEFAULT_ENGINE_URL}" in text
    assert f"default {defaults.interval:g}s" in text
    assert f"default {defaults.log_level}" in text
    assert "--demo" in text and "exit codes:" in text


# --- rules --list ----------------------------------------------------------------


def listed_parameters() -> dict[str, tuple[str, str]]:
    done = run_cli("rules", "--list")
    assert done.returncode == 0, done.stderr
    listed = {}
    for line in done.stdout.splitlines():
        if line.startswith("#"):
            continue
        pair, meaning = line.split("  ", 1)
        name, default = pair.split("=", 1)
        listed[name] = (default, meaning.strip())
    return listed


def test_every_rule_parameter_has_a_meaning() -> None:
    for item in dataclasses.fields(RuleParams):
        meaning = item.metadata.get(HELP)
        assert isinstance(meaning, str) and len(meaning.split()) >= 3, item.name


def test_rules_list_prints_every_parameter_with_its_default_and_meaning() -> None:
    expected = {
        item.name: (str(item.default), item.metadata[HELP])
        for item in dataclasses.fields(RuleParams)
    }
    assert listed_parameters() == expected


def test_the_listed_defaults_render_the_default_rules(tmp_path: Path) -> None:
    sets = [f"--set={name}={default}" for name, (default, _) in listed_parameters().items()]
    done = run_cli("rules", "--output-dir", str(tmp_path), *sets)
    assert done.returncode == 0, done.stderr
    for name, text in render(RuleParams()).items():
        assert (tmp_path / name).read_text() == text


def test_an_unknown_rule_parameter_points_to_the_list(tmp_path: Path) -> None:
    done = run_cli("rules", "--output-dir", str(tmp_path), "--set", "stale_fro=1m")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "rules --list" in done.stderr and "stale_for" in done.stderr
    assert not list(tmp_path.iterdir())


# --- prices search ---------------------------------------------------------------


def searched(text: str) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    """`prices search TEXT`'s rows: catalog name to its input, cached input, output price."""
    done = run_cli("prices", "search", text)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    rows = {}
    for line in lines[rule + 1 :]:
        if line.startswith(("#", " ")):
            continue
        ref, prompt, cached, output, _ = line.split(None, 4)
        rows[ref] = (Decimal(prompt), Decimal(cached), Decimal(output))
    return rows


def catalog_prices(ref: str) -> tuple[Decimal, Decimal, Decimal] | None:
    """The catalog's own figures for `ref` (None where they are not plain numbers)."""
    from genai_prices.data_snapshot import get_snapshot

    provider, model = ref.split("/", 1)
    found = get_snapshot().find_provider_model(model, None, provider, None)[1]
    prices = found.get_prices(datetime.now(timezone.utc))
    figures = (prices.input_mtok, prices.cache_read_mtok or prices.input_mtok, prices.output_mtok)
    return figures if all(isinstance(f, Decimal) for f in figures) else None


def test_prices_search_lists_the_catalogs_haiku_models_with_its_prices() -> None:
    from genai_prices.data_snapshot import get_snapshot

    rows = searched("haiku")
    anthropic = next(p for p in get_snapshot().providers if p.id == "anthropic")
    haikus = {f"anthropic/{m.id}" for m in anthropic.models if "haiku" in m.id}
    assert haikus and haikus <= set(rows)
    assert all("haiku" in ref.lower() for ref in rows if ref.startswith("anthropic/"))
    compared = 0
    for ref, printed in rows.items():
        expected = catalog_prices(ref)
        if expected is not None:
            assert printed == expected, ref
            compared += 1
    assert compared >= len(haikus)


def test_a_listed_name_is_what_api_prices_takes(tmp_path: Path) -> None:
    ref, printed = next(iter(searched("haiku").items()))
    path = write_config(tmp_path, minimal_config_dict(api_prices={"default": {"catalog": ref}}))
    done = run_cli("check-config", str(path))
    assert done.returncode == 0, done.stderr
    price = yaml.safe_load(done.stdout)["api_prices"]["default"]
    resolved = tuple(Decimal(repr(price[k])) for k in ("input", "cached_input", "output"))
    assert resolved == printed


def test_prices_search_ignores_case_dashes_dots_and_spaces() -> None:
    def folded(text: str) -> str:
        return re.sub(r"[-._ ]", "", text.lower())

    everything = searched("haiku")
    wanted = {ref for ref in everything if "claude35haiku" in folded(ref)}
    assert wanted and set(searched("Claude 3.5 Haiku")) >= wanted


def test_prices_search_without_a_match_exits_1_with_a_hint() -> None:
    done = run_cli("prices", "search", "zzzq-no-such-model")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "no catalog model matches" in done.stderr and "try" in done.stderr


def test_an_unknown_catalog_model_suggests_prices_search(tmp_path: Path) -> None:
    data = minimal_config_dict(api_prices={"default": {"catalog": "anthropic/claude-haiku-9"}})
    done = run_cli("check-config", str(write_config(tmp_path, data)))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "prices search" in done.stderr
    close = re.search(r"close names: ([^;]+);", done.stderr)
    assert close, done.stderr
    suggested = close.group(1).split(", ")
    assert set(suggested) <= set(searched("haiku"))


# --- help: exit codes and defaults -------------------------------------------------


def exit_codes(command: str) -> dict[int, str]:
    """The `exit codes:` section of a command's --help: code to its words."""
    text = run_cli(command, "--help").stdout
    section = text.split("exit codes:\n", 1)[1]
    codes: dict[int, str] = {}
    for line in section.splitlines():
        match = re.match(r"\s+(\d)\s+(.*)", line)
        if match:
            codes[int(match.group(1))] = match.group(2)
        elif codes and line.strip():
            codes[list(codes)[-1]] += " " + line.strip()
    return codes


def test_report_help_lists_its_exit_codes(tmp_path: Path) -> None:
    codes = exit_codes("report")
    assert set(codes) == {0, EXIT_PROMETHEUS, EXIT_USAGE, EXIT_COVERAGE}
    assert "--min-coverage" in codes[EXIT_COVERAGE]
    bad = run_cli("report", "--min-coverage", "5", "--output-dir", str(tmp_path))
    assert "bad options" in codes[bad.returncode]
    url = f"http://127.0.0.1:{free_port()}"
    down = run_cli("report", "--prometheus.url", url, "--output-dir", str(tmp_path), "--quiet")
    assert "Prometheus could not answer" in codes[down.returncode], down.stderr


def test_plan_help_lists_its_exit_codes() -> None:
    codes = exit_codes("plan")
    assert set(codes) == {0, 1, 2}
    bad = run_cli("plan", "--ceiling", "5")
    assert "bad options" in codes[bad.returncode], bad.stderr
    url = f"http://127.0.0.1:{free_port()}"
    down = run_cli("plan", "--prometheus.url", url, "--quiet")
    assert "Prometheus could not answer" in codes[down.returncode], down.stderr


def test_simulate_help_shows_every_default() -> None:
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    defaults = {k: v for k, v in vars(parser.parse_args([])).items() if v not in (None, False)}
    text = flat(run_cli("simulate", "--help").stdout)
    for name, default in defaults.items():
        value = f"{default:g}" if isinstance(default, float) else str(default)
        assert f"default {value}" in text, name
    assert len(defaults) >= 6
    assert "exit codes:" in text
