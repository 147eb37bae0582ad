"""Scalar field types: each reads one YAML value (or raises ConfigError naming the
field), writes it back so that reading gives the same value, and names itself for
the reference table.

The parsing functions are public where code outside the configuration needs the
same rule: durations, the listen address and currency codes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm_cost_exporter.config.errors import ConfigError

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_WHOLE_UNITS = ("d", "h", "m", "s")
_SIZE_RE = re.compile(r"^(\d+)\s*(B|KiB|MiB|GiB)?$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


def parse_duration(value: Any, where: str) -> float:
    """Seconds from `30s`, `5m`, `1h`, `1d` or a plain number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value).strip())
        if not match:
            raise ConfigError(f"{where}: {value!r} is not a duration (e.g. 5s, 1m, 1h)")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not seconds > 0 or math.isinf(seconds):
        raise ConfigError(f"{where}: duration must be positive, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str | float:
    """What parse_duration reads back as exactly `seconds`: `5m` rather than `300s`
    where a whole number of a unit is exact, else seconds (as a number when even
    the decimal text would not read back)."""
    for suffix in _WHOLE_UNITS:
        count = seconds / _DURATION_UNITS[suffix]
        if count.is_integer() and float(int(count)) * _DURATION_UNITS[suffix] == seconds:
            return f"{int(count)}{suffix}"
    text = f"{seconds!r}s"
    if _DURATION_RE.match(text) and parse_duration(text, "") == seconds:
        return text
    return seconds


def split_listen_address(address: Any, where: str = "web.listen_address") -> tuple[str | None, int]:
    """`host:port`, `[v6]:port` or `:port` (every interface) into host and port."""
    text = non_empty_text(address, where)
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if (
        not sep
        or not (port.isascii() and port.isdigit())
        or not 0 < int(port) < 65536
        or any(c.isspace() or c in "/@[]" for c in host)
    ):
        raise ConfigError(f"{where}: {text!r} is not HOST:PORT")
    return (host or None), int(port)


def parse_currency(value: Any, where: str) -> str:
    """An ISO 4217 code, upper-cased: every money figure of a deployment is in it."""
    code = non_empty_text(value, where).upper()
    if not _CURRENCY_RE.match(code):
        raise ConfigError(f"{where}: {code!r} is not an ISO 4217 code like USD or EUR")
    return code


def non_empty_text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a non-empty string, got {value!r}")
    return value.strip()


def either(options: Sequence[str]) -> str:
    """`a, b or c`."""
    *head, last = options
    return f"{', '.join(head)} or {last}" if head else last


# --- field types ----------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    """A real number within bounds; `above` makes the minimum exclusive."""

    minimum: float = 0.0
    maximum: float = math.inf
    above: bool = False

    @property
    def type_name(self) -> str:
        if self.maximum < math.inf:
            return f"number {self.minimum:g} to {self.maximum:g}"
        return f"number {'>' if self.above else '>='} {self.minimum:g}"

    def load(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: must be a number, got {value!r}")
        number = float(value)
        if math.isinf(number):
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        if self.above and not number > self.minimum:
            raise ConfigError(f"{where}: must be > {self.minimum:g}, got {value!r}")
        if math.isnan(number) or not self.minimum <= number <= self.maximum:
            bound = (
                f"between {self.minimum:g} and {self.maximum:g}"
                if self.maximum < math.inf
                else f">= {self.minimum:g}"
            )
            raise ConfigError(f"{where}: must be {bound}, got {value!r}")
        return number

    def dump(self, value: float) -> float:
        return value


@dataclass(frozen=True)
class Whole:
    """A whole number, at least `minimum` and, where given, at most `maximum`."""

    minimum: int = 0
    maximum: int | None = None

    @property
    def type_name(self) -> str:
        if self.maximum is not None:
            return f"whole number {self.minimum} to {self.maximum}"
        return f"whole number >= {self.minimum}"

    def load(self, value: Any, where: str) -> int:
        maximum = math.inf if self.maximum is None else self.maximum
        number = Number(self.minimum, maximum).load(value, where)
        if not number.is_integer():
            raise ConfigError(f"{where}: must be a whole number, got {value!r}")
        return int(number)

    def dump(self, value: int) -> int:
        return value


class Duration:
    type_name = "duration (5s, 1m, 1h)"

    def load(self, value: Any, where: str) -> float:
        return parse_duration(value, where)

    def dump(self, value: float) -> str | float:
        return format_duration(value)


class WindowName:
    """A duration kept as written: it labels the windowed gauges (`window="5m"`)."""

    type_name = "duration with a unit (5m, 1h)"

    def load(self, value: Any, where: str) -> str:
        name = str(value).strip()
        if not _DURATION_RE.match(name):
            raise ConfigError(f"{where}: {name!r} is not a duration like 5m or 1h")
        parse_duration(name, where)
        return name

    def dump(self, value: str) -> str:
        return value


class Size:
    type_name = "size in bytes (16MiB)"

    def load(self, value: Any, where: str) -> int:
        match = _SIZE_RE.match(str(value).strip())
        if isinstance(value, bool) or not match:
            raise ConfigError(f"{where}: {value!r} is not a size (e.g. 16MiB)")
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
        if size <= 0:
            raise ConfigError(f"{where}: must be positive, got {value!r}")
        return size

    def dump(self, value: int) -> str | int:
        for unit in ("GiB", "MiB", "KiB"):
            if value % _SIZE_UNITS[unit] == 0:
                return f"{value // _SIZE_UNITS[unit]}{unit}"
        return value


class Text:
    type_name = "text"

    def load(self, value: Any, where: str) -> str:
        return non_empty_text(value, where)

    def dump(self, value: str) -> str:
        return value


class Flag:
    type_name = "true or false"

    def load(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false, got {value!r}")
        return value

    def dump(self, value: bool) -> bool:
        return value


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of words. `error` may use {value}, {either} and {known}."""

    options: tuple[str, ...]
    lower: bool = False
    error: str = "must be {either}, got {value!r}"

    @property
    def type_name(self) -> str:
        return "one of " + ", ".join(f"`{option}`" for option in self.options)

    def load(self, value: Any, where: str) -> str:
        text = str(value).strip()
        if self.lower:
            text = text.lower()
        if text not in self.options:
            message = self.error.format(
                value=text, either=either(self.options), known=", ".join(sorted(self.options))
            )
            raise ConfigError(f"{where}: {message}")
        return text

    def dump(self, value: str) -> str:
        return value


class Currency:
    type_name = "ISO 4217 code"

    def load(self, value: Any, where: str) -> str:
        return parse_currency(value, where)

    def dump(self, value: str) -> str:
        return value


class ListenAddress:
    type_name = "host:port"

    def load(self, value: Any, where: str) -> str:
        split_listen_address(value, where)
        return value.strip()

    def dump(self, value: str) -> str:
        return value


class HttpUrl:
    type_name = "http(s) URL"

    def load(self, value: Any, where: str) -> str:
        text = non_empty_text(value, where)
        if not re.match(r"^https?://[^/\s]+", text):
            raise ConfigError(f"{where}: {text!r} is not an http(s) URL")
        return text

    def dump(self, value: str) -> str:
        return value


class CatalogRef:
    type_name = "provider/model"

    def load(self, value: Any, where: str) -> str:
        ref = non_empty_text(value, where)
        if ref.count("/") != 1 or not all(ref.split("/")):
            raise ConfigError(f"{where}: {ref!r} is not provider/model")
        return ref

    def dump(self, value: str) -> str:
        return value


class GpuRef:
    """A whole GPU: cost is split by GPU, so MIG instances are not accepted."""

    type_name = "NVML index or GPU- UUID"

    def load(self, value: Any, where: str) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and value.strip().startswith("GPU-"):
            return value.strip()
        raise ConfigError(
            f"{where}: {value!r} is neither a GPU index nor a GPU- UUID "
            "(cost is split by whole GPU, not by MIG instance)"
        )

    def dump(self, value: int | str) -> int | str:
        return value
