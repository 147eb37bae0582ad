"""The one error configuration problems raise, kept apart so every module can raise it."""

from __future__ import annotations

from typing import Any

SHOWN_CHARS = 80
"""How much of a value or key an error message quotes: a hostile file may hold
megabytes in one string, and the message stays one short line."""


class ConfigError(ValueError):
    """An invalid configuration; the message is the one line shown to the user:
    the dotted path of the field, a colon, and what is wrong.

    Line breaks in the message (a quoted key or value may hold them) are shown
    escaped, so the message is one line whatever the file holds.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(text: str) -> str:
    """`text` with every line break and control character escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown(value: Any) -> str:
    """`value` as an error message quotes it: its repr, cut to SHOWN_CHARS."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def child(where: str, key: object) -> str:
    """The dotted path of `key` inside the field at `where` ("" is the top level)."""
    name = str(key)
    if len(name) > SHOWN_CHARS or not name.isprintable():
        name = shown(name)
    return f"{where}.{name}" if where else name
