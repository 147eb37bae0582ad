"""Which pods hold the node's GPUs, as each pod's share of each GPU's cost.

The kubelet says which container holds which device (collectors/kubelet); this turns
that into shares that sum to 1 per GPU:

- a whole GPU is split evenly among the replicas held of it: one holder alone pays
  for all of it; with time-slicing each replica held (`GPU-...::N`) pays an equal part;
- a GPU in MIG mode is split by compute slices: a MIG device of profile `Ng` holds
  N of the GPU's slices (NVML's max MIG device count: 7 on A100/H100, 4 on A30), its
  replicas splitting that evenly; without a profile (the single MIG strategy lists MIG
  devices as `nvidia.com/gpu`) each MIG device holds an equal part of the GPU's
  instances; the slices nobody holds go to (unallocated);
- a GPU nobody holds is (unallocated) whole.

When the kubelet stops answering, its last answer stands for MAPPING_MAX_AGE seconds
(the kubelet assigns devices, so none change hands while it is down), then every GPU
becomes (unallocated) until it answers again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from llm_cost_exporter.accounting.gpu_fleet import GpuStatus
from llm_cost_exporter.collectors.readings import DeviceHold, GpuReading, PodDevices, PodHolder

log = logging.getLogger(__name__)

UNALLOCATED = "(unallocated)"
"""Namespace, pod and container of the GPU cost no pod holds (never an empty label)."""
PodKey = tuple[str, str]
"""(namespace, pod)."""
UNALLOCATED_POD: PodKey = (UNALLOCATED, UNALLOCATED)
UNALLOCATED_HOLDER = PodHolder(UNALLOCATED, UNALLOCATED, UNALLOCATED)
MAPPING_MAX_AGE = 300.0
"""Seconds the kubelet's last answer stands while it does not answer."""

MAX_UNKNOWN = 64
"""Unknown device IDs logged (once each) over the exporter's life."""

_LEGACY_MIG = re.compile(r"MIG-(GPU-[^/]+)/\d+/\d+$")
"""MIG device IDs of drivers before R470: the parent GPU's UUID, GPU and compute instance."""
_INDEX_MIG = re.compile(r"(\d+):\d+$")
"""MIG device IDs under the device plugin's index strategy: GPU index, MIG index."""


@dataclass(frozen=True)
class GpuPods:
    """Who holds one GPU: each pod's share of its cost, and the containers holding it."""

    shares: Mapping[PodKey, float]
    holders: tuple[PodHolder, ...]


UNALLOCATED_GPU = GpuPods({UNALLOCATED_POD: 1.0}, (UNALLOCATED_HOLDER,))


def split_gpus(
    gpus: Mapping[str, GpuStatus],
    devices: PodDevices,
    mig_readings: Mapping[str, GpuReading] | None = None,
) -> tuple[dict[str, GpuPods], set[str]]:
    """Each GPU's pods (by GPU key), and the device IDs that match none of the GPUs.

    `mig_readings` are the last readings that listed each GPU's MIG devices, for a GPU
    whose reading of this cycle does not (it fell off the bus)."""
    readings = {
        key: _mig_reading(status, (mig_readings or {}).get(key)) for key, status in gpus.items()
    }
    parents = _parents(gpus, readings)
    whole: dict[str, list[DeviceHold]] = {}
    mig: dict[str, dict[str, list[DeviceHold]]] = {}
    unknown = set()
    for device, holds in devices.holds.items():
        key = parents.get(device)
        if key is not None and device in (gpus[key].gpu.uuid, str(gpus[key].gpu.index)):
            whole.setdefault(key, []).extend(holds)
            continue
        key = key or _mig_parent(device, parents)
        if key is None:
            unknown.add(device)
            continue
        mig.setdefault(key, {})[device] = list(holds)
    result = {}
    for key in gpus:
        if key in mig:
            result[key] = _by_slices(readings[key], mig[key])
        elif key in whole:
            result[key] = _evenly(whole[key])
        else:
            result[key] = UNALLOCATED_GPU
    return result, unknown


def _mig_reading(status: GpuStatus, last: GpuReading | None) -> GpuReading | None:
    reading = status.reading
    if reading is not None and (reading.mig_instances or reading.healthy):
        return reading
    return last or reading


def _parents(
    gpus: Mapping[str, GpuStatus], readings: Mapping[str, GpuReading | None]
) -> dict[str, str]:
    """GPU key by each ID a device plugin may list the GPU or its MIG devices by."""
    parents = {}
    for key, status in gpus.items():
        gpu = status.gpu
        if gpu.source != "nvml":
            continue
        parents[gpu.uuid] = key
        parents[str(gpu.index)] = key
        reading = readings[key]
        for instance in reading.mig_instances if reading else ():
            if instance.uuid:
                parents[instance.uuid] = key
    return parents


def _mig_parent(device: str, parents: Mapping[str, str]) -> str | None:
    for pattern in (_LEGACY_MIG, _INDEX_MIG):
        found = pattern.match(device)
        if found:
            return parents.get(found[1])
    return None


def _evenly(holds: list[DeviceHold]) -> GpuPods:
    shares: dict[PodKey, float] = {}
    for hold in holds:
        pod = (hold.holder.namespace, hold.holder.pod)
        shares[pod] = shares.get(pod, 0.0) + 1.0 / len(holds)
    return GpuPods(shares, _holders(holds))


def _by_slices(reading: GpuReading | None, devices: Mapping[str, list[DeviceHold]]) -> GpuPods:
    slices = reading.mig_slices if reading is not None else None
    instances = max(len(reading.mig_instances) if reading is not None else 0, len(devices))
    shares: dict[PodKey, float] = {}
    for holds in devices.values():
        profile = holds[0].slices
        part = profile / slices if profile and slices else 1.0 / instances
        for hold in holds:
            pod = (hold.holder.namespace, hold.holder.pod)
            shares[pod] = shares.get(pod, 0.0) + part / len(holds)
    held = sum(shares.values())
    if held > 1.0:  # more slices listed than the GPU has: shares in proportion
        shares = {pod: share / held for pod, share in shares.items()}
    elif held < 1.0:
        shares[UNALLOCATED_POD] = 1.0 - held
    holds = [hold for group in devices.values() for hold in group]
    return GpuPods(shares, _holders(holds))


def _holders(holds: list[DeviceHold]) -> tuple[PodHolder, ...]:
    return tuple(sorted({h.holder for h in holds}, key=lambda h: (h.namespace, h.pod, h.container)))


class PodAttribution:
    """The kubelet's last answer and how old it is; inactive until it first answers."""

    def __init__(self, max_age: float = MAPPING_MAX_AGE) -> None:
        self.max_age = max_age
        self.devices: PodDevices | None = None
        """None until the kubelet first answered: then nothing is attributed to pods."""
        self.read_at = 0.0
        self._unknown: set[str] = set()
        self._mig_readings: dict[str, GpuReading] = {}
        """The last reading of each GPU that listed its MIG devices."""

    @property
    def active(self) -> bool:
        return self.devices is not None

    def observe(self, devices: PodDevices, now: float) -> None:
        self.devices, self.read_at = devices, now

    def split(self, gpus: Mapping[str, GpuStatus], now: float) -> dict[str, GpuPods] | None:
        """Each GPU's pods now (by GPU key), or None while inactive."""
        if self.devices is None:
            return None
        if self.devices.holds and now - self.read_at > self.max_age:
            log.warning(
                "the kubelet has not answered for %.0fs: its last GPU assignments are dropped, "
                "GPU costs go to (unallocated) until it answers",
                now - self.read_at,
            )
            self.devices = PodDevices()
        for key, status in gpus.items():
            if status.reading is not None and status.reading.mig_instances:
                self._mig_readings[key] = status.reading
        pods, unknown = split_gpus(gpus, self.devices, self._mig_readings)
        for device in sorted(unknown - self._unknown)[: MAX_UNKNOWN - len(self._unknown)]:
            log.warning("the kubelet lists GPU device %s, which is none of this node's", device)
            self._unknown.add(device)
        return pods
