"""How the landing page writes money, shares and spans: one rule for the whole page.

A column of money keeps one number of decimals, so figures line up and never
read 0.6544 beside 1.02. Amounts (spend, hourly cost) keep the currency's
minor unit (cents; none for yen). Prices per 1M tokens keep it too, unless a
price of the column is below one minor unit: then the whole column gets the
decimals that show two significant digits of its smallest price.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "PYG",
        "RWF",
        "UGX",
        "UYI",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
THREE_DECIMAL = frozenset(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"])
"""ISO 4217 minor units where they are not 2."""

MAX_EXTRA_DECIMALS = 4
"""Beyond the minor unit, for prices too small to show otherwise."""

MISSING = "–"


def minor_units(currency: str) -> int:
    """Decimals of the currency's smallest coin: 2 for USD, 0 for JPY, 3 for KWD."""
    if currency in ZERO_DECIMAL:
        return 0
    return 3 if currency in THREE_DECIMAL else 2


def known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


@dataclass(frozen=True)
class Money:
    """Money in one currency at fixed decimals: build one per column, format every cell."""

    currency: str
    decimals: int

    @classmethod
    def amounts(cls, currency: str) -> Money:
        """Spend and hourly cost: the currency's minor unit, always."""
        return cls(currency, minor_units(currency))

    @classmethod
    def prices(cls, currency: str, values: Iterable[float | None]) -> Money:
        """Prices per 1M tokens: the minor unit, or more when one of `values` needs it."""
        base = minor_units(currency)
        nonzero = [abs(v) for v in values if known(v) and v != 0]
        if not nonzero or min(nonzero) >= 10**-base:
            return cls(currency, base)
        needed = 1 - math.floor(math.log10(min(nonzero)))
        return cls(currency, min(max(base, needed), base + MAX_EXTRA_DECIMALS))

    @classmethod
    def axis(cls, currency: str, ticks: Iterable[float]) -> Money:
        """Labels of a chart's axis: the minor unit, or as many decimals as a tick needs
        (an axis of 0.0025 steps must not read $0.00, $0.00, $0.01)."""
        base = minor_units(currency)
        needed = exact_decimals(ticks, base + MAX_EXTRA_DECIMALS)
        return cls(currency, max(base, needed))

    def __call__(self, value: float | None) -> str:
        """`$1,234.50`, `EUR 0.0042`, `–` for unknown, `∞` for money without tokens."""
        if value is None or math.isnan(value):
            return MISSING
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        text = f"{abs(value):,.{self.decimals}f}"
        negative = value < 0 and text.strip("0.,") != ""
        symbol = "$" if self.currency == "USD" else f"{self.currency} "
        return f"{'-' if negative else ''}{symbol}{text}"


def exact_decimals(values: Iterable[float], limit: int) -> int:
    """The fewest decimals, up to `limit`, that write every one of `values` exactly."""
    values = [v for v in values if math.isfinite(v)]
    for decimals in range(limit + 1):
        if all(abs(v - round(v, decimals)) <= 1e-9 * max(1.0, abs(v)) for v in values):
            return decimals
    return limit


def percent_axis(ticks: Iterable[float]) -> Callable[[float], str]:
    """Labels of a percent axis with the decimals its ticks need: `0%`, `25%`, `2.5%`."""
    decimals = exact_decimals([t * 100 for t in ticks], 3)
    return lambda share: f"{share * 100:.{decimals}f}%"


def percent(value: float | None) -> str:
    """A share as a percent with one decimal: `42.5%`."""
    if value is None or math.isnan(value):
        return MISSING
    return "∞" if math.isinf(value) else f"{value * 100:.1f}%"


def span(seconds: float) -> str:
    """`1h`, `5m`, `2m 10s`: the time a window's figures cover."""
    whole = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    if whole or not parts:
        parts.append(f"{whole}s")
    return " ".join(parts[:2])


def data_value(value: float | None) -> str:
    """A figure's exact value for `data-value`: what /metrics says, `+Inf` included."""
    if value is None or math.isnan(value):
        return ""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
