"""Scalar field types: each reads one YAML value (or raises ConfigError naming the
field), writes it back so that reading gives the same value, and names itself for
the reference table.

The parsing functions are public where code outside the configuration needs the
same rule: durations, the listen address and currency codes.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.credentials import read_secret_file
from llm_cost_exporter.config.errors import ConfigError, shown
from llm_cost_exporter.config.urls import check_http_url

LARGEST_NUMBER = 1e15
"""No number in the file may exceed this: every money figure stays finite and
exact to the cent however long the exporter runs."""

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_WHOLE_UNITS = ("d", "h", "m", "s")
_SIZE_RE = re.compile(r"^(\d{1,15})\s*(B|KiB|MiB|GiB)?$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


def parse_duration(value: Any, where: str) -> float:
    """Seconds from `30s`, `5m`, `1h`, `1d` or a plain number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = finite(value, where)
    else:
        match = _DURATION_RE.match(str(value).strip())
        if not match:
            raise ConfigError(f"{where}: {shown(value)} is not a duration (e.g. 5s, 1m, 1h)")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not seconds > 0:
        raise ConfigError(f"{where}: duration must be positive, got {shown(value)}")
    return seconds


def finite(value: int | float, where: str) -> float:
    """A YAML number as a float; infinities, NaN and integers beyond the float
    range (`.inf`, `.nan`, a 400-digit literal) are refused, naming the field."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(f"{where}: must be a finite number, got {shown(value)}")
    return number


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
        or any(c.isspace() or c in "/@[]" for c in host)
    ):
        raise ConfigError(f"{where}: {shown(text)} is not HOST:PORT")
    if len(port) > 5 or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: {shown(text)}: port {port} is out of range 1-65535")
    return (host or None), int(port)


def parse_currency(value: Any, where: str) -> str:
    """An ISO 4217 code, upper-cased: every money figure of a deployment is in it."""
    code = non_empty_text(value, where).upper()
    if not _CURRENCY_RE.match(code):
        raise ConfigError(f"{where}: {shown(code)} is not an ISO 4217 code like USD or EUR")
    return code


def within(seconds: float, minimum: float, maximum: float, value: Any, where: str) -> float:
    """`seconds` if from `minimum` to `maximum`, else ConfigError quoting `value`."""
    if not minimum <= seconds <= maximum:
        low = f"at least {format_duration(minimum)} and " if minimum else ""
        raise ConfigError(f"{where}: {low}at most {format_duration(maximum)}, got {shown(value)}")
    return seconds


def non_empty_text(value: Any, where: str) -> str:
    """A string with something in it and no control characters (a NUL in a path
    would fail only later, where it is used)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a non-empty string, got {shown(value)}")
    if not value.isprintable() and any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"{where}: {shown(value)} holds control characters")
    return value.strip()


def either(options: Sequence[str]) -> str:
    """`a, b or c`."""
    *head, last = options
    return f"{', '.join(head)} or {last}" if head else last


# --- field types ----------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    """A finite real number within bounds; `above` makes the minimum exclusive.
    Without a maximum of its own it is at most LARGEST_NUMBER."""

    minimum: float = 0.0
    maximum: float = LARGEST_NUMBER
    above: bool = False

    @property
    def type_name(self) -> str:
        if self.maximum < LARGEST_NUMBER:
            return f"number {self.minimum:g} to {self.maximum:g}"
        return f"number {'>' if self.above else '>='} {self.minimum:g}"

    def load(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: must be a number, got {shown(value)}")
        number = finite(value, where)
        if self.above and not number > self.minimum:
            raise ConfigError(f"{where}: must be > {self.minimum:g}, got {shown(value)}")
        if not self.minimum <= number <= self.maximum:
            raise ConfigError(
                f"{where}: must be between {self.minimum:g} and {self.maximum:g}, "
                f"got {shown(value)}"
            )
        return number

    def dump(self, value: float) -> float:
        return value


@dataclass(frozen=True)
class Whole:
    """A whole number from `minimum` to `maximum`."""

    minimum: int = 0
    maximum: int = int(LARGEST_NUMBER)

    @property
    def type_name(self) -> str:
        if self.maximum < LARGEST_NUMBER:
            return f"whole number {self.minimum} to {self.maximum}"
        return f"whole number >= {self.minimum}"

    def load(self, value: Any, where: str) -> int:
        number = Number(self.minimum, self.maximum).load(value, where)
        if not number.is_integer():
            raise ConfigError(f"{where}: must be a whole number, got {shown(value)}")
        return int(number)

    def dump(self, value: int) -> int:
        return value


@dataclass(frozen=True)
class Duration:
    """A duration from `minimum` to `maximum` seconds."""

    minimum: float = 0.0
    maximum: float = 86400.0

    @property
    def type_name(self) -> str:
        low = f"{format_duration(self.minimum)} to " if self.minimum else "up to "
        return f"duration (5s, 1m, 1h), {low}{format_duration(self.maximum)}"

    def load(self, value: Any, where: str) -> float:
        return within(parse_duration(value, where), self.minimum, self.maximum, value, where)

    def dump(self, value: float) -> str | float:
        return format_duration(value)


@dataclass(frozen=True)
class WindowName:
    """A duration kept as written: it labels the windowed gauges (`window="5m"`)."""

    maximum: float

    @property
    def type_name(self) -> str:
        return f"duration with a unit (5m, 1h), up to {format_duration(self.maximum)}"

    def load(self, value: Any, where: str) -> str:
        name = str(value).strip()
        if not _DURATION_RE.match(name):
            raise ConfigError(f"{where}: {shown(name)} is not a duration like 5m or 1h")
        within(parse_duration(name, where), 0.0, self.maximum, value, where)
        return name

    def dump(self, value: str) -> str:
        return value


@dataclass(frozen=True)
class Size:
    """A size in bytes, at most `maximum`."""

    maximum: int

    @property
    def type_name(self) -> str:
        return f"size in bytes (16MiB), up to {self.dump(self.maximum)}"

    def load(self, value: Any, where: str) -> int:
        text = str(value).strip() if isinstance(value, (int, str)) else ""
        match = _SIZE_RE.match(text)
        if isinstance(value, bool) or not match:
            raise ConfigError(f"{where}: {shown(value)} is not a size (e.g. 16MiB)")
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
        if size <= 0:
            raise ConfigError(f"{where}: must be positive, got {shown(value)}")
        if size > self.maximum:
            raise ConfigError(f"{where}: at most {self.dump(self.maximum)}, got {shown(value)}")
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
            raise ConfigError(f"{where}: must be true or false, got {shown(value)}")
        return value

    def dump(self, value: bool) -> bool:
        return value


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of words. `error` may use {value}, {either} and {known}."""

    options: tuple[str, ...]
    lower: bool = False
    error: str = "must be {either}, got {value}"

    @property
    def type_name(self) -> str:
        return "one of " + ", ".join(f"`{option}`" for option in self.options)

    def load(self, value: Any, where: str) -> str:
        text = str(value).strip()
        if self.lower:
            text = text.lower()
        if text not in self.options:
            message = self.error.format(
                value=shown(text),
                either=either(self.options),
                known=", ".join(sorted(self.options)),
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
    """An http(s) URL with a valid port. Error messages never quote its userinfo."""

    type_name = "http(s) URL"

    def load(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: must be an http(s) URL, got {type(value).__name__}")
        text = value.strip()
        check_http_url(text, where)
        return text

    def dump(self, value: str) -> str:
        return value


class CatalogRef:
    type_name = "provider/model"

    def load(self, value: Any, where: str) -> str:
        ref = non_empty_text(value, where)
        if ref.count("/") != 1 or not all(ref.split("/")):
            raise ConfigError(f"{where}: {shown(ref)} is not provider/model")
        return ref

    def dump(self, value: str) -> str:
        return value


@dataclass(frozen=True)
class GpuRef:
    """A whole GPU: cost is split by GPU, so MIG instances are not accepted."""

    indices: int
    """How many GPU indices there can be: an index is below this."""

    @property
    def type_name(self) -> str:
        return f"NVML index (0 to {self.indices - 1}) or GPU- UUID"

    def load(self, value: Any, where: str) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            if value >= self.indices:
                raise ConfigError(f"{where}: GPU index {shown(value)} is not below {self.indices}")
            return value
        if isinstance(value, str) and value.strip().startswith("GPU-"):
            return non_empty_text(value, where)
        raise ConfigError(
            f"{where}: {shown(value)} is neither a GPU index nor a GPU- UUID "
            "(cost is split by whole GPU, not by MIG instance)"
        )

    def dump(self, value: int | str) -> int | str:
        return value


SECRET_SHOWN = "<secret>"
"""How check-config prints a secret given inline (Prometheus prints it so too)."""


class Secret:
    """A password given inline: loaded as written, never printed."""

    type_name = "text, printed as <secret>"

    def load(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: must be a string, got {type(value).__name__}")
        return value

    def dump(self, value: str) -> str:
        return SECRET_SHOWN


class ReadableFile:
    """A file read whole at every use (a certificate bundle): at load it must be a
    readable regular file."""

    type_name = "path of a file"

    def load(self, value: Any, where: str) -> str:
        path = non_empty_text(value, where)
        try:
            with open(path, "rb") as file:
                if not os.path.isfile(path):
                    raise ConfigError(f"{where}: {path} is not a regular file")
                file.read(1)
        except OSError as error:
            raise ConfigError(f"{where}: {path}: {error.strerror or error}") from None
        return path

    def dump(self, value: str) -> str:
        return value


class SecretFile:
    """A file holding a secret; at load it must be a readable regular file that
    holds one (it is read again at every use, so it may be rotated)."""

    type_name = "path of a file"

    def load(self, value: Any, where: str) -> str:
        path = non_empty_text(value, where)
        try:
            read_secret_file(path)
        except CollectorError as error:
            raise ConfigError(f"{where}: {error}") from None
        return path

    def dump(self, value: str) -> str:
        return value
