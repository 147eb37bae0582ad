"""Steady-state CPU and memory of the daemon at 1, 8 and 32 engines on an 8-GPU node.

An exporter runs on every GPU node forever, so its idle cost has to be
negligible next to what it reports. This runs three copies of the real daemon
side by side over the same period, so that load from elsewhere on the machine
weighs on all alike: one watching 1 simulated engine, one 8 and one 32 (each
engine its own simulator process, as each is its own server on a real node), each
reading the same 8 fake-NVML GPUs (the real pynvml over tests/fake_nvml,
compiled with gcc at start) at the default 5 s interval, the first 8 engines
one GPU each. Each is scraped every 15 s like Prometheus does; their CPU time
and RSS come from /proc. References measured in the same run: node-exporter
under the same scrapes, and a bare Python that only imports the daemon's
libraries (the memory floor any Python exporter pays). A second bare Python
that also imports genai_prices and pydantic shows what the daemon would weigh
if it loaded the price catalog in-process; whether it does is read from the
daemons' /proc/PID/maps (pydantic's native library). The CPU per added engine is the
slope from the fewest engines to the most.

One more daemon reads the 8-engine node with a state file set, as the Helm
chart and the systemd unit deploy it: the configuration the targets are for
sets none, and the difference is what writing the counters to disk every cycle
costs (in the run's temporary directory).

Beside each daemon runs a floor exporter reading the same engines (`_floors.py`):
each page fetched over a kept connection and scanned for the wanted vLLM lines,
nothing else. Its CPU per cycle and per added engine are what any Python exporter
pays here before it does anything with a page, measured in the same conditions.
`--layers scan,page,collector` also runs, beside the daemons with the fewest and
the most engines, floor exporters made of more of the daemon's parts (its HTTP
page read; its whole vLLM collector), which split the daemon's CPU per added
engine by layer.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from _floors import LAYERS
from _procs import (
    ProcessGroup,
    cpu_seconds,
    fmt_ratio,
    nvml_node_config,
    run_main,
    spawn_exporter,
    start_engines,
    start_idle_python,
    start_node_exporter,
    status_kb,
    wait_seconds,
)
from realparts.fake_nvml import FakeNvmlState, build_fake_nvml, subprocess_env
from realparts.ports import free_port
from realparts.samples import eventually, value
from realparts.samples import scrape as scrape_samples

TARGET_CPU_PERCENT = 0.2
TARGET_CPU_VS_NODE_EXPORTER = 2.0
TARGET_RSS_MB = 45.0
"""MB of 10^6 bytes."""
TARGET_PER_ENGINE_MS = 0.5
TARGET_ENGINES = 8
"""The node the CPU and memory targets are for."""
INTERVAL = 5.0
"""The default collection interval, which every daemon here runs at."""
GPUS = 8
FLOOR_NAMES = {"scan": "floor", "page": "floor+page", "collector": "floor+collector"}
"""How the floor exporter of each layer (`_floors.LAYERS`) is named in the tables."""
DAEMON_MODULES = ["asyncio", "ssl", "prometheus_client", "yaml"]
CATALOG_MODULES = [*DAEMON_MODULES, "genai_prices", "pydantic"]


@dataclass
class Watched:
    """One process under measurement and what was read about it."""

    name: str
    pid: int
    scrape_url: str | None = None
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    rss_kb: list[int] = field(default_factory=list)
    hwm_kb: int = 0
    scrape_bytes: int = 0
    floor: bool = False
    """A floor exporter: no page to scrape, its CPU shown all the same."""

    @property
    def shows_cpu(self) -> bool:
        return self.scrape_url is not None or self.floor

    def cpu_percent(self, seconds: float) -> float:
        return (self.cpu_end - self.cpu_start) / seconds * 100

    @property
    def rss_mean_mib(self) -> float:
        return sum(self.rss_kb) / len(self.rss_kb) / 1024

    @property
    def rss_max_mib(self) -> float:
        return max(self.rss_kb) / 1024


def scrape(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return len(response.read())


def measure(watched: list[Watched], seconds: float, scrape_every: float) -> float:
    """Sample RSS each second and scrape on cadence; return the elapsed wall time."""
    for proc in watched:
        proc.cpu_start = cpu_seconds(proc.pid)
    start = time.monotonic()
    next_scrape = start
    next_sample = start
    while (now := time.monotonic()) < start + seconds:
        if now >= next_scrape:
            for proc in watched:
                if proc.scrape_url:
                    proc.scrape_bytes = scrape(proc.scrape_url)
            next_scrape += scrape_every
        if now >= next_sample:
            for proc in watched:
                proc.rss_kb.append(status_kb(proc.pid, "VmRSS"))
            next_sample += 1.0
        time.sleep(max(0.0, min(next_scrape, next_sample, start + seconds) - time.monotonic()))
    elapsed = time.monotonic() - start
    for proc in watched:
        proc.cpu_end = cpu_seconds(proc.pid)
        proc.hwm_kb = status_kb(proc.pid, "VmHWM")
    return elapsed


@dataclass
class Daemon:
    urls: list[str]
    """The pages of the engines it reads."""
    port: int
    proc: Watched
    floors: dict[str, Watched] = field(default_factory=dict)
    """The floor exporters reading the same engines, by layer (`_floors.LAYERS`)."""
    catalog_mapped: bool = False
    """Whether pydantic's native library is mapped into the daemon: the price catalog's
    libraries loaded in-process."""

    @property
    def engines(self) -> int:
        return len(self.urls)


def maps_library(pid: int, name: str) -> bool:
    """Whether a file whose path contains `name` is mapped into `pid` (/proc/PID/maps)."""
    return name in Path(f"/proc/{pid}/maps").read_text()


def not_ready(daemon: Daemon) -> list[str]:
    """What the daemon does not read yet that the measurement needs it to read."""
    samples = scrape_samples(daemon.port)
    missing = []
    up = sum(value(samples, "llmcost_collector_up", target=url) == 1 for url in daemon.urls)
    if up < daemon.engines:
        missing.append(f"{up}/{daemon.engines} engines up")
    if value(samples, "llmcost_collector_up", collector="nvml") != 1:
        missing.append("NVML not up")
    gpus = sum(1 for (name, _) in samples if name == "llmcost_gpu_info")
    if gpus != GPUS:
        missing.append(f"{gpus}/{GPUS} GPUs listed")
    return missing


def wait_ready(daemon: Daemon) -> None:
    last: list[str] = []

    def ready() -> bool:
        last[:] = not_ready(daemon)
        return not last

    try:
        eventually(ready, timeout=60, what=daemon.proc.name, interval=0.5)
    except AssertionError:
        raise RuntimeError(
            f"{daemon.proc.name}: not ready within 60 s: {', '.join(last)}"
        ) from None


def compile_like_an_install() -> None:
    """Compile the package's modules as `pip install` does. A checkout installed in
    editable mode and run with PYTHONDONTWRITEBYTECODE compiles every module afresh in
    each process, which leaves about 2 MiB of RSS that no installed daemon carries."""
    import compileall

    import llm_cost_exporter
    import llm_cost_exporter.collectors

    for package in (llm_cost_exporter, llm_cost_exporter.collectors):
        compileall.compile_dir(str(Path(package.__file__).parent), quiet=1)


def start_daemons(
    group: ProcessGroup, tmp: Path, counts: list[int], layers: list[str]
) -> tuple[list[Daemon], Daemon | None]:
    """As many engines as the most asked for, each its own simulator process, and for
    each count a daemon reading the first that many of them and the 8 fake GPUs, and
    at TARGET_ENGINES one more that writes a state file; return them once each reads
    all it should."""
    from bench_nvml import H100, fake_gpus  # bench_nvml imports this module

    compile_like_an_install()
    nvml_state = tmp / "nvml-state.txt"
    FakeNvmlState(fake_gpus(H100, gpm=True)).write(nvml_state)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        **subprocess_env(build_fake_nvml(tmp / "lib"), nvml_state),
    }
    urls = start_engines(group, max(counts))

    def spawn(engines: int, state_file: Path | None = None) -> Daemon:
        port = free_port()
        config = nvml_node_config(port, urls[:engines], GPUS)
        name = f"daemon {engines} engine{'s' if engines > 1 else ''}"
        label = f"exporter-{engines}"
        if state_file is not None:
            config["state_file"] = str(state_file)
            name, label = f"{name} + state", f"{label}-state-file"
        proc = spawn_exporter(group, config, label, env)
        return Daemon(
            urls[:engines], port, Watched(name, proc.pid, f"http://127.0.0.1:{port}/metrics")
        )

    daemons = [spawn(engines) for engines in counts]
    with_state = (
        spawn(TARGET_ENGINES, tmp / "state" / "state.json") if TARGET_ENGINES in counts else None
    )
    for daemon in [*daemons, *([with_state] if with_state else [])]:
        wait_ready(daemon)
    for index, daemon in enumerate(daemons):
        outer = index in (0, len(daemons) - 1)
        for layer in layers:
            if layer == "scan" or outer:
                daemon.floors[layer] = start_floor(group, daemon.urls, layer)
    return daemons, with_state


def start_floor(group: ProcessGroup, urls: list[str], layer: str) -> Watched:
    """The floor exporter of `layer` on `urls`, once it has read them all once."""
    engines = len(urls)
    name = f"{FLOOR_NAMES[layer]} {engines} engine{'s' if engines > 1 else ''}"
    script = Path(__file__).with_name("_floors.py")
    argv = [sys.executable, str(script), "--layer", layer, "--interval", f"{INTERVAL:g}", *urls]
    proc = group.spawn(name, argv)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{group.log_tail(name)}")
        return "ready" in group.log_tail(name)

    eventually(ready, timeout=60, what=name, interval=0.2)
    return Watched(name, proc.pid, floor=True)


def print_table(
    watched: list[Watched], daemons: list[Daemon], node: Watched | None, elapsed: float
) -> None:
    print(
        f"\n{'process':<28}{'CPU % 1 core':>13}{'ms / 5 s':>10}{'RSS mean':>10}{'RSS max':>9}"
        f"{'VmHWM':>8}{'CPU/node':>10}{'RSS/node':>10}"
    )
    for proc in watched:
        shown = proc.shows_cpu
        cpu = proc.cpu_percent(elapsed)
        ratios = ["-", "-"]
        if node is not None and shown and proc is not node:
            ratios = [
                fmt_ratio(cpu, node.cpu_percent(elapsed)),
                fmt_ratio(proc.rss_mean_mib, node.rss_mean_mib),
            ]
        print(
            f"{proc.name:<28}{f'{cpu:.3f}' if shown else '-':>13}"
            f"{f'{cpu / 100 * INTERVAL * 1000:.1f}' if shown else '-':>10}"
            f"{proc.rss_mean_mib:>10.1f}{proc.rss_max_mib:>9.1f}{proc.hwm_kb / 1024:>8.1f}"
            f"{ratios[0]:>10}{ratios[1]:>10}"
        )
    print(
        f"(memory in MiB; CPU from /proc schedstat over {elapsed:.1f} s; "
        f"ms / 5 s: CPU per\n {INTERVAL:g} s cycle; node: node-exporter; bare python: imports "
        f"{', '.join(DAEMON_MODULES)} and sleeps;\n bare + catalog: also genai_prices and "
        "pydantic; floor: the same engines' pages fetched and scanned for the wanted lines,\n"
        " nothing else; floor+page: read by the daemon's HttpPage instead; floor+collector:\n"
        " by its VllmCollector, parsed and made readings (_floors.py))"
    )
    pages = ", ".join(f"{d.engines} engines {d.proc.scrape_bytes}" for d in daemons)
    print(f"page bytes: {pages}" + (f", node-exporter {node.scrape_bytes}" if node else ""))


def print_targets(daemons: list[Daemon], node: Watched | None, elapsed: float) -> None:
    target_mib = TARGET_RSS_MB * 1e6 / 1024**2

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print(
        f"\ntargets: CPU <= {TARGET_CPU_PERCENT:g}% of one core (<= "
        f"{TARGET_CPU_PERCENT / 100 * INTERVAL * 1000:g} ms per cycle) at {TARGET_ENGINES} "
        f"engines and <= {TARGET_CPU_VS_NODE_EXPORTER:g}x node-exporter's; RSS <= "
        f"{TARGET_RSS_MB:g} MB ({target_mib:.1f} MiB); <= {TARGET_PER_ENGINE_MS:g} ms per "
        "added engine per cycle"
    )
    for daemon in daemons:
        proc = daemon.proc
        cpu, rss = proc.cpu_percent(elapsed), proc.rss_max_mib
        line = f"  {proc.name:<19} RSS max {rss:.1f} MiB: {verdict(rss <= target_mib)}"
        if daemon.engines == TARGET_ENGINES:
            line += f"; CPU {cpu:.3f}%: {verdict(cpu <= TARGET_CPU_PERCENT)}"
            if node is not None:
                ratio = cpu / node.cpu_percent(elapsed) if node.cpu_end > node.cpu_start else 0
                line += (
                    f"; {fmt_ratio(cpu, node.cpu_percent(elapsed))} node-exporter's: "
                    f"{verdict(0 < ratio <= TARGET_CPU_VS_NODE_EXPORTER)}"
                )
        print(line)
    if len(daemons) > 1:
        first, last = daemons[0], daemons[-1]
        span = f"({first.engines} to {last.engines})"

        def slope(low: Watched, high: Watched) -> float:
            cpu = high.cpu_percent(elapsed) - low.cpu_percent(elapsed)
            return cpu / 100 * INTERVAL * 1000 / (last.engines - first.engines)

        per_engine = slope(first.proc, last.proc)
        print(
            f"  per added engine {span}: {per_engine:.3f} ms CPU "
            f"per cycle: {verdict(per_engine <= TARGET_PER_ENGINE_MS)}"
        )
        below: float | None = None
        for layer in LAYERS:
            low, high = first.floors.get(layer), last.floors.get(layer)
            if low is None or high is None:
                continue
            floor = slope(low, high)
            added = "" if below is None else f"{floor - below:+.3f} ms over the layer before; "
            print(
                f"  per added engine {span}, {FLOOR_NAMES[layer]}: {floor:.3f} ms CPU per cycle "
                f"({added}the daemon {fmt_ratio(per_engine, floor)} this, "
                f"{per_engine - floor:+.3f} ms)"
            )
            below = floor
    if node is None:
        print("node-exporter not installed (prometheus-node-exporter): comparison skipped")


def print_state_file_cost(
    with_state: Daemon, daemons: list[Daemon], node: Watched | None, elapsed: float
) -> None:
    """What the state file adds to the daemon at TARGET_ENGINES, which the targets leave
    out: the configuration they are for sets none."""
    (without,) = [d for d in daemons if d.engines == with_state.engines]
    cpu = with_state.proc.cpu_percent(elapsed)
    added = (cpu - without.proc.cpu_percent(elapsed)) / 100 * INTERVAL * 1000
    line = (
        f"  {with_state.proc.name} (state_file set, as the Helm chart and systemd unit "
        f"deploy it): CPU {cpu:.3f}%, {added:+.1f} ms per cycle for the state file, "
        f"RSS max {with_state.proc.rss_max_mib:.1f} MiB"
    )
    if node is not None and node.cpu_end > node.cpu_start:
        line += f"; {fmt_ratio(cpu, node.cpu_percent(elapsed))} node-exporter's"
    print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--engines", default="1,8,32", help="engine counts, one daemon each (1,8,32)"
    )
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before measuring (15)")
    parser.add_argument(
        "--seconds", type=float, default=120.0, help="measuring period in seconds (120)"
    )
    parser.add_argument(
        "--scrape-every", type=float, default=15.0, help="seconds between scrapes of /metrics (15)"
    )
    parser.add_argument(
        "--layers",
        default="scan",
        help="floor exporters to run: scan (beside every daemon), page and collector (beside "
        "the daemons with the fewest and most engines); comma-separated (scan)",
    )
    args = parser.parse_args(argv)
    layers = [layer for layer in LAYERS if layer in args.layers.split(",")]
    if not layers or set(args.layers.split(",")) - set(LAYERS):
        parser.error(f"--layers: some of {', '.join(LAYERS)}")
    counts = sorted({int(n) for n in args.engines.split(",")})
    if counts[0] < 1:
        parser.error("--engines: at least 1")

    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        group = ProcessGroup(Path(tmp))
        try:
            daemons, with_state = start_daemons(group, Path(tmp), counts, layers)
            watched = [d.proc for d in daemons] + ([with_state.proc] if with_state else [])
            watched += [f for layer in LAYERS for d in daemons if (f := d.floors.get(layer))]
            node = None
            started = start_node_exporter(group)
            if started is not None:
                url = f"http://127.0.0.1:{started[1]}/metrics"
                node = Watched("node-exporter", started[0].pid, url)
                watched.append(node)
            bare = Watched("bare python", start_idle_python(group, "bare", DAEMON_MODULES))
            catalog = Watched(
                "bare + catalog", start_idle_python(group, "catalog", CATALOG_MODULES)
            )
            watched += [bare, catalog]
            print(
                f"daemons at {', '.join(map(str, counts))} simulated engines, each on {GPUS} "
                f"fake-NVML GPUs, interval {INTERVAL:g} s (default), side by side;\n"
                f"warm-up {args.warmup:g} s, measuring {args.seconds:g} s with a scrape every "
                f"{args.scrape_every:g} s ...",
                flush=True,
            )
            wait_seconds(args.warmup)
            elapsed = measure(watched, args.seconds, args.scrape_every)
            for daemon in [*daemons, *([with_state] if with_state else [])]:
                if missing := not_ready(daemon):
                    raise RuntimeError(f"{daemon.proc.name} degraded: {', '.join(missing)}")
                daemon.catalog_mapped = maps_library(daemon.proc.pid, "pydantic_core")
            if not maps_library(catalog.pid, "pydantic_core"):
                raise RuntimeError("pydantic_core is not mapped where pydantic is imported")
        finally:
            group.close()

    print_table(watched, daemons, node, elapsed)
    print_targets(daemons, node, elapsed)
    if with_state is not None:
        print_state_file_cost(with_state, daemons, node, elapsed)
    for daemon in daemons:
        ours = daemon.proc
        own_extra = ours.rss_mean_mib - bare.rss_mean_mib
        print(
            f"{ours.name}: RSS over bare python {fmt_ratio(ours.rss_mean_mib, bare.rss_mean_mib)}"
            f" (+{own_extra:.1f} MiB for the daemon's own code, pynvml and state)"
        )
    catalog_extra = catalog.rss_mean_mib - bare.rss_mean_mib
    loaded = [d.proc.name for d in daemons if d.catalog_mapped]
    print(
        f"genai_prices + pydantic would add {catalog_extra:.1f} MiB; pydantic's native library "
        + (f"IS mapped in {', '.join(loaded)}" if loaded else "is mapped in no daemon")
        + " (/proc/PID/maps)"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
