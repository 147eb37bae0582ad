"""The kubelet's List answer, turned into who holds which GPU.

Only NVIDIA's device plugin resources count: `nvidia.com/gpu` (whole GPUs, or MIG
devices under the single MIG strategy) and `nvidia.com/mig-<profile>` (MIG devices
under the mixed strategy), each also as `<resource>.shared` when time-slicing renames
it. A shared device's replicas are listed as `<id>::<n>`: the ID without the suffix is
the device, and each replica one hold. Every other resource, and devices assigned
through dynamic resource allocation, are left out.
"""

from __future__ import annotations

import re
from typing import Any

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.readings import DeviceHold, PodDevices, PodHolder

GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
SHARED_SUFFIX = ".shared"
REPLICA_SEPARATOR = "::"
MAX_HOLDS = 4096
"""More GPU assignments than any node has; an answer with more is refused (too_large)."""
MAX_NAME = 253
"""The longest Kubernetes object name; a longer one is not the kubelet's."""

_MIG_PROFILE = re.compile(r"(?:(\d+)c\.)?(\d+)g\.")
"""`3g.40gb`: 3 compute slices; `1c.3g.40gb`: a compute instance of 1 slice in a 3g GPU
instance."""


def resource_kind(resource_name: str) -> tuple[bool, int | None]:
    """Whether a resource is a GPU one, and the compute slices of its MIG profile."""
    name = resource_name.removesuffix(SHARED_SUFFIX)
    if name == GPU_RESOURCE:
        return True, None
    if name.startswith(MIG_RESOURCE_PREFIX):
        profile = _MIG_PROFILE.match(name[len(MIG_RESOURCE_PREFIX) :])
        return True, int(profile[1] or profile[2]) if profile else None
    return False, None


def pod_devices(response: Any) -> PodDevices:
    """The GPU holds of a ListPodResourcesResponse; CollectorError if it is not sound."""
    holds = []
    for pod in response.pod_resources:
        for container in pod.containers:
            holder = PodHolder(
                _name(pod.namespace, "namespace"), _name(pod.name, "pod"), _name(container.name)
            )
            for devices in container.devices:
                is_gpu, slices = resource_kind(devices.resource_name)
                if not is_gpu:
                    continue
                for replica in devices.device_ids:
                    device = replica.split(REPLICA_SEPARATOR, 1)[0]
                    if device:
                        holds.append(DeviceHold(device, replica, slices, holder))
                if len(holds) > MAX_HOLDS:
                    raise CollectorError(
                        "too_large", f"more than {MAX_HOLDS} GPU assignments listed"
                    )
    return PodDevices.of(holds)


def _name(value: str, what: str = "container") -> str:
    if not value or len(value) > MAX_NAME:
        raise CollectorError("parse", f"a pod's {what} name is empty or too long: {value[:64]!r}")
    return value
