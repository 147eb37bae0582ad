"""How each kind of figure is rounded and shown: one rule for every output.

Money is kept to the cent, prices per 1M tokens to a hundredth of a cent
(small models cost fractions of a cent per 1M), tokens to whole tokens,
shares (``ratio``, shown as a percent) to a hundredth of a percent, and
multiples (``factor``, such as the cost ratio) to two decimals. Hours are
kept to a hundredth but read as whole hours where whole: ``740``, ``3.5``.
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

MONEY_UNITS: frozenset[str] = frozenset({"money", "money_per_million"})


def is_money(unit: str) -> bool:
    """Whether figures of this unit are amounts of a currency (totals or prices per 1M)."""
    return unit in MONEY_UNITS


def rounded(value: float | None, unit: Unit) -> float | int | None:
    """The value every output carries: rounded half away from zero at the unit's decimals."""
    if value is None:
        return None
    decimals = DECIMALS[unit]
    scaled = abs(value) * 10**decimals
    whole = int(scaled + 0.5 + 1e-9)
    result = (whole if value >= 0 else -whole) / 10**decimals
    return int(result) if decimals == 0 else result


def fixed(value: float | None, unit: Unit) -> str:
    """The rounded value in fixed notation at the unit's decimals (``13811.20``); "" for none.

    What machine-readable outputs write where every value of a unit must read alike.
    """
    r = rounded(value, unit)
    return "" if r is None else f"{r:.{DECIMALS[unit]}f}"


def in_currency(amount: str, currency: str) -> str:
    """An already formatted, unsigned amount with its currency: ``$1.20``, ``EUR 1.20``."""
    return f"${amount}" if currency == "USD" else f"{currency} {amount}"


def hours_number(value: float) -> str:
    """An already rounded count of hours, whole where whole: ``740``, ``3.5``, ``1,234.25``."""
    text = f"{abs(value):,.{DECIMALS['hours']}f}".rstrip("0").rstrip(".")
    return f"-{text}" if value < 0 else text


def display(value: float | None, unit: Unit, currency: str = "USD") -> str:
    """The value as a person reads it: grouped digits, a currency or a percent sign.

    Hours carry no unit here, since a sentence names them ("30 node-hours");
    :func:`display_alone` adds the "h" where nothing else does.
    """
    r = rounded(value, unit)
    if r is None:
        return "n/a"
    if unit == "ratio":
        return f"{r * 100:.2f}%"
    if unit == "hours":
        return hours_number(r)
    decimals = DECIMALS[unit]
    if unit == "factor":
        return f"{r:.{decimals}f}\u00d7"
    text = f"{abs(r):,.{decimals}f}"
    sign = "-" if r < 0 else ""
    if is_money(unit):
        return sign + in_currency(text, currency)
    return f"{sign}{text}"


def display_alone(value: float | None, unit: Unit, currency: str = "USD") -> str:
    """A figure with no words around it, as a table cell shows it: hours read ``740 h``."""
    shown = display(value, unit, currency)
    return f"{shown} h" if unit == "hours" and value is not None else shown
