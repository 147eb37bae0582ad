"""One scale factor for every deadline the tests wait under.

A deadline that waits for a condition costs nothing when the condition comes
early, so the waits are generous to begin with; a machine slower or busier
than usual (a loaded CI runner, a debugger, a sanitizer build) stretches all
of them at once with ``LLMCOST_TEST_TIMEOUT_SCALE`` (default 1), for example
``LLMCOST_TEST_TIMEOUT_SCALE=3 pytest``. The helpers that wait (HTTP readiness,
Prometheus queries, webhook notifications, subprocesses) scale the timeouts
they are given, so tests pass unscaled seconds.
"""

from __future__ import annotations

import math
import os

SCALE_ENV = "LLMCOST_TEST_TIMEOUT_SCALE"


def timeout_scale() -> float:
    """The factor from ``LLMCOST_TEST_TIMEOUT_SCALE``: 1 when unset or empty."""
    text = os.environ.get(SCALE_ENV, "").strip()
    if not text:
        return 1.0
    try:
        scale = float(text)
    except ValueError:
        scale = math.nan
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"{SCALE_ENV}={text!r}: expected a positive number such as 2 or 0.5")
    return scale


def scaled(seconds: float) -> float:
    """``seconds`` times the scale factor."""
    return seconds * timeout_scale()
