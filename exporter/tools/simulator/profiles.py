"""Traffic profiles: how much of an engine's capacity is demanded at a given time.

A profile is a pure function of simulated unix time (UTC), so a simulation can
be replayed exactly and its ground truth recomputed independently.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Protocol

_DAY = 86_400.0
_HOUR = 3_600.0


class TrafficProfile(Protocol):
    """Anything with a name and a demanded share of capacity over time."""

    name: ClassVar[str]

    def rate_fraction(self, t: float) -> float:
        """Demanded tokens/s as a fraction of capacity at unix time `t` (may exceed 1)."""
        ...


@dataclass(frozen=True)
class SteadyProfile:
    """Constant demand; the easiest case to check cost arithmetic against."""

    level: float = 0.6
    name: ClassVar[str] = "steady"

    def __post_init__(self) -> None:
        if self.level < 0:
            raise ValueError("steady level must be >= 0")

    def rate_fraction(self, t: float) -> float:
        return self.level


@dataclass(frozen=True)
class IdleProfile:
    """No traffic at all: the engine still costs money while serving nothing."""

    name: ClassVar[str] = "idle"

    def rate_fraction(self, t: float) -> float:
        return 0.0


def _smoothstep(x: float) -> float:
    """0 below 0, 1 above 1, and a C1-continuous ramp in between."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return x * x * (3.0 - 2.0 * x)


@dataclass(frozen=True)
class DiurnalProfile:
    """B2B traffic: busy on weekday business hours, quiet at night and on weekends.

    Demand ramps smoothly from `peak / peak_to_trough` to `peak` between
    `ramp_up_start` and `day_start`, stays there until `day_end`, and ramps
    down until `ramp_down_end` (local hours, `utc_offset_hours` from UTC).
    Saturdays and Sundays stay at the trough, which is where idle GPUs cost
    the most per token.
    """

    peak_to_trough: float = 10.0
    peak: float = 0.9
    utc_offset_hours: float = 0.0
    ramp_up_start: float = 7.0
    day_start: float = 9.0
    day_end: float = 17.0
    ramp_down_end: float = 20.0
    name: ClassVar[str] = "diurnal"

    def __post_init__(self) -> None:
        if self.peak_to_trough < 1.0:
            raise ValueError("peak_to_trough must be >= 1")
        if self.peak < 0:
            raise ValueError("diurnal peak must be >= 0")
        if not (
            0.0 <= self.ramp_up_start < self.day_start <= self.day_end < self.ramp_down_end <= 24.0
        ):
            raise ValueError(
                "diurnal hours must satisfy 0 <= ramp_up_start < day_start <= day_end"
                " < ramp_down_end <= 24"
            )

    @property
    def trough(self) -> float:
        return self.peak / self.peak_to_trough

    def activity(self, t: float) -> float:
        """Business activity in [0, 1] at unix time `t`."""
        local = t + self.utc_offset_hours * _HOUR
        days = math.floor(local / _DAY)
        # 1970-01-01 was a Thursday; weekday() numbering has Monday = 0.
        weekday = (days + 3) % 7
        if weekday >= 5:
            return 0.0
        hour = (local - days * _DAY) / _HOUR
        rise = _smoothstep((hour - self.ramp_up_start) / (self.day_start - self.ramp_up_start))
        fall = _smoothstep((self.ramp_down_end - hour) / (self.ramp_down_end - self.day_end))
        return min(rise, fall)

    def rate_fraction(self, t: float) -> float:
        return self.trough + (self.peak - self.trough) * self.activity(t)


@lru_cache(maxsize=4096)
def _unit(seed: int, window: int, salt: str) -> float:
    """A reproducible pseudo-random number in [0, 1) for one time window."""
    digest = hashlib.blake2b(f"{seed}:{window}:{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class SpikyProfile:
    """A low base load with short bursts above capacity, so requests queue up.

    Time is cut into windows of `window_seconds`; each window holds one burst
    with probability `burst_probability`, at a position and with a duration
    derived from `seed` and the window number only.
    """

    base: float = 0.2
    burst_level: float = 1.6
    window_seconds: float = 900.0
    burst_probability: float = 0.5
    min_burst_seconds: float = 30.0
    max_burst_seconds: float = 120.0
    seed: int = 0
    name: ClassVar[str] = "spiky"

    def __post_init__(self) -> None:
        if self.base < 0 or self.burst_level < 0:
            raise ValueError("spiky levels must be >= 0")
        if not 0 < self.min_burst_seconds <= self.max_burst_seconds <= self.window_seconds:
            raise ValueError("spiky burst lengths must fit in a window")
        if not 0.0 <= self.burst_probability <= 1.0:
            raise ValueError("burst_probability must be in [0, 1]")

    def burst(self, window: int) -> tuple[float, float] | None:
        """(start, end) unix times of the burst in `window`, or None."""
        if _unit(self.seed, window, "burst") >= self.burst_probability:
            return None
        span = self.max_burst_seconds - self.min_burst_seconds
        length = self.min_burst_seconds + span * _unit(self.seed, window, "length")
        offset = (self.window_seconds - length) * _unit(self.seed, window, "offset")
        start = window * self.window_seconds + offset
        return start, start + length

    def rate_fraction(self, t: float) -> float:
        found = self.burst(math.floor(t / self.window_seconds))
        if found is not None and found[0] <= t < found[1]:
            return self.burst_level
        return self.base


_PROFILES: dict[str, type] = {
    "steady": SteadyProfile,
    "diurnal": DiurnalProfile,
    "spiky": SpikyProfile,
    "idle": IdleProfile,
}

PROFILE_NAMES: tuple[str, ...] = tuple(_PROFILES)


def make_profile(name: str, **params: Any) -> TrafficProfile:
    """Build a profile by name; unknown names or parameters raise ValueError."""
    cls = _PROFILES.get(name)
    if cls is None:
        raise ValueError(
            f"unknown traffic profile {name!r}; choose one of {', '.join(PROFILE_NAMES)}"
        )
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for traffic profile {name!r}: {exc}") from None
