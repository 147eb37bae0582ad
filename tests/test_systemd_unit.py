"""The systemd unit for bare nodes: checked by systemd's own analyzer, then run.

`systemd-analyze verify` loads the unit as systemd would (every directive parsed,
ExecStart's command present); `systemd-analyze security --offline` scores its
sandboxing. Then a real systemd, PID 1 of a container standing in for a bare node
(the image's virtualenv on the local Debian base, systemd from Debian), starts,
stops and restarts the daemon under the unit's whole sandbox.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import minimal_config_dict
from realparts import free_port
from realparts.containers import Container, Podman, build_image, run_container
from realparts.ports import wait_http_ok
from realparts.samples import eventually, scrape, total

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


# --- under a real systemd ---------------------------------------------------------

NODE_IMAGE = "localhost/llm-cost-exporter-systemd-node:test"
NODE_DOCKERFILE = """\
ARG BASE_IMAGE
ARG EXPORTER_IMAGE
FROM ${EXPORTER_IMAGE} AS exporter
FROM ${BASE_IMAGE}
RUN apt-get update -qq \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
       systemd systemd-sysv >/dev/null \\
    && rm -rf /var/lib/apt/lists/*
COPY --from=exporter /opt/llm-cost-exporter /opt/llm-cost-exporter
COPY llm-cost-exporter.service /etc/systemd/system/llm-cost-exporter.service
RUN systemctl enable llm-cost-exporter.service
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
"""
INSTALLED = Path("/opt/llm-cost-exporter/bin/llm-cost-exporter")
DYNAMIC_USERS = range(61184, 65520)
"""Where systemd picks DynamicUser= ids."""


def systemctl(node: Container, *args: str) -> str:
    return node.exec("systemctl", *args).stdout.strip()


def unit_property(node: Container, name: str) -> str:
    return systemctl(node, "show", "--property", name, "--value", UNIT_NAME)


def journal(node: Container) -> str:
    return node.exec("journalctl", "--unit", UNIT_NAME, "--no-pager", "--output", "cat").stdout


@pytest.fixture(scope="module")
def node_image(podman: Podman, base_image: str, exporter_image: str, tmp_path_factory) -> str:
    """A bare node: the package installed in /opt (as README's bare-node install does),
    Debian's systemd, and the unit as `systemd-unit` prints it."""
    context = tmp_path_factory.mktemp("systemd-node")
    (context / "Dockerfile").write_text(NODE_DOCKERFILE)
    (context / UNIT_NAME).write_text(render_unit(INSTALLED))
    build = build_image(
        podman,
        context,
        NODE_IMAGE,
        {"BASE_IMAGE": base_image, "EXPORTER_IMAGE": exporter_image},
        kept_stages=(),
    )
    return build.tag


@pytest.mark.realparts
def test_systemd_runs_stops_and_resumes_the_daemon_in_the_units_sandbox(
    podman: Podman, node_image: str, tmp_path: Path
) -> None:
    """The unit's sandbox leaves the daemon whole: it serves, runs as a transient user
    without capabilities or new privileges under a system-call filter, saves its state
    on stop and resumes from it; a configuration error is not restarted in a loop.

    systemd's namespaces need a privileged container; the daemon inside is confined by
    the unit alone, which is what this checks."""
    port = free_port()
    config = minimal_config_dict(
        web={"listen_address": f"127.0.0.1:{port}"},
        engines=[f"http://127.0.0.1:{free_port()}/metrics"],
        nvml={"enabled": False},
        collection={"interval": "1s"},
    )
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "config.yml").write_text(yaml.safe_dump(config))
    (config_dir / "config.yml").chmod(0o644)
    node = run_container(
        podman,
        node_image,
        [],
        ["--privileged", "--systemd=always", "--volume", f"{config_dir}:/etc/llm-cost-exporter:ro"],
    )
    try:
        eventually(lambda: systemctl(node, "is-active", UNIT_NAME) == "active", 120, "the unit")
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=60)

        pid = int(unit_property(node, "MainPID"))
        status = dict(
            line.split(":\t", 1)
            for line in node.exec("cat", f"/proc/{pid}/status").stdout.splitlines()
            if ":\t" in line
        )
        uid = int(status["Uid"].split()[0])
        assert uid in DYNAMIC_USERS, status["Uid"]
        assert status["NoNewPrivs"] == "1"
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
        assert status["Seccomp"] == "2"  # the system-call filter

        spent = eventually(lambda: total(scrape(port), "llmcost_cost_total"), 60, "spend accruing")
        node.exec("systemctl", "stop", UNIT_NAME)
        assert unit_property(node, "Result") == "success"
        assert unit_property(node, "ExecMainStatus") == "0"
        state = node.exec("stat", "--format", "%u %s", "/var/lib/llm-cost-exporter/state.json")
        owner, size = map(int, state.stdout.split())
        assert owner == uid and size > 0

        node.exec("systemctl", "start", UNIT_NAME)
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=60)
        assert total(scrape(port), "llmcost_cost_total") >= spent
        log = journal(node)
        assert "stopped" in log and "Traceback" not in log

        (config_dir / "config.yml").write_text(yaml.safe_dump({**config, "currency": "dollars"}))
        node.exec("systemctl", "restart", UNIT_NAME)
        eventually(lambda: unit_property(node, "ActiveState") == "failed", 60, "a failed unit")
        assert unit_property(node, "ExecMainStatus") == "2"
        assert unit_property(node, "NRestarts") == "0"
        assert "configuration error: currency" in journal(node)
    finally:
        node.remove()
