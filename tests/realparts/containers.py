"""Real podman for the container image tests: build the image, run it, stop it, inspect it.

Everything podman reads comes from files written here (CONTAINERS_CONF,
CONTAINERS_STORAGE_CONF, CONTAINERS_REGISTRIES_CONF), never from the host's
/etc/containers: runc with cgroupfs, ulimits within the host's hard limits
(podman's own defaults are higher than a container host may grant), host
network, overlay storage in a cache directory that outlives the test run, and
no registry at all, so nothing is ever pulled. The base image is made locally
with debootstrap, once per recipe, and builds reuse their layers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .binary_server import locate_binary
from .ports import free_port, wait_http_ok
from .timeouts import scaled

BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_TRIMMED = ("usr/share/man", "usr/share/info", "usr/share/locale", "var/lib/apt/lists")
"""Removed from the debootstrapped tree: documentation and package lists, as slim images do."""
BASE_RECIPE = " ".join(
    ["debootstrap --variant=minbase", BASE_SUITE, *BASE_PACKAGES, "trimmed:", *BASE_TRIMMED]
)
"""What makes the base; the cache is keyed by it."""
BASE_IMAGE = f"localhost/llm-cost-exporter-base:{BASE_SUITE}"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "LLMCOST_TEST_DEBIAN_MIRROR"
PACKAGES = "podman runc debootstrap"
"""The Debian packages this module needs (tests/install-test-deps.sh installs them)."""

SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
_names = itertools.count()
_PORT_RETRIES = 3


class PodmanError(RuntimeError):
    """A podman command failed; the message carries its output."""


def recipe_key() -> str:
    """Short digest of the base recipe: a changed recipe gets a fresh cache."""
    return hashlib.sha256(BASE_RECIPE.encode()).hexdigest()[:12]


def cache_dir() -> Path:
    """Where images live between test runs, keyed by the base recipe."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "llm-cost-exporter-tests" / "containers" / recipe_key()


def run_root(storage: Path) -> Path:
    """Where podman keeps run-time state (its tmp_dir, the storage's runroot) for
    `storage`: under /run as for the system's podman, which a reboot empties."""
    digest = hashlib.sha256(str(storage).encode()).hexdigest()[:12]
    parent = Path("/run") if os.access("/run", os.W_OK) else Path(tempfile.gettempdir())
    return parent / "llm-cost-exporter-tests" / digest


def _ulimits() -> list[str]:
    """`default_ulimits` no higher than this host's hard limits, which a container may not
    raise; nproc also stays within buildah's own default (32768) for chroot builds."""
    limits = []
    for name, kind, ceiling in (
        ("nofile", resource.RLIMIT_NOFILE, 1 << 20),
        ("nproc", resource.RLIMIT_NPROC, 32768),
    ):
        hard = resource.getrlimit(kind)[1]
        value = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
        limits.append(f"{name}={value}:{value}")
    return limits


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


class Podman:
    """The podman command under this module's private configuration and storage."""

    def __init__(self, storage: Path | None = None) -> None:
        self.binary = locate_binary("PODMAN_BIN", ("podman",), "podman")
        locate_binary("RUNC_BIN", ("runc",), "runc", fallbacks=("/usr/sbin/runc",))
        self.storage = storage or cache_dir()
        self.run_root = run_root(self.storage)
        self.conf_dir = self.storage / "conf"
        self.env = {**os.environ, **self._write_config()}

    def _write_config(self) -> dict[str, str]:
        """The three configuration files, and the variables that point podman at them."""
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.run_root.mkdir(parents=True, exist_ok=True)
        files = {
            "CONTAINERS_CONF": (
                "containers.conf",
                "[containers]\n"
                f"default_ulimits = {_toml_list(_ulimits())}\n"
                'netns = "host"\n'
                'log_driver = "k8s-file"\n'
                "[engine]\n"
                'runtime = "runc"\n'
                'cgroup_manager = "cgroupfs"\n'
                'events_logger = "file"\n'
                f"events_logfile_path = {json.dumps(str(self.run_root / 'events.log'))}\n"
                f"tmp_dir = {json.dumps(str(self.run_root / 'libpod'))}\n",
            ),
            "CONTAINERS_STORAGE_CONF": (
                "storage.conf",
                "[storage]\n"
                'driver = "overlay"\n'
                f"graphroot = {json.dumps(str(self.storage / 'graph'))}\n"
                f"runroot = {json.dumps(str(self.run_root / 'storage'))}\n",
            ),
            "CONTAINERS_REGISTRIES_CONF": (
                "registries.conf",
                "unqualified-search-registries = []\n",
            ),
        }
        env = {}
        for variable, (name, text) in files.items():
            path = self.conf_dir / name
            path.write_text(text)
            env[variable] = str(path)
        return env

    def __call__(
        self, *args: str, timeout: float = 120.0, stdin: Any = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`podman ARGS`, raising PodmanError with its output when it fails and `check`."""
        done = subprocess.run(
            [self.binary, *args],
            env=self.env,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=scaled(timeout),
        )
        if check and done.returncode != 0:
            raise PodmanError(
                f"podman {' '.join(args[:3])}... exited with {done.returncode}:\n"
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        return done

    def image_exists(self, image: str) -> bool:
        return self("image", "exists", image, check=False).returncode == 0

    def inspect_image(self, image: str) -> dict[str, Any]:
        return json.loads(self("image", "inspect", image).stdout)[0]

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Held while making or building images: two test runs must not build at once."""
        with (self.storage / "build.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def debian_mirror() -> str:
    """The Debian mirror apt already uses on this host (deb822 or one-line sources), or
    deb.debian.org; `LLMCOST_TEST_DEBIAN_MIRROR` overrides."""
    if os.environ.get(MIRROR_ENV):
        return os.environ[MIRROR_ENV]
    sources = Path("/etc/apt")
    texts = [p.read_text() for p in sorted(sources.glob("sources.list.d/*.sources"))]
    for stanza in "\n\n".join(texts).split("\n\n"):
        uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
        suites = re.search(r"^Suites:\s*(.+)$", stanza, re.MULTILINE)
        if uris and suites and _is_debian_main(uris[1], suites[1].split()):
            return uris[1]
    with contextlib.suppress(OSError):
        for line in (sources / "sources.list").read_text().splitlines():
            match = re.match(r"deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
            if match and _is_debian_main(match[1], [match[2]]):
                return match[1]
    return DEFAULT_MIRROR


def _is_debian_main(uri: str, suites: list[str]) -> bool:
    """A Debian archive (not its security archive) that carries a release suite."""
    return (
        uri.rstrip("/").endswith("/debian")
        and "security" not in uri
        and any("-" not in suite for suite in suites)
    )


def ensure_base_image(podman: Podman, workdir: Path) -> str:
    """The local Debian base with python3 and its venv module: made with debootstrap and
    imported the first time, then found in the cache."""
    with podman.locked():
        if not podman.image_exists(BASE_IMAGE):
            rootfs = workdir / "rootfs"
            try:
                debootstrap(rootfs)
                _trim(rootfs)
                import_rootfs(podman, rootfs, BASE_IMAGE)
            finally:
                shutil.rmtree(rootfs, ignore_errors=True)
        return BASE_IMAGE


def debootstrap(rootfs: Path) -> None:
    """A minimal Debian tree with the base's packages, from this host's Debian mirror."""
    binary = locate_binary(
        "DEBOOTSTRAP_BIN", ("debootstrap",), "debootstrap", fallbacks=("/usr/sbin/debootstrap",)
    )
    done = subprocess.run(
        [binary, "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
         BASE_SUITE, str(rootfs), debian_mirror()],
        capture_output=True, text=True, timeout=scaled(1800),
    )  # fmt: skip
    if done.returncode != 0:
        log = rootfs / "debootstrap" / "debootstrap.log"
        details = log.read_text(errors="replace") if log.exists() else done.stdout
        raise PodmanError(
            f"debootstrap exited with {done.returncode}:\n{done.stderr[-2000:]}\n{details[-2000:]}"
        )


def import_rootfs(podman: Podman, rootfs: Path, tag: str) -> None:
    """`tar -C ROOTFS -c . | podman import - TAG`."""
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    try:
        podman("import", "-", tag, stdin=tar.stdout, timeout=600)
    finally:
        tar.stdout.close()  # type: ignore[union-attr]
        if tar.wait() != 0:
            raise PodmanError(f"tar of {rootfs} exited with {tar.returncode}")


def _trim(rootfs: Path) -> None:
    """Drop what a slim base does without: manuals, translations, apt's lists and
    downloaded packages, documentation except the copyright files."""
    for relative in BASE_TRIMMED:
        shutil.rmtree(rootfs / relative, ignore_errors=True)
    for deb in (rootfs / "var/cache/apt").rglob("*"):
        if deb.is_file():
            deb.unlink()
    for path in sorted((rootfs / "usr/share/doc").rglob("*"), reverse=True):
        if path.is_file() or path.is_symlink():
            if path.name != "copyright":
                path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def host_ca_bundle() -> Path | None:
    """The CA bundle this host's TLS clients trust (a proxy's CA included), for pip in
    the build; None when there is none to pass."""
    for variable in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(variable)
        if value and Path(value).is_file():
            return Path(value)
    return SYSTEM_CA_BUNDLE if SYSTEM_CA_BUNDLE.is_file() else None


@dataclass
class Build:
    """One `podman build`: the image's tag and how long the build took."""

    tag: str
    seconds: float
    output: str


def stage_tag(tag: str, stage: str) -> str:
    """The tag a kept build stage gets: `REPO-STAGE:TAG` beside `REPO:TAG`."""
    repository, _, version = tag.rpartition(":")
    return f"{repository}-{stage}:{version}"


def build_image(
    podman: Podman,
    context: Path,
    tag: str,
    build_args: dict[str, str],
    ignorefile: Path | None = None,
    kept_stages: Sequence[str] = ("builder",),
) -> Build:
    """Build `context`/Dockerfile in the docker format (which keeps HEALTHCHECK and
    STOPSIGNAL), with chroot isolation, host network, cached layers and no pulls.

    The stages in `kept_stages` are built and tagged first, so that pruning the
    images this build replaced keeps their layers for the next build.
    """
    args = ["build", "--format", "docker", "--isolation", "chroot", "--network", "host",
            "--layers", "--pull=never", "--file", str(context / "Dockerfile")]  # fmt: skip
    for name, value in build_args.items():
        args += ["--build-arg", f"{name}={value}"]
    ca = host_ca_bundle()
    if ca is not None:
        args += ["--secret", f"id=pip-ca,src={ca}"]
    if ignorefile is not None:
        args += ["--ignorefile", str(ignorefile)]
    with podman.locked():
        started = time.monotonic()
        output = []
        for stage in kept_stages:
            done = podman(*args, "--target", stage, "--tag", stage_tag(tag, stage), str(context),
                          timeout=1800)  # fmt: skip
            output.append(done.stdout + done.stderr)
        done = podman(*args, "--tag", tag, str(context), timeout=1800)
        output.append(done.stdout + done.stderr)
        seconds = time.monotonic() - started
        # What the tags pointed at before is dangling now; its layers go with it.
        podman("image", "prune", "--force", timeout=300)
    return Build(tag, seconds, "".join(output))


@dataclass
class Container:
    """A container started detached by `run_container`; `remove` cleans it up."""

    podman: Podman
    name: str
    removed: bool = field(default=False, init=False)

    def inspect(self) -> dict[str, Any]:
        return json.loads(self.podman("container", "inspect", self.name).stdout)[0]

    def running(self) -> bool:
        return bool(self.inspect()["State"]["Running"])

    def pid(self) -> int:
        """The container's first process, as the host sees it."""
        return int(self.inspect()["State"]["Pid"])

    def logs(self) -> str:
        """What the container wrote, without podman's own messages (a host without
        systemd gets one per health check timer podman cannot set up)."""
        done = self.podman("logs", self.name, check=False)
        own = re.compile(r'^time="[^"]*" level=\w+ msg=', re.MULTILINE)
        return "".join(
            line for line in (done.stdout + done.stderr).splitlines(True) if not own.match(line)
        )

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return self.podman("exec", self.name, *command, check=False)

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """Run the image's HEALTHCHECK once, now."""
        return self.podman("healthcheck", "run", self.name, check=False)

    def wait_exited(self, timeout: float = 60.0) -> int:
        """The exit code, once the container has ended (within `timeout` scaled seconds).

        Read from `inspect`, not `podman wait`: where the host's init is slow to reap the
        orphaned conmon, `podman wait` and attached runs sit out a 20 s timeout.
        """
        deadline = time.monotonic() + scaled(timeout)
        while (state := self.inspect()["State"])["Running"]:
            if time.monotonic() > deadline:
                raise PodmanError(f"{self.name} still runs after {scaled(timeout):g}s")
            time.sleep(0.1)
        return int(state["ExitCode"])

    def stop(self, grace: float) -> tuple[int, float]:
        """`podman stop`: the image's STOPSIGNAL, then SIGKILL after `grace` (scaled)
        seconds. Returns the exit code and how long stopping took."""
        started = time.monotonic()
        seconds = max(1, round(scaled(grace)))
        self.podman("stop", "--time", str(seconds), self.name, timeout=seconds + 120)
        took = time.monotonic() - started
        return int(self.inspect()["State"]["ExitCode"]), took

    def remove(self) -> None:
        """Remove the container and its anonymous volumes (the image declares one)."""
        if not self.removed:
            self.podman("rm", "--force", "--volumes", "--time", "0", self.name, check=False)
            self.removed = True


def run_container(
    podman: Podman, image: str, args: Sequence[str], options: Sequence[str] = ()
) -> Container:
    """`podman run --detach` on the host network; the health check timer is off (it
    would need systemd): `Container.healthcheck` runs it on demand."""
    name = f"llmcost-test-{os.getpid()}-{next(_names)}"
    container = Container(podman, name)
    try:
        podman("run", "--detach", "--name", name, "--network", "host", "--pull=never",
               "--health-interval=disable", *options, image, *args)  # fmt: skip
    except BaseException:
        container.remove()
        raise
    return container


def run_listening(
    podman: Podman,
    image: str,
    launch: Callable[[int], tuple[list[str], list[str]]],
    ready_path: str = "/healthz",
) -> tuple[Container, int]:
    """Run a container that serves HTTP on the host network at 127.0.0.1:PORT, PORT free
    when picked: `launch(port)` gives the run options and the arguments. Returns once
    `ready_path` answers 200; a port taken meanwhile means another try on a new one."""
    for attempt in range(1, _PORT_RETRIES + 1):
        port = free_port()
        options, args = launch(port)
        container = run_container(podman, image, args, options)

        def alive(container: Container = container) -> None:
            if not container.running():
                raise PodmanError(f"the container exited:\n{container.logs()}")

        try:
            wait_http_ok(f"http://127.0.0.1:{port}{ready_path}", timeout=90, check=alive)
            return container, port
        except PodmanError as error:
            container.remove()
            if attempt == _PORT_RETRIES or "address already in use" not in str(error).lower():
                raise
        except BaseException:
            container.remove()
            raise
    raise AssertionError("unreachable")
