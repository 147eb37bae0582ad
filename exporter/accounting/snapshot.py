"""The node's counters as one JSON-able snapshot, and back: what the state file holds.

Every exported counter is in it (spend by component, owner and pod, tokens and
API-equivalent by model and kind, collector errors, engine restarts and dips,
rejected series, GPU errors and energy, the downtime billed), with what
resuming needs: each engine's last raw counter values and `_created` time, the
hourly rates to bill the downtime at, learned capacity, and the identity of
the node it belongs to.
Each part serializes itself (`to_state`/`restore` beside the state it holds);
this module only gathers them. Restoring is all or nothing: a malformed
snapshot raises StateError before anything changes.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from llm_cost_exporter.accounting import persisted
from llm_cost_exporter.accounting.accrual import CostAccrual, Downtime, parse_pod_amounts
from llm_cost_exporter.accounting.capacity import LearnedCapacity
from llm_cost_exporter.accounting.gpu_fleet import parse_gpu_state
from llm_cost_exporter.accounting.node import NodeState, TargetStatus
from llm_cost_exporter.accounting.persisted import StateError
from llm_cost_exporter.accounting.tokens import TokenLedger

__all__ = ["StateError", "identity", "restore", "snapshot"]


def identity(state: NodeState) -> dict[str, Any]:
    """What the state belongs to: its currency and the node's GPUs (by NVML UUID).

    The host name is kept to say where a foreign file came from; it does not
    decide (a Kubernetes pod's host name changes with every replacement).
    """
    gpus = sorted(s.gpu.uuid for s in state.fleet.gpus.values() if s.gpu.source == "nvml")
    return {"currency": state.config.currency, "gpus": gpus, "host": socket.gethostname()}


def foreign_reason(saved: Any, ours: Mapping[str, Any]) -> str | None:
    """Why a saved identity is not this node's, or None if it may be."""
    saved = persisted.mapping(saved)
    currency = saved.get("currency")
    if currency != ours["currency"]:
        return f"its money is in {currency}, this exporter's in {ours['currency']}"
    saved_gpus = set(saved.get("gpus") or ())
    if saved_gpus and ours["gpus"] and not saved_gpus & set(ours["gpus"]):
        return f"none of its GPUs is on this node (it was written on {saved.get('host')!r})"
    return None


def snapshot(state: NodeState) -> dict[str, Any]:
    """Everything `restore` needs, as fresh JSON-able values (safe to write from a thread)."""
    return {
        "cost": state.accrual.to_state(),
        "tokens": state.tokens.to_state(),
        "targets": [status.to_state() for status in state.targets.values()]
        + [status.to_state() for status in state.resumed_targets.values()],
        "gpus": state.fleet.to_state(),
        "model_limit_exceeded": state.model_limits.to_state(),
        "capacity": state.learned.to_state() if state.learned is not None else None,
        "downtime": {
            "billed_seconds": state.downtime_billed_seconds,
            "billed_cost": state.downtime_billed_cost,
        },
        "day": {
            "day": state.day,
            "spend_at_start": state.spend_at_day_start,
            "started_wall": state.day_started_wall,
        },
    }


def _target(data: Mapping[str, Any]) -> TargetStatus:
    status = TargetStatus(
        persisted.text(data.get("collector"), "collector"),
        persisted.text(data.get("target"), "target"),
        engine=False,
    )
    errors = persisted.amounts(data.get("errors"), "errors")
    status.errors.update({reason: persisted.whole(n, "errors") for reason, n in errors.items()})
    status.restarts = persisted.whole(data.get("restarts"), "restarts")
    status.dips = persisted.whole(data.get("dips"), "dips")
    rejected = persisted.amounts(data.get("rejected", {}), "rejected")
    status.rejected.update(
        {r: persisted.whole(n, "rejected") for r, n in rejected.items() if r in status.rejected}
    )
    models = data.get("models")
    if not isinstance(models, list):
        raise StateError("models: expected a list")
    status.models = tuple(persisted.text(m, "models") for m in models)
    return status


def restore(state: NodeState, data: Any, saved_at: float) -> None:
    """Resume `state` from `snapshot`'s output saved at wall time `saved_at`.

    The first cycle then bills the downtime since `saved_at` at the saved
    hourly rates (see NodeState.advance). Raises StateError, changing nothing,
    if `data` is malformed.
    """
    data = persisted.mapping(data)
    cost = persisted.section(data, "cost")
    accrual = CostAccrual(state.config.cost, state.fleet)
    accrual.restore(cost)
    downtime = Downtime(
        saved_at,
        persisted.amounts(cost.get("hourly"), "hourly"),
        persisted.amounts(cost.get("owner_hourly"), "owner_hourly"),
        parse_pod_amounts(cost.get("pod_hourly", []), "pod_hourly"),
    )
    tokens = TokenLedger(state.tokens.model_prices, state.tokens.default_price, state.started_wall)
    tokens.restore(persisted.section(data, "tokens"))
    targets = [_target(entry) for entry in persisted.items(data, "targets")]
    gpus = parse_gpu_state(persisted.section(data, "gpus"))
    exceeded = persisted.amounts(data.get("model_limit_exceeded"), "model_limit_exceeded")
    exceeded_counts = {t: persisted.whole(n, "model_limit_exceeded") for t, n in exceeded.items()}
    learned = None
    if state.learned is not None and data.get("capacity") is not None:
        learned = LearnedCapacity(state.learned.window_seconds)
        learned.restore(data["capacity"])
    billed = persisted.section(data, "downtime")
    billed_seconds = persisted.amount(billed.get("billed_seconds"), "billed_seconds")
    billed_cost = persisted.amount(billed.get("billed_cost"), "billed_cost")
    day = persisted.section(data, "day")
    day_name = persisted.text(day.get("day"), "day")
    day_spend = persisted.amount(day.get("spend_at_start"), "spend_at_start")
    day_started = persisted.amount(day.get("started_wall"), "started_wall")

    state.accrual, state.tokens, state.downtime = accrual, tokens, downtime
    state.started_wall = tokens.started_wall
    state.resumed_targets = {(t.collector, t.target): t for t in targets}
    state.fleet.restore(gpus)
    state.model_limits.restore(exceeded_counts)
    if learned is not None:
        state.learned = learned
    state.downtime_billed_seconds, state.downtime_billed_cost = billed_seconds, billed_cost
    if day_name == state.day:
        state.spend_at_day_start, state.day_started_wall = day_spend, day_started
    else:
        state.spend_at_day_start = accrual.spend_total
        state.day_started_wall = max(saved_at, _day_start(state.day))


def _day_start(day: str) -> float:
    return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()


def restore_capacity(state: NodeState, data: Any) -> None:
    """Resume only the learned capacity, from the capacity-only file of earlier versions."""
    if state.learned is None:
        return
    learned = LearnedCapacity(state.learned.window_seconds)
    learned.restore(data)
    state.learned = learned
