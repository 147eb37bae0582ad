"""What engine discovery and GPU-to-pod attribution add to the daemon's CPU and memory.

On a Kubernetes node the daemon may find its engines through the Kubernetes API
(`kubernetes.discovery`: one list, then a long watch over TLS) and learn which pod
holds each GPU from the kubelet's pod-resources API (`kubernetes.pod_resources`: a
gRPC call every cycle, and gRPC loaded into the daemon once the socket exists). This
runs, side by side over the same period so load from elsewhere weighs on all alike,
four copies of the daemon on one 8-engine, 8-GPU node at the default 5 s interval,
each scraped every 15 s:

- the reference: the 8 engines configured, one GPU pinned to each, nothing of
  Kubernetes;
- discovery only: the same 8 engines found as annotated pods in the fake API server;
- pod-resources only: the configured engines, and the fake kubelet saying which of
  the 8 pods holds which GPU;
- both, as a Kubernetes node runs it.

All four read the same simulated engines and the same 8 fake-NVML GPUs. Two bare
Pythons give the floor of what gRPC weighs on its own: one imports the daemon's
libraries, the other those and grpc with google.protobuf.

Only the API server is fake (tests/realparts/fake_kubernetes.py, real TLS and bearer
token); the kubelet is a real gRPC server of the pod-resources API. Both run in this
process, so their CPU is not the daemon's. The fake API server sends an idle watch a
BOOKMARK every second where a real one sends about one a minute, so the discovery
figures are an upper bound on the watch's cost.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _procs import (
    ProcessGroup,
    engine_urls,
    fmt_ratio,
    run_main,
    spawn_exporter,
    start_idle_python,
    start_simulator,
    status_kb,
    wait_seconds,
)
from bench_daemon import DAEMON_MODULES, Watched, measure
from bench_nvml import GPUS, H100, daemon_config, fake_gpus
from realparts.fake_kubernetes import FakeKubernetes, scraped_pod
from realparts.fake_nvml import FakeNvmlState, build_fake_nvml, default_gpu_uuid, subprocess_env
from realparts.kubelet import FakeKubelet, pod
from realparts.ports import free_port
from realparts.samples import Samples, eventually, scrape, value

TARGET_CPU_PERCENT = 0.3
TARGET_RSS_MB = 50.0
"""The design's budget for an 8-GPU, 8-engine node at default intervals (MB, 10^6 bytes)."""
GRPC_MODULES = [*DAEMON_MODULES, "grpc", "google.protobuf.message"]
NODE = "gpu-node-1"
NAMESPACE = "serving"
INTERVAL = 5.0
"""The default collection interval, which every daemon here runs at."""


@dataclass(frozen=True)
class Variant:
    """One daemon under measurement: which Kubernetes features it has on."""

    name: str
    discovery: bool
    pod_resources: bool


VARIANTS = (
    Variant("reference", discovery=False, pod_resources=False),
    Variant("discovery only", discovery=True, pod_resources=False),
    Variant("pod-resources only", discovery=False, pod_resources=True),
    Variant("discovery + pod-res", discovery=True, pod_resources=True),
)


def pod_name(index: int) -> str:
    return f"vllm-{index}"


def variant_config(
    variant: Variant, sim_port: int, api: FakeKubernetes, kubelet: FakeKubelet
) -> dict[str, Any]:
    """The NVML node of bench_nvml at the default interval and timeout, with `variant`'s
    Kubernetes features (and never the host's own kubelet socket)."""
    config = daemon_config(free_port(), sim_port, nvml=True, interval=INTERVAL)
    del config["collection"]["timeout"]
    kubernetes: dict[str, Any] = {"pod_resources": {"enabled": False}}
    if variant.discovery:
        del config["engines"]  # the pods' GPUs come from the kubelet, if at all
        kubernetes["discovery"] = api.discovery_settings(node_name=NODE)
    if variant.pod_resources:
        kubernetes["pod_resources"] = {"socket": str(kubelet.socket_path)}
    config["kubernetes"] = kubernetes
    return config


def port_of(config: dict[str, Any]) -> int:
    return int(config["web"]["listen_address"].rpartition(":")[2])


def not_ready(variant: Variant, samples: Samples, sim_port: int) -> list[str]:
    """What `variant`'s daemon does not do yet that the measurement needs it to do."""
    missing = []
    engines = engine_urls(sim_port, GPUS)
    up = sum(value(samples, "llmcost_collector_up", target=url) == 1 for url in engines)
    if up < GPUS:
        missing.append(f"{up}/{GPUS} engines up")
    collectors = ["nvml"]
    collectors += ["kubernetes"] * variant.discovery + ["pod_resources"] * variant.pod_resources
    for collector in collectors:
        if value(samples, "llmcost_collector_up", collector=collector) != 1:
            missing.append(f"{collector} not up")
    if variant.pod_resources:
        held = sum(
            value(samples, "llmcost_gpu_info", gpu=str(i), pod=pod_name(i)) == 1
            for i in range(GPUS)
        )
        if held < GPUS:
            missing.append(f"{held}/{GPUS} GPUs attributed to their pods")
    return missing


def wait_ready(variant: Variant, port: int, sim_port: int) -> None:
    last: list[str] = []

    def ready() -> bool:
        last[:] = not_ready(variant, scrape(port), sim_port)
        return not last

    try:
        eventually(ready, timeout=60, what=variant.name, interval=0.5)
    except AssertionError:
        raise RuntimeError(f"{variant.name}: not ready within 60 s: {', '.join(last)}") from None


@dataclass
class Extra:
    """What `measure` does not read: where the memory is, and the page."""

    anon_kb: int = 0
    file_kb: int = 0
    threads: int = 0
    series: int = 0


def read_extra(proc: Watched, port: int | None) -> Extra:
    return Extra(
        anon_kb=status_kb(proc.pid, "RssAnon"),
        file_kb=status_kb(proc.pid, "RssFile"),
        threads=status_kb(proc.pid, "Threads"),
        series=len(scrape(port)) if port is not None else 0,
    )


def print_table(
    rows: list[tuple[Watched, Extra]], elapsed: float, reference: Watched, ref_extra: Extra
) -> None:
    print(
        f"\n{'process':<21}{'CPU % 1 core':>13}{'RSS mean':>10}{'RSS max':>9}{'VmHWM':>8}"
        f"{'RssAnon':>9}{'RssFile':>9}{'threads':>9}{'series':>8}"
    )
    for proc, extra in rows:
        cpu = f"{proc.cpu_percent(elapsed):.3f}" if proc.scrape_url else "-"
        series = str(extra.series) if proc.scrape_url else "-"
        print(
            f"{proc.name:<21}{cpu:>13}{proc.rss_mean_mib:>10.1f}{proc.rss_max_mib:>9.1f}"
            f"{proc.hwm_kb / 1024:>8.1f}{extra.anon_kb / 1024:>9.1f}{extra.file_kb / 1024:>9.1f}"
            f"{extra.threads:>9}{series:>8}"
        )
    print(
        f"(memory in MiB; CPU from /proc schedstat over {elapsed:.1f} s;\n"
        " RssAnon, RssFile, threads and series read once at the end;\n bare python: imports "
        f"{', '.join(DAEMON_MODULES)} and sleeps; bare + grpc: also grpc and google.protobuf)"
    )

    print(f"\nagainst the reference ({reference.name}):")
    ref_cpu = reference.cpu_percent(elapsed)
    for proc, extra in rows:
        if not proc.scrape_url or proc is reference:
            continue
        cpu = proc.cpu_percent(elapsed)
        per_cycle_ms = (cpu - ref_cpu) / 100 * INTERVAL * 1000
        print(
            f"  {proc.name:<21} CPU {cpu - ref_cpu:+.3f} points ({fmt_ratio(cpu, ref_cpu)}; "
            f"{per_cycle_ms:+.1f} ms a cycle), "
            f"RSS mean {proc.rss_mean_mib - reference.rss_mean_mib:+.1f} MiB "
            f"({fmt_ratio(proc.rss_mean_mib, reference.rss_mean_mib)}), "
            f"VmHWM {(proc.hwm_kb - reference.hwm_kb) / 1024:+.1f}, "
            f"RssAnon {(extra.anon_kb - ref_extra.anon_kb) / 1024:+.1f}, "
            f"RssFile {(extra.file_kb - ref_extra.file_kb) / 1024:+.1f} MiB, "
            f"{extra.threads - ref_extra.threads:+d} threads, "
            f"{extra.series - ref_extra.series:+d} series"
        )


def print_budget(rows: list[tuple[Watched, Extra]], elapsed: float) -> None:
    target_mib = TARGET_RSS_MB * 1e6 / 1024**2
    print(
        f"\nbudget: CPU <= {TARGET_CPU_PERCENT:g}% of one core, RSS <= {TARGET_RSS_MB:g} MB "
        f"({target_mib:.1f} MiB)"
    )
    for proc, _ in rows:
        if not proc.scrape_url:
            continue
        cpu, rss = proc.cpu_percent(elapsed), proc.rss_max_mib
        print(
            f"  {proc.name:<21} CPU {cpu:.3f}%: {'met' if cpu <= TARGET_CPU_PERCENT else 'MISSED'}"
            f"; RSS max {rss:.1f} MiB: {'met' if rss <= target_mib else 'MISSED'}"
        )


def start_daemons(
    group: ProcessGroup,
    env: dict[str, str],
    sim_port: int,
    api: FakeKubernetes,
    kubelet: FakeKubelet,
) -> list[tuple[Variant, Watched, int]]:
    """Put the 8 engine pods in the API server and their GPUs in the kubelet's answer, then
    start every variant; return each with its process and port once it reads all it should."""
    kubelet.answer([pod(NAMESPACE, pod_name(i), default_gpu_uuid(i)) for i in range(GPUS)])
    for i in range(GPUS):
        path = f"/engine/{i}/metrics"
        api.add_pod(scraped_pod(pod_name(i), sim_port, path, namespace=NAMESPACE, node=NODE))
    daemons = []
    for variant in VARIANTS:
        config = variant_config(variant, sim_port, api, kubelet)
        port = port_of(config)
        slug = variant.name.replace(" ", "-").replace("+", "and")
        proc = spawn_exporter(group, config, f"exporter-{slug}", env)
        daemons.append(
            (variant, Watched(variant.name, proc.pid, f"http://127.0.0.1:{port}/metrics"), port)
        )
    for variant, _, port in daemons:
        wait_ready(variant, port, sim_port)
    return daemons


def run(tmp: Path, args: argparse.Namespace) -> tuple[list[tuple[Watched, Extra]], float]:
    """Every process's readings (the daemons in VARIANTS order, then the two bare Pythons)
    and the measuring period's length."""
    nvml_state = tmp / "nvml-state.txt"
    FakeNvmlState(fake_gpus(H100, gpm=True)).write(nvml_state)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        **subprocess_env(build_fake_nvml(tmp / "lib"), nvml_state),
    }
    group = ProcessGroup(tmp)
    with FakeKubernetes(tmp) as api, FakeKubelet(tmp / "kubelet.sock") as kubelet:
        try:
            sim_port = start_simulator(group, GPUS)
            daemons = start_daemons(group, env, sim_port, api, kubelet)
            bare = Watched("bare python", start_idle_python(group, "bare", DAEMON_MODULES))
            grpc = Watched("bare + grpc", start_idle_python(group, "grpc", GRPC_MODULES))
            print(
                f"{GPUS} simulated engines, {GPUS} fake-NVML GPUs, interval {INTERVAL:g} s "
                f"(default), warm-up {args.warmup:g} s,\nmeasuring {args.seconds:g} s with a "
                f"scrape every {args.scrape_every:g} s; the {len(daemons)} daemons side by "
                "side ...",
                flush=True,
            )
            wait_seconds(args.warmup)
            watched = [proc for _, proc, _ in daemons] + [bare, grpc]
            elapsed = measure(watched, args.seconds, args.scrape_every)
            ports = {proc.pid: port for _, proc, port in daemons}
            rows = [(proc, read_extra(proc, ports.get(proc.pid))) for proc in watched]
            for variant, _, port in daemons:
                if missing := not_ready(variant, scrape(port), sim_port):
                    raise RuntimeError(f"{variant.name} degraded: {', '.join(missing)}")
        finally:
            group.close()
    return rows, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before measuring")
    parser.add_argument("--seconds", type=float, default=120.0, help="measuring period")
    parser.add_argument(
        "--scrape-every", type=float, default=15.0, help="seconds between scrapes of /metrics"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-k8s-") as name:
        rows, elapsed = run(Path(name), args)

    reference, ref_extra = rows[0]
    print_table(rows, elapsed, reference, ref_extra)
    (bare, bare_extra), (grpc, grpc_extra) = rows[-2:]
    print(
        f"\nimporting grpc and google.protobuf alone: RSS mean "
        f"{grpc.rss_mean_mib - bare.rss_mean_mib:+.1f} MiB "
        f"(RssAnon {(grpc_extra.anon_kb - bare_extra.anon_kb) / 1024:+.1f}, "
        f"RssFile {(grpc_extra.file_kb - bare_extra.file_kb) / 1024:+.1f} MiB), "
        f"{grpc_extra.threads - bare_extra.threads:+d} threads"
    )
    print_budget(rows, elapsed)
    return 0


if __name__ == "__main__":
    run_main(main)
