"""The systemd unit for bare nodes, checked by systemd's own analyzer.

`systemd-analyze verify` loads the unit as systemd would (every directive parsed,
ExecStart's command present); `systemd-analyze security --offline` scores its
sandboxing. No systemd runs as PID 1 here, so the unit is checked, not started.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm_cost_exporter.cli import build_parser
from llm_cost_exporter.generators.systemd_unit import UNIT_NAME, render_unit, unit_template

ANALYZE = shutil.which("systemd-analyze")
COMMAND = Path(sys.executable).parent / "llm-cost-exporter"
MAX_EXPOSURE = 2.0
"""systemd rates 0-10; up to 2 is "OK", the best of its five levels but one."""

needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze missing: tests/install-test-deps.sh installs systemd"
)


def directives(unit: str) -> dict[str, list[str]]:
    """Each directive's values in file order (repeatable ones keep every value)."""
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def analyze(tmp_path: Path, unit: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / UNIT_NAME
    path.write_text(unit)
    return subprocess.run(
        [str(ANALYZE), *args, str(path)], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def unit() -> str:
    return render_unit(COMMAND)


@needs_analyze
def test_systemd_verifies_the_unit_without_a_warning(tmp_path: Path, unit: str) -> None:
    result = analyze(tmp_path, unit, "verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


@needs_analyze
def test_verify_would_catch_a_mistyped_directive_or_a_missing_command(
    tmp_path: Path, unit: str
) -> None:
    """The check above can fail: systemd reports what it ignores or cannot run."""
    mistyped_unit = unit.replace("ProtectSystem=strict", "ProtectSystem=strikt")
    mistyped = analyze(tmp_path, mistyped_unit, "verify")
    assert "strikt" in mistyped.stdout + mistyped.stderr
    missing = analyze(tmp_path, render_unit(tmp_path / "no-such-command"), "verify")
    assert missing.returncode != 0
    assert "no-such-command" in missing.stdout + missing.stderr


@needs_analyze
def test_sandboxing_scores_ok_in_systemds_own_rating(tmp_path: Path, unit: str) -> None:
    result = analyze(tmp_path, unit, "security", "--offline=yes", "--no-pager")
    assert result.returncode == 0, result.stderr
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", result.stdout)
    assert level is not None, result.stdout[-2000:]
    assert float(level.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_unit_is_hardened_and_keeps_state_where_systemd_gives_it(unit: str) -> None:
    found = directives(unit)
    for key, value in {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
        "KillSignal": "SIGTERM",
        "CapabilityBoundingSet": "",
        "DevicePolicy": "closed",
    }.items():
        assert found.get(key) == [value], key
    (state_dir,) = found["StateDirectory"]
    args = build_parser().parse_args(found["ExecStart"][0].split()[1:])
    assert args.command is None
    assert Path(args.state_file).parent == Path("/var/lib") / state_dir
    assert Path(args.config).parent == Path("/etc") / found["ConfigurationDirectory"][0]


def test_the_command_prints_the_unit_for_this_installation() -> None:
    result = subprocess.run(
        [str(COMMAND), "systemd-unit"], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout == render_unit(COMMAND)
    assert directives(result.stdout)["ExecStart"][0].startswith(f"{COMMAND} --config ")
    assert "@EXEC@" in unit_template()


@pytest.mark.parametrize(
    ("path", "problem"),
    [("bin/llm-cost-exporter", "not an absolute path"), ("/opt/my env/x", "whitespace")],
)
def test_an_unusable_command_path_is_one_line_and_exit_2(path: str, problem: str) -> None:
    result = subprocess.run(
        [str(COMMAND), "systemd-unit", "--exec", path], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert problem in result.stderr and result.stderr.count("\n") == 1
