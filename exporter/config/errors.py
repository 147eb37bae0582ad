"""The one error configuration problems raise, kept apart so every module can raise it."""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid configuration; the message is the one line shown to the user:
    the dotted path of the field, a colon, and what is wrong."""


def child(where: str, key: object) -> str:
    """The dotted path of `key` inside the field at `where` ("" is the top level)."""
    return f"{where}.{key}" if where else str(key)
