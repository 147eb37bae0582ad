"""The container image, built from the repository's Dockerfile and run by real podman.

The image is built once per test session on a local Debian base (debootstrap,
so the tests pull nothing from a registry), then run as a Kubernetes pod would run it: read-only
root filesystem, every capability dropped, no new privileges, host network.
The demo must serve real figures; a daemon on a config file must stop on
SIGTERM with exit code 0 and leave its state file on the volume, from which a
new container resumes its counters.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import minimal_config_dict
from realparts.containers import (
    Container,
    Podman,
    run_container,
    run_listening,
)
from realparts.samples import Samples, eventually, scrape, total, value
from realparts.simulator_process import SimulatorProcess
from realparts.timeouts import scaled

pytestmark = pytest.mark.realparts

UID = 65532
STATE_DIR = "/var/lib/llm-cost-exporter"
CONFIG_DIR = "/etc/llm-cost-exporter"
ADDED_BY_IMAGE_LIMIT = 80 * 10**6
"""Bytes the image may add to its base: the virtualenv alone, no compilers, no caches."""
STALE_BYTECODE = """
import importlib.util, os, sys, llm_cost_exporter.cli
for module in list(sys.modules.values()):
    origin = getattr(getattr(module, "__spec__", None), "origin", None) or ""
    if not origin.startswith("/opt/llm-cost-exporter/") or not origin.endswith(".py"):
        continue
    try:
        with open(importlib.util.cache_from_source(origin), "rb") as cached:
            header = cached.read(16)
    except OSError:
        header = b""
    source = os.stat(origin)
    if header[8:16] != ((int(source.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
                        + (source.st_size & 0xFFFFFFFF).to_bytes(4, "little")):
        print(origin)
"""
"""Prints the modules of the image's virtualenv whose byte-code is missing or stale: on a
read-only root they would be compiled again at every start (and never saved)."""
HARDENED = ["--read-only", "--tmpfs", "/tmp", "--cap-drop=ALL",
            "--security-opt", "no-new-privileges"]  # fmt: skip


def proc_status(container: Container) -> dict[str, str]:
    """The container's first process's /proc status, read from the host side."""
    text = Path(f"/proc/{container.pid()}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


@pytest.fixture
def demo(podman: Podman, exporter_image: str) -> Iterator[tuple[Container, int]]:
    container, port = run_listening(
        podman,
        exporter_image,
        lambda port: (
            [*HARDENED, "--env", f"LLMCOST_HEALTHCHECK_URL=http://127.0.0.1:{port}/healthz"],
            ["--demo", "--web.listen-address", f"127.0.0.1:{port}"],
        ),
    )
    try:
        yield container, port
    finally:
        container.remove()


def test_image_configuration(podman: Podman, base_image: str, exporter_image: str) -> None:
    """What Kubernetes and a container engine read from the image: a numeric non-root
    user, the signal, the health check, the port, the entry point, the state volume and
    the OCI labels; and the runtime stage adds the virtualenv alone."""
    inspected = podman.inspect_image(exporter_image)
    config = inspected["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["llm-cost-exporter"]
    assert config["Cmd"] == ["--config", f"{CONFIG_DIR}/config.yml"]
    assert "9478/tcp" in config["ExposedPorts"]
    assert STATE_DIR in config["Volumes"]
    assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]
    health = inspected["Healthcheck"]["Test"]
    assert health[0] == "CMD" and any("/healthz" in part for part in health)
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "llm-cost-exporter"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.version"] == importlib.metadata.version(
        "llm-cost-exporter"
    )
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.description"]
    added = inspected["Size"] - podman.inspect_image(base_image)["Size"]
    print(f"image {inspected['Size'] / 1e6:.0f} MB, of which {added / 1e6:.0f} MB over its base")
    assert 0 < added < ADDED_BY_IMAGE_LIMIT


def test_demo_runs_hardened_as_non_root(demo: tuple[Container, int]) -> None:
    """`IMAGE --demo` on a read-only root, no capabilities, no new privileges: it
    serves the demo's figures, runs as uid 65532, passes its own health check and
    ends with exit code 0 on `podman stop` (SIGTERM to PID 1)."""
    container, port = demo

    def counted() -> Samples | None:
        samples = scrape(port)
        models = ("llama-3.1-8b", "qwen2.5-7b")
        return (
            samples
            if all(total(samples, "llmcost_tokens_total", model=m) for m in models)
            else None
        )

    samples = eventually(counted, timeout=60, what="the demo's models count tokens")
    assert value(samples, "llmcost_build_info", version=importlib.metadata.version(
        "llm-cost-exporter")) == 1  # fmt: skip
    assert total(samples, "llmcost_tokens_total", kind="generation") > 0

    status = proc_status(container)
    assert status["Uid"].split() == [str(UID)] * 4
    assert status["Gid"].split() == [str(UID)] * 4
    assert status["NoNewPrivs"] == "1"
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0

    written = container.exec("python3", "-c", "open('/opt/llm-cost-exporter/x', 'w')")
    assert written.returncode != 0 and "Read-only file system" in written.stderr
    checked = container.exec("python3", "-c", STALE_BYTECODE)
    assert checked.returncode == 0 and checked.stdout.split() == [], checked.stdout + checked.stderr

    health = container.healthcheck()
    assert health.returncode == 0, health.stdout + health.stderr

    code, took = container.stop(grace=60)
    assert code == 0, container.logs()
    assert took < scaled(30), f"podman stop took {took:.1f}s: SIGTERM was not heeded"
    assert re.search(r"INFO llm-cost-exporter: stopped$", container.logs(), re.MULTILINE)


def test_daemon_saves_its_state_on_the_volume_and_resumes(
    podman: Podman, exporter_image: str, tmp_path: Path
) -> None:
    """The default command on a mounted config file, the state directory a host volume:
    SIGTERM ends it with exit code 0 after saving the state file, and a new container on
    the same volume resumes the counters where the first stopped."""
    state_dir = tmp_path / "state"
    config_dir = tmp_path / "config"
    state_dir.mkdir()
    config_dir.mkdir()
    os.chown(state_dir, UID, UID)

    with SimulatorProcess(tmp_path, "--profile", "steady", "--model", "llama-3.1-8b") as sim:

        def launch(port: int) -> tuple[list[str], list[str]]:
            config = minimal_config_dict(
                web={"listen_address": f"127.0.0.1:{port}"},
                engines=[{"url": sim.engine_url(0)}],
                nvml={"enabled": False},
                collection={"interval": "1s"},
                state_file=f"{STATE_DIR}/state.json",
            )
            (config_dir / "config.yml").write_text(yaml.safe_dump(config))
            volumes = ["--volume", f"{config_dir}:{CONFIG_DIR}:ro",
                       "--volume", f"{state_dir}:{STATE_DIR}"]  # fmt: skip
            return [*HARDENED, *volumes], []

        first, port = run_listening(podman, exporter_image, launch)
        try:
            before = eventually(
                lambda: total(scrape(port), "llmcost_tokens_total", model="llama-3.1-8b"),
                timeout=60,
                what="tokens counted from the simulated engine",
            )
            code, took = first.stop(grace=60)
            logs = first.logs()
        finally:
            first.remove()
        assert code == 0, logs
        assert took < scaled(30), f"podman stop took {took:.1f}s: SIGTERM was not heeded"
        assert re.search(r"INFO llm-cost-exporter: stopped$", logs, re.MULTILINE), logs

        saved_file = state_dir / "state.json"
        assert saved_file.stat().st_uid == UID
        saved = json.loads(saved_file.read_text())
        assert saved["format"] == "llm-cost-exporter state"

        second, port = run_listening(podman, exporter_image, launch)
        try:
            resumed = total(scrape(port), "llmcost_tokens_total", model="llama-3.1-8b")
        finally:
            second.remove()
        assert resumed >= before > 0


def test_without_its_config_file_it_exits_2_naming_it(podman: Podman, exporter_image: str) -> None:
    """The default command reads /etc/llm-cost-exporter/config.yml; with nothing mounted
    there the container stops at once with exit code 2 and one line saying why."""
    container = run_container(podman, exporter_image, [], HARDENED)
    try:
        code = container.wait_exited()
        logs = container.logs()
    finally:
        container.remove()
    assert code == 2, logs
    [line] = logs.splitlines()
    assert line.startswith(f"llm-cost-exporter: configuration error: {CONFIG_DIR}/config.yml: ")
