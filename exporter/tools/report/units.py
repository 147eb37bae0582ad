"""How each kind of figure is rounded and shown: one rule for every output.

Money is kept to the cent, prices per 1M tokens to a hundredth of a cent
(small models cost fractions of a cent per 1M), tokens to whole tokens,
shares (``ratio``, shown as a percent) to a hundredth of a percent, and
multiples (``factor``, such as the cost ratio) to two decimals.
"""

from __future__ import annotations

from typing import Literal

Unit = Literal["money", "money_per_million", "tokens", "ratio", "factor", "hours", "count"]

DECIMALS: dict[str, int] = {
    "money": 2,
    "money_per_million": 4,
    "tokens": 0,
    "ratio": 4,
    "factor": 2,
    "hours": 2,
    "count": 0,
}


def rounded(value: float | None, unit: Unit) -> float | int | None:
    """The value every output carries: rounded half away from zero at the unit's decimals."""
    if value is None:
        return None
    decimals = DECIMALS[unit]
    scaled = abs(value) * 10**decimals
    whole = int(scaled + 0.5 + 1e-9)
    result = (whole if value >= 0 else -whole) / 10**decimals
    return int(result) if decimals == 0 else result


def display(value: float | None, unit: Unit, currency: str = "USD") -> str:
    """The value as a person reads it: grouped digits, a currency or a percent sign."""
    r = rounded(value, unit)
    if r is None:
        return "n/a"
    if unit == "ratio":
        return f"{r * 100:.2f}%"
    decimals = DECIMALS[unit]
    if unit == "factor":
        return f"{r:.{decimals}f}\u00d7"
    text = f"{abs(r):,.{decimals}f}"
    sign = "-" if r < 0 else ""
    if unit in ("money", "money_per_million"):
        symbol = "$" if currency == "USD" else f"{currency} "
        return f"{sign}{symbol}{text}"
    return f"{sign}{text}"
