"""The `LLMCOST_` environment variables that stand in for command-line flags."""

from __future__ import annotations

import os

PREFIX = "LLMCOST_"


def env(name: str) -> str | None:
    """`LLMCOST_<name>`, or None when unset or empty: an empty variable sets nothing."""
    return os.environ.get(PREFIX + name) or None
