"""The span a review covers: a calendar month by default, any whole-hour range on request.

Figures are hourly, so a period starts and ends on hour boundaries. Months
and days follow the report's time zone (a month in Berlin is not a month in
UTC); an hour's figure belongs to the hour in which its window ends.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from llm_cost_exporter.accounting.costmodel import SECONDS_PER_HOUR

HOUR = int(SECONDS_PER_HOUR)  # whole seconds, for epoch arithmetic
HALF_HOUR = HOUR // 2


class PeriodError(ValueError):
    """The period options cannot describe a period; the message is one line."""


@dataclass(frozen=True)
class Period:
    """``[start, end)``, both on hour boundaries, with the zone its days are counted in.

    The epochs are cached: a fleet's month places millions of samples in their hours.
    """

    start: datetime
    end: datetime
    zone: tzinfo
    zone_name: str
    label: str
    to_date: bool = False  # the end was cut at the present hour

    @cached_property
    def start_epoch(self) -> int:
        return int(self.start.timestamp())

    @cached_property
    def end_epoch(self) -> int:
        return int(self.end.timestamp())

    @cached_property
    def hours(self) -> int:
        return (self.end_epoch - self.start_epoch) // HOUR

    def hour_start(self, index: int) -> datetime:
        """Local start of hour ``index`` (0 is the first hour of the period)."""
        return datetime.fromtimestamp(self.start_epoch + index * HOUR, self.zone)

    def hour_of_sample(self, timestamp: float) -> int | None:
        """The hour an hourly figure stamped ``timestamp`` describes, if inside the period.

        The figure covers the hour before its timestamp; it belongs to the clock
        hour holding that window's middle. For windows ending on the hour that is
        the hour just ended; a recording rule evaluated at 10:12 (window
        09:12-10:12) describes 09:00-10:00, off by 12 minutes rather than 48.
        """
        placed = self.hourly([(timestamp, 0.0)], -math.inf, math.inf)
        return placed[0][0] if placed else None

    def hourly(
        self, samples: Iterable[tuple[float, float]], after: float, until: float
    ) -> list[tuple[int, float]]:
        """``(hour, value)`` of each sample stamped in ``(after, until]`` whose hour is in
        the period, placed as :meth:`hour_of_sample` says; one pass, for a fleet's month."""
        base, hours = self.start_epoch + HALF_HOUR, self.hours
        return [
            (hour, value)
            for ts, value in samples
            if after < ts <= until and 0 <= (hour := math.floor((ts - base) / HOUR)) < hours
        ]


def zone_named(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PeriodError(
            f"--timezone {name!r}: not a known time zone (e.g. UTC, Europe/Berlin)"
        ) from None


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def _month_start(year: int, month: int, zone: tzinfo) -> datetime:
    return datetime(year, month, 1, tzinfo=zone)


def _next_month(when: datetime) -> datetime:
    year, month = (when.year + 1, 1) if when.month == 12 else (when.year, when.month + 1)
    return when.replace(year=year, month=month, day=1)


def _parse_time(text: str, option: str, zone: tzinfo) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PeriodError(
            f"{option} {text!r}: expected a date or time like 2026-10-01 or 2026-10-01T06:00"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    if when.timestamp() % HOUR:
        raise PeriodError(f"{option} {text!r}: must fall on a whole hour")
    return when


def parse_period(
    month: str | None,
    start: str | None,
    end: str | None,
    zone_name: str,
    now: datetime,
) -> Period:
    """The period the options describe; without any, the last complete calendar month."""
    zone = zone_named(zone_name)
    if month and (start or end):
        raise PeriodError("--month cannot be combined with --start or --end")
    if start or end:
        if not (start and end):
            raise PeriodError("--start and --end go together")
        begin = _parse_time(start, "--start", zone)
        finish = _parse_time(end, "--end", zone)
        label = f"{begin:%Y-%m-%d %H:%M} to {finish:%Y-%m-%d %H:%M}"
    else:
        if month:
            match = _MONTH.match(month)
            if not match or not 1 <= int(match.group(2)) <= 12:
                raise PeriodError(f"--month {month!r}: expected YYYY-MM, e.g. 2026-10")
            begin = _month_start(int(match.group(1)), int(match.group(2)), zone)
        else:
            local_now = now.astimezone(zone)
            this_month = _month_start(local_now.year, local_now.month, zone)
            begin = _month_start(
                *(
                    (this_month.year - 1, 12)
                    if this_month.month == 1
                    else (this_month.year, this_month.month - 1)
                ),
                zone,
            )
        finish = _next_month(begin)
        label = f"{begin:%B %Y}"
    if finish <= begin:
        raise PeriodError("--end must be after --start")
    to_date = False
    now_hour = datetime.fromtimestamp(int(now.timestamp()) // HOUR * HOUR, zone)
    if finish > now_hour:
        if begin >= now_hour:
            raise PeriodError(f"the period {label} has not started yet (no complete hour)")
        finish, to_date = now_hour, True
        label += " (to date)"
    return Period(begin.astimezone(zone), finish.astimezone(zone), zone, zone_name, label, to_date)
