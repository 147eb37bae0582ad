"""Build, steer and load the fake `libnvidia-ml.so.1` from `tests/fake_nvml/`.

The fake is a small C library with NVML's entry points, struct layouts and return
codes, so the real pynvml bindings drive it through ctypes. It reports whatever
the state file named by `FAKE_NVML_STATE` says, and re-reads that file whenever
it changes; `FakeNvmlState.write` produces it.

An older driver is emulated two ways, the same entry points missing in both:
`build_fake_nvml(dir, driver_branch=470)` compiles a library without the
symbols that branch lacks (pynvml's lookup fails as on the real driver: for
child processes), and `FakeNvmlState(driver_branch=470)` makes the full
library answer NVML_ERROR_FUNCTION_NOT_FOUND for them (for the test process,
where only one fake can be loaded).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "fake_nvml" / "fake_nvml.c"
LIB_NAME = "libnvidia-ml.so.1"
STATE_ENV = "FAKE_NVML_STATE"
MAX_GPUS = 16
MAX_MIGS = 7
OLDEST_BRANCH = 450
"""The oldest driver branch the fake emulates (MIG arrived with it)."""

_preloaded: ctypes.CDLL | None = None


def build_fake_nvml(out_dir: Path, driver_branch: int | None = None) -> Path:
    """Compile the fake into `out_dir/libnvidia-ml.so.1`; return `out_dir`.

    `out_dir` is the directory to put on `LD_LIBRARY_PATH`. With `driver_branch`
    (e.g. 470) the library lacks the entry points that branch's driver lacks.
    """
    if driver_branch is not None and driver_branch < OLDEST_BRANCH:
        raise ValueError(f"the fake emulates driver branches from R{OLDEST_BRANCH} on")
    out_dir.mkdir(parents=True, exist_ok=True)
    branch = [f"-DFAKE_NVML_BRANCH={int(driver_branch)}"] if driver_branch is not None else []
    command = [
        "gcc",
        "-shared",
        "-fPIC",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        *branch,
        f"-Wl,-soname,{LIB_NAME}",
        "-o",
        str(out_dir / LIB_NAME),
        str(SOURCE),
        "-lpthread",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise RuntimeError("cannot build the fake NVML: gcc is not installed") from exc
    if result.returncode != 0:
        raise RuntimeError(
            f"building the fake NVML failed (gcc exit {result.returncode}):\n{result.stderr}"
        )
    return out_dir


@dataclass
class FakeMig:
    """One MIG device (GPU instance) under a GPU in MIG mode."""

    uuid: str
    gpu_instance_id: int
    memory_total: int
    memory_used: int


@dataclass
class FakeGpu:
    """One GPU as the fake reports it.

    An empty `uuid` is replaced by `default_gpu_uuid(index)` when the GPU is put into a
    `FakeNvmlState`. `not_supported` names C functions (e.g. "nvmlDeviceGetPowerUsage")
    that return NVML_ERROR_NOT_SUPPORTED for this GPU and its MIG devices.
    """

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = ""
    util_gpu: int = 0
    util_memory: int = 0
    memory_total: int = 80 * 1024**3
    memory_used: int = 0
    memory_reserved: int = 0
    power_mw: int = 100_000
    energy_mj: int = 0
    temperature: int = 40
    sm_clock_mhz: int = 1980
    clock_event_reasons: int = 0
    gpm_supported: bool = False
    sm_activity: float = 0.0
    sm_occupancy: float = 0.0
    tensor_activity: float = 0.0
    mig_mode: int = 0
    migs: list[FakeMig] = field(default_factory=list)
    lost: bool = False
    not_supported: tuple[str, ...] = ()
    failing: tuple[str, ...] = ()
    """C functions that return NVML_ERROR_UNKNOWN for this GPU."""


def default_gpu_uuid(index: int) -> str:
    """The UUID a GPU without one gets: deterministic, in NVML's format."""
    return f"GPU-{index:08x}-fa4e-4000-8000-{index:012x}"


@dataclass
class FakeNvmlState:
    """Everything the fake reports; `write` it to the file `FAKE_NVML_STATE` names."""

    gpus: list[FakeGpu]
    init_error: int = 0
    init_delay_ms: int = 0
    """How long init hangs before answering, like a driver still loading."""
    driver_version: str = "550.54.15"
    driver_branch: int = 0
    """Entry points newer than this branch answer FUNCTION_NOT_FOUND; 0: none do."""

    def __post_init__(self) -> None:
        for index, gpu in enumerate(self.gpus):
            if not gpu.uuid:
                gpu.uuid = default_gpu_uuid(index)

    def render(self) -> str:
        """The state file's text."""
        if len(self.gpus) > MAX_GPUS:
            raise ValueError(f"the fake supports at most {MAX_GPUS} GPUs")
        lines = [
            "# fake NVML state",
            f"init_error = {int(self.init_error)}",
            f"init_delay_ms = {int(self.init_delay_ms)}",
            f"driver_branch = {int(self.driver_branch)}",
            f"driver_version = {_text(self.driver_version)}",
            f"device_count = {len(self.gpus)}",
        ]
        for i, gpu in enumerate(self.gpus):
            if len(gpu.migs) > MAX_MIGS:
                raise ValueError(f"the fake supports at most {MAX_MIGS} MIG devices per GPU")
            values: dict[str, object] = {
                "name": _text(gpu.name),
                "uuid": _text(gpu.uuid),
                "util_gpu": int(gpu.util_gpu),
                "util_memory": int(gpu.util_memory),
                "memory_total": int(gpu.memory_total),
                "memory_used": int(gpu.memory_used),
                "memory_reserved": int(gpu.memory_reserved),
                "power_mw": int(gpu.power_mw),
                "energy_mj": int(gpu.energy_mj),
                "temperature": int(gpu.temperature),
                "sm_clock_mhz": int(gpu.sm_clock_mhz),
                "clock_event_reasons": hex(int(gpu.clock_event_reasons)),
                "gpm_supported": int(bool(gpu.gpm_supported)),
                "sm_activity": repr(float(gpu.sm_activity)),
                "sm_occupancy": repr(float(gpu.sm_occupancy)),
                "tensor_activity": repr(float(gpu.tensor_activity)),
                "mig_mode": int(bool(gpu.mig_mode)),
                "mig_count": len(gpu.migs),
                "lost": int(bool(gpu.lost)),
                "not_supported": ",".join(_text(name) for name in gpu.not_supported),
                "failing": ",".join(_text(name) for name in gpu.failing),
            }
            lines += [f"gpu.{i}.{key} = {value}" for key, value in values.items()]
            for j, mig in enumerate(gpu.migs):
                lines += [
                    f"gpu.{i}.mig.{j}.uuid = {_text(mig.uuid)}",
                    f"gpu.{i}.mig.{j}.gpu_instance_id = {int(mig.gpu_instance_id)}",
                    f"gpu.{i}.mig.{j}.memory_total = {int(mig.memory_total)}",
                    f"gpu.{i}.mig.{j}.memory_used = {int(mig.memory_used)}",
                ]
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        """Replace `path` atomically with this state.

        The new file's mtime is forced past the old one's, so the fake notices the
        change even when two writes land within one filesystem timestamp tick.
        """
        text = self.render()
        try:
            previous_mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            previous_mtime = 0
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as tmp:
                tmp.write(text)
            mtime = max(time.time_ns(), previous_mtime + 1)
            os.utime(tmp_name, ns=(mtime, mtime))
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise


def _text(value: str) -> str:
    """A string value for the one-line `key = value` format."""
    if "\n" in value or "\r" in value or value != value.strip():
        raise ValueError(f"state values cannot hold newlines or edge whitespace: {value!r}")
    return value


def subprocess_env(lib_dir: Path, state_path: Path) -> dict[str, str]:
    """Environment additions that make a child process load the fake."""
    existing = os.environ.get("LD_LIBRARY_PATH")
    library_path = f"{lib_dir}:{existing}" if existing else str(lib_dir)
    return {"LD_LIBRARY_PATH": library_path, STATE_ENV: str(state_path)}


def preload(lib_dir: Path) -> ctypes.CDLL:
    """Load the fake into this process so pynvml's `CDLL("libnvidia-ml.so.1")` finds it.

    The dynamic loader matches that name against the soname of libraries already
    loaded. Only one copy can serve pynvml per process, so later calls return the
    first handle whatever `lib_dir` they get. The handle's `fakeNvmlCallCount(bytes)`
    and `fakeNvmlResetCallCounts()` are ready to call.
    """
    global _preloaded
    if _preloaded is None:
        _preloaded = ctypes.CDLL(str(lib_dir / LIB_NAME), mode=ctypes.RTLD_GLOBAL)
        _declare_helpers(_preloaded)
    return _preloaded


def _declare_helpers(lib: ctypes.CDLL) -> None:
    lib.fakeNvmlCallCount.argtypes = [ctypes.c_char_p]
    lib.fakeNvmlCallCount.restype = ctypes.c_ulonglong
    lib.fakeNvmlResetCallCounts.argtypes = []
    lib.fakeNvmlResetCallCounts.restype = None
    lib.fakeNvmlFunctionSince.argtypes = [ctypes.c_char_p]
    lib.fakeNvmlFunctionSince.restype = ctypes.c_int


def function_since(lib: ctypes.CDLL, function_name: str) -> int:
    """The driver branch whose nvml.h first declares `function_name` (0: any the fake
    emulates; -1: the fake does not have it)."""
    return int(lib.fakeNvmlFunctionSince(function_name.encode()))


def call_count(lib: ctypes.CDLL, function_name: str) -> int:
    """How often the fake's `function_name` was called since the last reset."""
    return int(lib.fakeNvmlCallCount(function_name.encode()))
