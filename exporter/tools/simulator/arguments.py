"""The `simulate` command's options, and the engines they describe.

Apart from the server, so that building the command line (which every command
does) does not load the HTTP server library.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from .engine import ROLES, SimulatedEngine
from .formats import PAGE_FORMATS
from .profiles import PROFILE_NAMES, SteadyProfile, TrafficProfile, make_profile

DEFAULT_LISTEN_ADDRESS = "127.0.0.1:8000"
DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def _listed(values: list[str] | None, default: str) -> list[str]:
    """Flatten repeated and comma-separated option values."""
    names = [name.strip() for value in values or [] for name in value.split(",")]
    return [name for name in names if name] or [default]


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `simulate` command's options to `parser`."""
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=os.environ.get("LLMCOST_SIM_LISTEN_ADDRESS", DEFAULT_LISTEN_ADDRESS),
        help="host:port to serve on (env LLMCOST_SIM_LISTEN_ADDRESS; default %(default)s)",
    )
    parser.add_argument(
        "--profile",
        choices=PROFILE_NAMES,
        default="diurnal",
        help="traffic profile (default %(default)s)",
    )
    parser.add_argument(
        "--peak-to-trough",
        type=float,
        default=10.0,
        help="diurnal profile: business-hours peak over night/weekend trough (default %(default)g)",
    )
    parser.add_argument(
        "--level",
        type=float,
        default=None,
        help=f"steady profile: share of capacity demanded (default {SteadyProfile.level:g})",
    )
    parser.add_argument(
        "--acceleration",
        type=float,
        default=1.0,
        help="simulated seconds per wall-clock second (default %(default)g)",
    )
    parser.add_argument(
        "--tokens-in-wall-time",
        action="store_true",
        help="accelerate only the traffic's shape; tokens/s stay in real time",
    )
    parser.add_argument(
        "--engines", type=int, default=1, help="number of engines (default %(default)s)"
    )
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="served model name; repeat or comma-separate, engine i uses model i mod count "
        f"(default {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--capacity",
        type=float,
        default=2000.0,
        help="tokens per second one engine can serve (default %(default)g)",
    )
    parser.add_argument(
        "--restart-every",
        type=float,
        default=None,
        help="restart each engine every this many simulated seconds, its counters reset "
        "(default: never)",
    )
    parser.add_argument(
        "--page-format",
        action="append",
        default=None,
        help="the engine's page: v1 (vLLM 0.32), v0 (vLLM 0.6, V0 engine), "
        f"{', '.join(f for f in PAGE_FORMATS if f not in ('v1', 'v0'))}; repeat or "
        "comma-separate, engine i uses format i mod count (default v1)",
    )
    parser.add_argument(
        "--role",
        action="append",
        default=None,
        help="the engine's part in disaggregated serving: combined (prefill and decode in "
        "one engine), prefill (computes the prompt, sends its KV cache on) or decode "
        "(receives it, generates the output); a prefill and a decode engine stand for one "
        "pair under a steady or diurnal profile; repeat or comma-separate, engine i takes role "
        "i mod count (default combined; v1 pages only)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for spiky bursts and noise (default %(default)s)"
    )


def _profile_for(args: argparse.Namespace, index: int) -> TrafficProfile:
    """Each engine's profile; spiky engines get different bursts so they do not sync up."""
    name = args.profile
    params: dict[str, Any] = {}
    if name == "steady" and args.level is not None:
        params["level"] = args.level
    elif name == "diurnal":
        params["peak_to_trough"] = args.peak_to_trough
    elif name == "spiky":
        params["seed"] = args.seed + index
    return make_profile(name, **params)


def build_engines_from_args(
    args: argparse.Namespace, clock: Callable[[], float] = time.time
) -> list[SimulatedEngine]:
    """The engines described by parsed `simulate` arguments."""
    if args.engines < 1:
        raise ValueError("--engines must be at least 1")
    models = _listed(args.model, DEFAULT_MODEL)
    formats = _listed(args.page_format, "v1")
    unknown = [f for f in formats if f not in PAGE_FORMATS]
    if unknown:
        raise ValueError(
            f"unknown --page-format {unknown[0]!r}; choose from {', '.join(PAGE_FORMATS)}"
        )
    roles = _listed(getattr(args, "role", None), "combined")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown --role {unknown[0]!r}; choose from {', '.join(ROLES)}")
    return [
        SimulatedEngine(
            models[i % len(models)],
            args.capacity,
            _profile_for(args, i),
            acceleration=args.acceleration,
            tokens_in_wall_time=getattr(args, "tokens_in_wall_time", False),
            restart_every=args.restart_every,
            page_format=formats[i % len(formats)],
            role=roles[i % len(roles)],
            clock=clock,
            seed=args.seed + i,
        )
        for i in range(args.engines)
    ]
