"""Golden `/metrics`: the exact pages of two fixed nodes, byte for byte.

A renamed metric, a changed label or help text, or a different number breaks
these tests before it breaks the rules, dashboards and reviews in production.
After an intended change: `python tests/golden_pages.py --write`, and review
the diff of `tests/golden/`.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from golden_pages import GOLDEN, SCENARIOS, normalized


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def served(request: pytest.FixtureRequest) -> tuple[str, bytes]:
    return request.param, SCENARIOS[request.param]()


def test_page_is_byte_equal_to_the_golden(served: tuple[str, bytes]) -> None:
    name, page = served
    expected = (GOLDEN / name).read_bytes()
    actual = normalized(page)
    if actual != expected:
        import difflib

        diff = "\n".join(
            difflib.unified_diff(
                expected.decode().splitlines(),
                actual.decode().splitlines(),
                f"golden/{name}",
                "served",
                lineterm="",
                n=1,
            )
        )
        pytest.fail(f"/metrics differs from tests/golden/{name}:\n{diff[:6000]}")


def test_page_keeps_process_metrics_beside_ours(served: tuple[str, bytes]) -> None:
    """The golden leaves the process metrics out; the served page must still have them."""
    _, page = served
    assert b"\nprocess_resident_memory_bytes " in page
    assert normalized(page).count(b"\nprocess_") == 0


@pytest.mark.realparts
def test_promtool_check_metrics_is_clean(served: tuple[str, bytes]) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is needed")
    _, page = served
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=page, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""
