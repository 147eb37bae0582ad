"""Instructions and CPU per collection cycle, whole and by stage, at 1, 8 and 32 engines.

The daemon's CPU per 5 s cycle on an 8-engine, 8-GPU node is the figure to hold,
and CPU time on a shared machine moves by tens of percent from run to run.
Instruction counts under valgrind's callgrind do not: this script counts the
instructions (callgrind's Ir, every thread of the process) of one cycle and of
each of its stages, and prints beside them the plain CPU time per cycle and per
stage measured without valgrind.

The daemon is built in a worker process exactly as it runs: `assembly.serve()` on
a configuration of N engines (one per GPU for the first 8) at the default 5 s
interval, each engine served over HTTP by its own process of the real simulator
(each engine is its own server on a real node; never under valgrind), the 8 GPUs
read through pynvml from the fake libnvidia-ml.so.1 (tests/fake_nvml, compiled
with gcc at start) preloaded into the worker. The worker takes the
`CollectionLoop` that `serve()` creates and, instead of letting it run on its
timer, drives the stages itself:

- fetch: every engine's page GET, as the daemon does it (each collector's page
  source read with a feed that does nothing), all concurrently like the loop;
- parse: each engine's page, captured once, read as its collector reads it
  (following the shape of the engine's last page: collectors/page_shape.py);
- gpus: the NVML collector's `collect()` (8 H100 with GPM);
- account: each engine's readings and the GPU snapshot recorded into the node
  state, then `state.advance(now)` (the readings' counters grow every time);
- render: the loop's `publish()`, i.e. `cycle_families` and each output's
  `publish` (the `/metrics` page);
- cycle: `CollectionLoop.run_once()`, the whole cycle;
- state_file: what a cycle adds where `state_file` is set, as the Helm chart
  and the systemd unit set it: `StateFile.save` of the node's state (the
  snapshot on the loop; the JSON encoding and the atomic write, with its two
  fsyncs, in the state file's thread) into the worker's temporary directory.
  The configuration measured sets none, so the cycle's figures are those of
  the default configuration.

Floors are measured alike, to show how far each stage is above the least its
approach can cost here: `fetch_floor`, the same pages got over asyncio with
nothing but a kept connection, the request and a Content-Length count (no
timeout, no HTTP checks, no parsing); `scan_floor`, the one C-level pattern
scan that finds the vLLM reader's wanted lines in each page, with no Python per
line. `thread_fetch_floor` is the floor of another way to fetch: the same
counting over plain non-blocking sockets and a `selectors` loop, in a worker
thread handed the whole batch once per run.

A real cycle runs every 5 s; here the gpus and cycle stages sleep 0.11 s
before each run (the loop's own sleep between cycles), so that NVML takes a GPM
sample every time as it does in the daemon.

Counting: the worker runs under `valgrind --tool=callgrind --instr-atstart=no`,
so start-up, imports and the first warm-up run uninstrumented. For each stage
it runs W warm-up repetitions, collects garbage, zeroes the counts, runs the
stage K times and dumps the counts, collects garbage, zeroes, runs the stage
2K times and dumps again (callgrind client requests, from a small library
compiled against valgrind/callgrind.h). The figure is (Ir(2K) - Ir(K)) / K,
which cancels whatever a segment costs once; the collection before each
segment keeps a full collection of the old generation, which a long-running
daemon rarely makes, from landing in one segment and not the other. Ir counts
user-space instructions only: the kernel's share of the socket reads and
writes is in the CPU figures alone. The same stages run again in a worker
without valgrind for the CPU figures (time.process_time: every thread, user
and kernel) over many repetitions.

Needs valgrind (with its header valgrind/callgrind.h, in Debian's valgrind
package) and gcc; without valgrind only the CPU figures are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import ctypes
import gc
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from _floors import BareGet, SelectorFetch, get_requests, vllm_scan
from _procs import ProcessGroup, nvml_node_config, run_main, start_engines
from bench_nvml import GPUS, H100, fake_gpus
from realparts.fake_nvml import STATE_ENV, FakeNvmlState, build_fake_nvml, preload
from realparts.ports import free_port

STAGES = ("fetch", "parse", "gpus", "account", "render", "cycle")
ADDED = ("state_file",)
"""What a cycle adds with optional settings: not in the cycle measured."""
FLOORS = ("fetch_floor", "scan_floor", "thread_fetch_floor")
MEASURED = (*STAGES, *ADDED, *FLOORS)
RUN_ORDER = (
    "cycle",
    "state_file",
    "fetch",
    "fetch_floor",
    "thread_fetch_floor",
    "parse",
    "scan_floor",
    "gpus",
    "render",
    "account",
)
"""The cycle first, so that the state the render and account stages see is a real
one; account last, since its made-up readings run the counters ahead."""
GAP = 0.11
"""Seconds slept before each run of a sleeping stage: more than NVML's 100 ms between
GPM samples."""
INTERVAL = 5.0
TARGET_CYCLE_MS = 10.0
TARGET_PER_ENGINE_MS = 0.5
DEFAULTS = {"engines": "1,8,32", "k": 4, "warmup": 3, "native_seconds": 0.5}
QUICK = {"engines": "1,8", "k": 2, "warmup": 2, "native_seconds": 0.2}
NATIVE_WALL_CAP = 3.0
"""Seconds of wall time at most per stage in the native worker (sleeps included)."""
WORKER_TIMEOUT = 900.0

MARK_SOURCE = """\
#include <valgrind/callgrind.h>
void cycle_mark_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void cycle_mark_zero(void) { CALLGRIND_ZERO_STATS; }
void cycle_mark_dump(const char *what) { CALLGRIND_DUMP_STATS_AT(what); }
"""


def build_marks(out_dir: Path) -> Path | None:
    """Compile the callgrind client requests into a library; None without the header."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / "cycle_mark.c"
    source.write_text(MARK_SOURCE)
    library = out_dir / "libcycle_mark.so"
    result = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        print(f"cannot build the callgrind markers:\n{result.stderr}", file=sys.stderr)
        return None
    return library


# --- the worker: the daemon in this process ------------------------------------


class Marks:
    """Callgrind's client requests; nothing when there is no library."""

    def __init__(self, library: str | None) -> None:
        self._lib = ctypes.CDLL(library) if library else None
        if self._lib is not None:
            self._lib.cycle_mark_dump.argtypes = [ctypes.c_char_p]

    def start(self) -> None:
        """Count from here on (from zero)."""
        if self._lib is not None:
            self._lib.cycle_mark_start()
            self._lib.cycle_mark_zero()

    def zero(self) -> None:
        if self._lib is not None:
            self._lib.cycle_mark_zero()

    def dump(self, what: str) -> None:
        if self._lib is not None:
            self._lib.cycle_mark_dump(what.encode())


@dataclass
class Stage:
    run: Callable[[int], Awaitable[None]]
    """Runs the stage n times."""
    prepare: Callable[[int], None] = lambda n: None
    """Makes ready, untimed, whatever the next n runs use."""


def grown(readings: Any, step: int) -> Any:
    """`readings` with their counters `step` cycles of steady traffic further on."""
    from llm_cost_exporter.collectors.readings import EngineReadings

    def ahead(value: float | None, per_cycle: float) -> float | None:
        return None if value is None else value + per_cycle * step

    return EngineReadings(
        [
            replace(
                r,
                prompt_tokens=ahead(r.prompt_tokens, 6000.0),
                cached_prompt_tokens=ahead(r.cached_prompt_tokens, 3000.0),
                generation_tokens=ahead(r.generation_tokens, 1500.0),
                requests=ahead(r.requests, 12.0),
            )
            for r in readings
        ],
        readings.rejected,
        readings.first_rejected,
    )


async def drive(loop: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Every stage on the daemon's own loop, objects and event loop."""
    from llm_cost_exporter.collectors.engine_page import read_whole
    from llm_cost_exporter.collectors.page_shape import LastPage
    from llm_cost_exporter.collectors.vllm import VllmPageReader, parse_vllm_page
    from llm_cost_exporter.daemon.state_file import StateFile

    state = loop.state
    engines = list(loop.engines)
    gpus = loop.gpus
    if gpus is None:
        raise RuntimeError("the daemon has no GPU collector: NVML did not start")

    async def page_of(collector: Any) -> bytes:
        chunks: list[bytes] = []
        await collector._page.read(chunks.append)
        return b"".join(chunks)

    def discard(chunk: bytes) -> None:
        pass

    async def fetch(n: int) -> None:
        for _ in range(n):
            await asyncio.gather(*(c._page.read(discard) for c in engines))

    targets = get_requests([c._page.url for c in engines])
    bare: list[tuple[BareGet, bytes]] = []
    for host, port, request in targets:
        _, protocol = await asyncio.get_running_loop().create_connection(BareGet, host, port)
        bare.append((protocol, request))

    async def fetch_floor(n: int) -> None:
        for _ in range(n):
            await asyncio.gather(*(protocol.get(request) for protocol, request in bare))

    selecting = SelectorFetch(targets)
    fetch_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fetch")

    async def thread_fetch_floor(n: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(n):
            await loop.run_in_executor(fetch_thread, selecting.fetch_all)

    pages: list[bytes] = []
    last_pages = [LastPage() for _ in engines]

    async def parse(n: int) -> None:
        for _ in range(n):
            for page, last in zip(pages, last_pages, strict=True):
                read_whole(VllmPageReader().follow(last), page)

    scan = vllm_scan()

    async def scan_floor(n: int) -> None:
        for _ in range(n):
            for page in pages:
                scan.findall(page)

    async def collect_gpus(n: int) -> None:
        for _ in range(n):
            await asyncio.sleep(GAP)
            await gpus.collect()

    made: list[list[Any]] = []
    base: list[Any] = []
    snapshot: list[Any] = []
    steps = [0]

    def make_readings(n: int) -> None:
        made.extend([grown(r, steps[0] + i + 1) for r in base] for i in range(n))
        steps[0] += n

    async def account(n: int) -> None:
        for _ in range(n):
            for collector, readings in zip(engines, made.pop(0), strict=True):
                state.record_engine_readings(collector.name, collector.target, readings, 0.004)
            state.record_gpu_snapshot(gpus.name, gpus.target, snapshot[0], 0.002, time.monotonic())
            state.advance(time.monotonic())

    async def render(n: int) -> None:
        for _ in range(n):
            loop.publish()

    async def cycle(n: int) -> None:
        for _ in range(n):
            await asyncio.sleep(GAP)
            await loop.run_once()

    if loop.state_file is not None:
        raise RuntimeError("the measured configuration sets a state file: the cycle holds it")
    state_file = StateFile(Path(f"{args.out}.state.json"))

    async def save_state(n: int) -> None:
        for _ in range(n):
            await state_file.save(state, timeout=INTERVAL)

    stages = {
        "cycle": Stage(cycle),
        "state_file": Stage(save_state),
        "fetch": Stage(fetch),
        "fetch_floor": Stage(fetch_floor),
        "thread_fetch_floor": Stage(thread_fetch_floor),
        "parse": Stage(parse),
        "scan_floor": Stage(scan_floor),
        "gpus": Stage(collect_gpus),
        "render": Stage(render),
        "account": Stage(account, make_readings),
    }
    marks = Marks(args.marks)
    results: dict[str, Any] = {}
    for name in RUN_ORDER:
        if name == "parse":
            pages[:] = [await page_of(c) for c in engines]
        elif name == "account":
            base[:] = [parse_vllm_page(await page_of(c)) for c in engines]
            snapshot[:] = [await gpus.collect()]
        stage = stages[name]
        stage.prepare(args.warmup)
        await stage.run(args.warmup)
        if args.native_seconds > 0:
            results[name] = await time_natively(stage, args.native_seconds)
            if args.profile:
                await write_profile(stage, Path(f"{args.out}.{name}.profile.txt"))
        else:
            stage.prepare(3 * args.k)
            gc.collect()
            marks.start()
            await stage.run(args.k)
            marks.dump(f"{name}:K")
            gc.collect()
            marks.zero()
            await stage.run(2 * args.k)
            marks.dump(f"{name}:2K")
        if name == "cycle":
            results["checks"] = check(loop, len(engines))
    if restarts := sum(s.restarts + s.dips for s in state.targets.values() if s.engine):
        raise RuntimeError(f"{restarts} engine restarts or counter dips: the readings went back")
    results["page_bytes"] = [len(p) for p in pages]
    return results


async def time_natively(stage: Stage, seconds: float) -> dict[str, float]:
    """CPU of every thread per run, user and system, in blocks until `seconds` of CPU or
    NATIVE_WALL_CAP."""
    runs, cpu, system = 0, 0.0, 0.0
    wall_start = time.monotonic()
    block = 1
    gc.collect()
    while cpu < seconds and (runs < 5 or time.monotonic() - wall_start < NATIVE_WALL_CAP):
        stage.prepare(block)
        start, rusage = time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
        await stage.run(block)
        cpu += time.process_time() - start
        system += resource.getrusage(resource.RUSAGE_SELF).ru_stime - rusage.ru_stime
        runs += block
        block = min(block * 2, 32)
    return {"runs": runs, "cpu_s": cpu, "system_s": system}


async def write_profile(stage: Stage, path: Path, runs: int = 20) -> None:
    """The functions `runs` of `stage` spend their time in, by own time and with what they
    call (cProfile): where to look when a stage grows. Not timed, as the profiler slows
    every call and counts waits for the GIL and the network."""
    import cProfile
    import io
    import pstats

    stage.prepare(runs)
    profiler = cProfile.Profile()
    profiler.enable()
    await stage.run(runs)
    profiler.disable()
    profiler.dump_stats(path.with_suffix(".pstats"))  # for pstats: by call count, callers
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(60)
    path.write_text(f"{runs} runs\n{text.getvalue()}")


def check(loop: Any, engines: int) -> dict[str, Any]:
    """That the cycles read every engine and NVML; the worker fails otherwise."""
    statuses = list(loop.state.targets.values())
    up = sum(s.up for s in statuses if s.engine)
    nvml = [s.up for s in statuses if not s.engine and s.collector == "nvml"]
    if up != engines or nvml != [True]:
        errors = [f"{s.target}: {s.last_error}" for s in statuses if not s.up]
        raise RuntimeError(
            f"{up}/{engines} engines up, NVML up {nvml}: " + "; ".join(errors)[:2000]
        )
    return {"engines_up": up, "gpus": len(loop.state.fleet.gpus)}


def worker(args: argparse.Namespace) -> int:
    preload(Path(args.lib_dir))
    os.environ[STATE_ENV] = args.nvml_state
    from llm_cost_exporter.config import config_from_mapping
    from llm_cost_exporter.daemon import assembly
    from llm_cost_exporter.daemon.loop import CollectionLoop

    config = config_from_mapping(nvml_node_config(free_port(), args.engine_urls.split(",")))
    models, default = assembly.resolve_prices(config)
    outcome: dict[str, Any] = {}

    async def driven(self: Any) -> None:
        try:
            outcome["results"] = await drive(self, args)
        except Exception as error:
            outcome["error"] = error
        os.kill(os.getpid(), signal.SIGTERM)  # serve() stops as on a real SIGTERM
        await asyncio.Event().wait()

    CollectionLoop.run_forever = driven  # type: ignore[method-assign]
    asyncio.run(assembly.serve(config, models, default))
    if "results" not in outcome:
        raise outcome.get("error") or RuntimeError("stopped before the stages were done")
    Path(args.out).write_text(json.dumps(outcome["results"]))
    return 0


# --- the parent: simulators, workers, tables --------------------------------


def run_worker(
    group: ProcessGroup,
    name: str,
    argv: list[str],
    out: Path,
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONUNBUFFERED": "1"}
    proc = group.spawn(name, argv, env=env)
    deadline = time.monotonic() + WORKER_TIMEOUT
    while proc.poll() is None:
        if time.monotonic() > deadline:
            group.stop(proc)
            raise RuntimeError(f"{name} did not finish within {WORKER_TIMEOUT:g} s")
        time.sleep(0.2)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"{name} exited with {proc.returncode}:\n{group.log_tail(name, 30)}")
    return json.loads(out.read_text())


def read_dumps(prefix: Path) -> dict[str, int]:
    """Ir of each dump callgrind wrote as `prefix.N`, by the name it was dumped under."""
    found: dict[str, int] = {}
    for path in prefix.parent.glob(prefix.name + ".*"):
        what, total = None, None
        with path.open(errors="replace") as lines:
            for line in lines:
                if line.startswith("desc: Trigger: Client Request: "):
                    what = line.split(": ", 3)[-1].strip()
                elif line.startswith(("totals:", "summary:")):
                    total = int(line.split()[1])
        if what is not None and total is not None:
            found[what] = total
    return found


@dataclass
class Figures:
    """One engine count's results."""

    engines: int
    ir: dict[str, float]
    """Instructions per run, by stage (empty without valgrind)."""
    cpu_ms: dict[str, float]
    system_share: dict[str, float]
    """Of cpu_ms, the share spent in the kernel (getrusage's split)."""
    runs: dict[str, int]
    page_bytes: list[int]


def measure_node(
    group: ProcessGroup, tmp: Path, urls: list[str], args: argparse.Namespace, marks: Path | None
) -> Figures:
    engines = len(urls)
    common = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--engine-urls",
        ",".join(urls),
        "--lib-dir",
        str(tmp / "lib"),
        "--nvml-state",
        str(tmp / "nvml-state.txt"),
        "--warmup",
        str(args.warmup),
        "--k",
        str(args.k),
    ]
    took = [time.monotonic()]
    try:
        out = tmp / f"native-{engines}.json"
        native = run_worker(
            group,
            f"native-{engines}",
            [
                *common,
                "--native-seconds",
                str(args.native_seconds),
                "--out",
                str(out),
                *(["--profile"] if args.profile else []),
            ],
            out,
        )
        took.append(time.monotonic())
        ir: dict[str, float] = {}
        if marks is not None:
            out = tmp / f"callgrind-{engines}.json"
            prefix = tmp / f"callgrind-{engines}.out"
            run_worker(
                group,
                f"callgrind-{engines}",
                [
                    "valgrind",
                    "--tool=callgrind",
                    "--instr-atstart=no",
                    f"--callgrind-out-file={prefix}",
                    *common,
                    "--native-seconds",
                    "0",
                    "--marks",
                    str(marks),
                    "--out",
                    str(out),
                ],
                out,
            )
            dumps = read_dumps(prefix)
            for stage in MEASURED:
                if f"{stage}:K" not in dumps or f"{stage}:2K" not in dumps:
                    raise RuntimeError(f"callgrind wrote no counts for {stage}: {sorted(dumps)}")
                ir[stage] = (dumps[f"{stage}:2K"] - dumps[f"{stage}:K"]) / args.k
            took.append(time.monotonic())
    finally:
        group.stop_named("simulator")
    print(
        f"  {engines} engine{'s' if engines > 1 else ''}: "
        + ", ".join(
            f"{what} {end - start:.0f} s"
            for what, start, end in zip(("natively", "callgrind"), took, took[1:], strict=False)
        ),
        flush=True,
    )
    return Figures(
        engines,
        ir,
        {s: native[s]["cpu_s"] / native[s]["runs"] * 1e3 for s in MEASURED},
        {s: native[s]["system_s"] / max(native[s]["cpu_s"], 1e-9) for s in MEASURED},
        {s: native[s]["runs"] for s in MEASURED},
        native["page_bytes"],
    )


def print_table(
    title: str,
    nodes: list[Figures],
    value: Callable[[Figures, str], float],
    digits: int,
    system: bool = False,
) -> None:
    """One row per stage, one column per engine count, the slope per added engine, the
    stage's share of the cycle at 8 engines (and the kernel's share of its CPU)."""
    first, last = nodes[0], nodes[-1]
    slope = last.engines > first.engines
    share_node = next((n for n in nodes if n.engines == GPUS), last)
    heads = [f"{n.engines} engine{'s' if n.engines > 1 else ''}" for n in nodes]
    heads += ["per engine"] * slope + ["% of cycle"]
    heads += ["kernel %"] * system
    print(f"\n{title}")
    print(f"{'stage':<20}" + "".join(f"{h:>12}" for h in heads))
    for stage in (*STAGES[:-1], "sum of stages", "cycle", *ADDED, *FLOORS):

        def of(node: Figures, stage: str = stage) -> float:
            if stage == "sum of stages":
                return sum(value(node, s) for s in STAGES[:-1])
            return value(node, stage)

        cells = [f"{of(n):.{digits}f}" for n in nodes]
        if slope:
            cells.append(f"{(of(last) - of(first)) / (last.engines - first.engines):.{digits}f}")
        cells.append(f"{of(share_node) / value(share_node, 'cycle') * 100:.0f}%")
        if system:
            kernel = "-" if stage == "sum of stages" else f"{share_node.system_share[stage]:.0%}"
            cells.append(kernel)
        print(f"{stage:<20}" + "".join(f"{c:>12}" for c in cells))
    notes = [
        f"% of cycle and kernel % at {share_node.engines} engines",
        "state_file: what a cycle adds with a state file",
        "floors: the least a fetch and a scan for the wanted lines cost (module docstring)",
    ]
    if slope:
        notes.insert(0, f"per engine: slope from {first.engines} to {last.engines} engines")
    print(f"({'; '.join(notes)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", help="engine counts, comma-separated (1,8,32; quick 1,8)")
    parser.add_argument("--k", type=int, help="K of the K and 2K counted runs (4; quick 2)")
    parser.add_argument(
        "--warmup", type=int, help="runs of each stage before counting (3; quick 2)"
    )
    parser.add_argument(
        "--native-seconds",
        type=float,
        help="CPU seconds per stage in the run without valgrind (0.5; quick 0.2)",
    )
    parser.add_argument("--no-valgrind", action="store_true", help="CPU figures only")
    parser.add_argument(
        "--workdir",
        help="keep the callgrind dumps (callgrind_annotate reads them) and logs in this directory",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 and 8 engines, K=2")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also write each stage's cProfile (by own time) to the workdir",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--engine-urls", "--lib-dir", "--nvml-state", "--marks", "--out"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for key, default in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    if args.worker:
        return worker(args)

    counts = sorted({int(n) for n in args.engines.split(",")})
    if min(counts) < 1:
        parser.error("--engines: at least 1")
    with_valgrind = not args.no_valgrind and shutil.which("valgrind") is not None
    with tempfile.TemporaryDirectory(prefix="bench-cycle-") as name:
        tmp = Path(args.workdir or name)
        tmp.mkdir(parents=True, exist_ok=True)
        build_fake_nvml(tmp / "lib")
        FakeNvmlState(fake_gpus(H100, gpm=True)).write(tmp / "nvml-state.txt")
        marks = build_marks(tmp / "marks") if with_valgrind else None
        if not args.no_valgrind and marks is None:
            print("valgrind (with valgrind/callgrind.h) not found: CPU figures only\n")
        print(
            f"{', '.join(map(str, counts))} simulated vLLM engines, {GPUS} fake-NVML GPUs "
            f"({H100}, GPM), the first {GPUS} engines one GPU each;\n"
            f"{args.warmup} warm-up runs per stage"
            + (f", callgrind K={args.k} and 2K={2 * args.k} runs" if marks else "")
            + " ...",
            flush=True,
        )
        group = ProcessGroup(tmp)
        nodes = []
        try:
            urls = start_engines(group, max(counts))
            for engines in counts:
                nodes.append(measure_node(group, tmp, urls[:engines], args, marks))
        finally:
            group.close()

    pages = nodes[-1].page_bytes
    print(f"\npage per engine: {sum(pages) / len(pages) / 1024:.1f} KiB (the simulator's vLLM)")
    if marks is not None:
        print_table(
            "millions of instructions per cycle (callgrind Ir of every thread, user space), "
            "(Ir(2K) - Ir(K)) / K:",
            nodes,
            lambda node, stage: node.ir[stage] / 1e6,
            2,
        )
    print_table(
        "CPU ms per cycle without valgrind (time.process_time: every thread, user + kernel):",
        nodes,
        lambda node, stage: node.cpu_ms[stage],
        3,
        system=True,
    )
    print(
        "(runs per stage: "
        + "; ".join(
            f"{n.engines} engines " + ", ".join(f"{s} {n.runs[s]}" for s in MEASURED) for n in nodes
        )
        + ")"
    )
    print(
        "(the cycle also holds what no stage does: each collector's task, the page "
        "parsed\n as it arrives in chunks; the gpus and cycle stages include a 0.11 s "
        "sleep's event-loop wake-up;\n callgrind counts no kernel instructions, so the "
        "socket work of fetch weighs less there)"
    )

    eight = next((n for n in nodes if n.engines == GPUS), None)
    if eight is not None:
        ms = eight.cpu_ms["cycle"]
        print(
            f"\n{GPUS} engines: {ms:.2f} ms CPU per cycle = {ms / INTERVAL / 10:.3f}% of one core "
            f"at {INTERVAL:g} s, target <= {TARGET_CYCLE_MS:g} ms: "
            f"{'met' if ms <= TARGET_CYCLE_MS else 'MISSED'}"
        )
        if marks is not None:
            per_ms = eight.ir["cycle"] / ms / 1e6
            print(
                f"(on this machine, natively: {per_ms:.1f} M instructions per CPU ms of the cycle)"
            )
    if len(nodes) > 1:
        first, last = nodes[0], nodes[-1]
        per = (last.cpu_ms["cycle"] - first.cpu_ms["cycle"]) / (last.engines - first.engines)
        print(
            f"per added engine: {per:.3f} ms CPU per cycle, target <= "
            f"{TARGET_PER_ENGINE_MS:g} ms: {'met' if per <= TARGET_PER_ENGINE_MS else 'MISSED'}"
        )
        floors = {
            floor: (last.cpu_ms[floor] - first.cpu_ms[floor]) / (last.engines - first.engines)
            for floor in FLOORS
        }
        for fetch_floor in ("fetch_floor", "thread_fetch_floor"):
            print(
                f"per added engine, the floors alone: {fetch_floor} {floors[fetch_floor]:.3f}"
                f" + scan_floor {floors['scan_floor']:.3f}"
                f" = {floors[fetch_floor] + floors['scan_floor']:.3f} ms CPU per cycle"
            )
    return 0


if __name__ == "__main__":
    run_main(main)
