"""The planner's knobs on the command line, shared by ``plan`` and ``report``."""

from __future__ import annotations

import argparse

from llm_cost_exporter.tools.planner.model import Knobs
from llm_cost_exporter.tools.planner.replica import DEFAULT_OVERHEAD, ReplicaSpec
from llm_cost_exporter.tools.report.build import Planning

DEFAULTS = Knobs()


def add_planning_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "what would have been cheaper",
        "knobs of the policies; a replica is one node as run unless described here",
    )
    group.add_argument(
        "--ceiling",
        type=float,
        default=DEFAULTS.ceiling,
        metavar="RATIO",
        help="highest planned utilization of a kept replica, for latency headroom "
        f"(default {DEFAULTS.ceiling})",
    )
    group.add_argument(
        "--floor",
        type=int,
        default=DEFAULTS.floor,
        metavar="REPLICAS",
        help=f"replicas the self-hosted policies always keep (default {DEFAULTS.floor})",
    )
    group.add_argument(
        "--min-run",
        type=int,
        default=DEFAULTS.min_run,
        metavar="HOURS",
        help=f"hours a scheduled scale step lasts at least (default {DEFAULTS.min_run})",
    )
    group.add_argument(
        "--capacity",
        type=float,
        metavar="TOKENS_PER_S",
        help="tokens per second one replica serves at 100%% load (default: what the "
        "exporters report; required with --replica-gpu-price or --csv)",
    )
    group.add_argument(
        "--replica-gpu-price",
        type=float,
        metavar="PRICE",
        help="price of one GPU-hour: plan with this replica instead of the node as run",
    )
    group.add_argument(
        "--replica-gpus", type=int, default=1, metavar="N", help="GPUs per replica (default 1)"
    )
    group.add_argument(
        "--replica-gpu", default="GPU", metavar="NAME", help="GPU type, for the wording"
    )
    group.add_argument(
        "--overhead",
        type=float,
        default=DEFAULT_OVERHEAD,
        metavar="RATIO",
        help="overhead on the GPU cost of a described replica "
        f"(ops, storage; default {DEFAULT_OVERHEAD})",
    )
    group.add_argument(
        "--fixed-per-month",
        type=float,
        default=0.0,
        metavar="AMOUNT",
        help="fixed monthly cost per described replica (default 0)",
    )


def planning_from(args: argparse.Namespace) -> Planning:
    """The knobs and replica the arguments give; ValueError names a bad one."""
    if not 0 < args.ceiling <= 1:
        raise ValueError("--ceiling: expected a ratio above 0 and at most 1")
    if args.floor < 0:
        raise ValueError("--floor: expected 0 or more replicas")
    if not 1 <= args.min_run <= 168:
        raise ValueError("--min-run: expected 1 to 168 hours")
    if args.capacity is not None and not args.capacity > 0:
        raise ValueError("--capacity: expected a positive number of tokens per second")
    knobs = Knobs(ceiling=args.ceiling, floor=args.floor, min_run=args.min_run)
    if args.replica_gpu_price is None:
        return Planning(knobs=knobs, capacity=args.capacity)
    if args.capacity is None:
        raise ValueError(
            "--capacity: required with --replica-gpu-price (every policy scales on it)"
        )
    replica = ReplicaSpec(
        gpu_price=args.replica_gpu_price,
        capacity=args.capacity,
        gpus=args.replica_gpus,
        gpu=args.replica_gpu,
        overhead=args.overhead,
        fixed_per_month=args.fixed_per_month,
    )
    return Planning(knobs=knobs, replica=replica)
