"""Hostile configuration files: each exits 2 with one line naming the field (or the
file, where the file itself is the problem), never a traceback.

Every case goes through the command line's `main()` twice, as the daemon
(`--config FILE`) and as `check-config FILE`; the cases a fresh process must
show (the stack, the file's permissions) run `python -m llm_cost_exporter`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import minimal_config_dict
from realparts.timeouts import scaled

from llm_cost_exporter import cli
from llm_cost_exporter.config.loading import MAX_FILE_BYTES
from llm_cost_exporter.config.safe_yaml import MAX_VALUES
from llm_cost_exporter.daemon import assembly

SECRET = "hunter2-do-not-show"
TOO_LARGE = f"larger than {MAX_FILE_BYTES // 1024} KiB"


def config_text(**changes: object) -> str:
    return yaml.safe_dump(minimal_config_dict(nvml={"enabled": False}, **changes))


BASE = config_text()
"""The price of the one A100 is written `3.2`: cases put other numbers there."""


def priced(literal: str) -> str:
    assert BASE.count("3.2\n") == 1
    return BASE.replace("3.2\n", f"{literal}\n")


def engines(*urls: str) -> str:
    return BASE + yaml.safe_dump({"engines": list(urls)})


def nested(opening: str, closing: str, depth: int) -> str:
    return BASE + f"windows: {opening * depth}5m{closing * depth}\n"


BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)
"""A billion laughs: nine levels of nine aliases each, 9^9 strings once expanded."""

BOMB_UNDER_A_FIELD = (
    BASE + "x: &x [" + ", ".join(["lol"] * 9) + "]\n" + BOMB.replace("a: &a", "y: &a")
)

# (id, file content, text the one line must hold)
CASES: list[tuple[str, str | bytes, str]] = [
    ("invalid UTF-8", BASE.encode() + b"currency: \xff\xfe\n", "not UTF-8"),
    ("binary garbage", bytes(range(256)) * 8, "not UTF-8"),
    ("NUL byte", BASE + "currency: US\x00D\n", "control character"),
    ("empty file", "", "cost: missing"),
    ("comments only", "# nothing here\n", "cost: missing"),
    ("a list", "- cost\n- api_prices\n", "top level must be a mapping"),
    ("a scalar", "just words\n", "top level must be a mapping"),
    ("tabs", "cost:\n\tgpus: []\n", "line 2"),
    ("larger than the bound", BASE + "#" * MAX_FILE_BYTES + "\n", TOO_LARGE),
    ("too many values", BASE + f"windows: [{', '.join(['5m'] * MAX_VALUES)}]\n", "windows["),
    ("deep lists", nested("[", "]", 5000), "windows[0][0]"),
    ("deep mappings", nested("{a: ", "}", 5000), "windows.a.a"),
    ("alias bomb under an unknown key", BOMB, f"more than {MAX_VALUES} values"),
    ("alias bomb under a field", BOMB_UNDER_A_FIELD + "windows: *i\n", f"more than {MAX_VALUES}"),
    ("alias that contains itself", BASE + "windows: &w [*w]\n", "windows[0]: an alias"),
    (
        "aliases nesting deeper",
        BASE
        + "".join(
            f"k{i}: &k{i} [[[[[[[[*k{i - 1}]]]]]]]]\n" if i else "k0: &k0 [x]\n" for i in range(6)
        ),
        "nested deeper than 32",
    ),
    ("duplicate key", BASE + "currency: USD\ncurrency: EUR\n", "currency: given twice"),
    (
        "duplicate nested key",
        BASE.replace("A100-80GB: 3.2\n", "A100-80GB: 3.2\n    A100-80GB: 0.1\n"),
        "cost.gpu_prices_per_hour.A100-80GB: given twice",
    ),
    ("key with a line break", BASE + '"curr\\nency": USD\n', "curr\\nency"),
    ("unhashable key", BASE + "? [a, b]\n: 1\n", "unhashable"),
    ("python tag", BASE + "currency: !!python/object:os.system [ls]\n", "line"),
    ("date that does not exist", BASE + "currency: 2024-02-30\n", "currency:"),
    ("integer beyond float range", priced("1" + "0" * 400), "cost.gpu_prices_per_hour.A100-80GB"),
    ("integer beyond int parsing", priced("9" * 5000), "cost.gpu_prices_per_hour.A100-80GB"),
    ("float beyond float range", priced("1.0e400"), "cost.gpu_prices_per_hour.A100-80GB"),
    ("infinite price", priced(".inf"), "cost.gpu_prices_per_hour.A100-80GB: must be a finite"),
    ("NaN price", priced(".nan"), "cost.gpu_prices_per_hour.A100-80GB: must be a finite"),
    ("price beyond the bound", priced("1.0e16"), "cost.gpu_prices_per_hour.A100-80GB"),
    (
        "infinite API price",
        BASE.replace("input: 0.8", "input: .inf"),
        "api_prices.default.input: must be a finite",
    ),
    (
        "negative infinite overhead",
        BASE.replace("overhead_ratio: 0.0", "overhead_ratio: -.inf"),
        "cost.overhead_ratio: must be a finite",
    ),
    ("infinite capacity", BASE + "capacity: {tokens_per_second: .inf}\n", "capacity.tokens_per"),
    ("NaN projection", BASE + "projection: {utilization: .nan}\n", "projection.utilization"),
    ("infinite interval", BASE + "collection: {interval: .inf}\n", "collection.interval"),
    ("interval beyond 1h", BASE + "collection: {interval: 10h}\n", "collection.interval"),
    ("interval below 100ms", BASE + "collection: {interval: 1ms}\n", "collection.interval"),
    ("page size beyond 256MiB", BASE + "collection: {max_page_bytes: 1GiB}\n", "max_page_bytes"),
    (
        "page size of 5000 digits",
        BASE + f"collection: {{max_page_bytes: '{'9' * 5000}'}}\n",
        "max_page_bytes",
    ),
    ("window beyond 1d", BASE + "windows: [5m, 2d]\n", "windows[1]"),
    ("nine windows", BASE + f"windows: [{', '.join(f'{m}m' for m in range(1, 10))}]\n", "windows:"),
    ("a window twice", BASE + "windows: [5m, 1h, 5m]\n", "windows[2]: 5m is listed twice"),
    (
        "window of too many intervals",
        BASE + "collection: {interval: 100ms}\nwindows: [1d]\n",
        "windows: 1d spans 864000 collection intervals",
    ),
    ("learn window beyond 1d", BASE + "capacity: {learn_window: 2d}\n", "capacity.learn_window"),
    (
        "huge GPU count",
        BASE.replace("count: 1", "count: 100000000000"),
        "cost.gpus[0].count: must be between 1 and 64",
    ),
    (
        "65 GPUs in two groups",
        BASE.replace("- count: 1\n", "- count: 64\n    model: A100-80GB\n  - count: 1\n"),
        "cost.gpus: 65 GPUs",
    ),
    (
        "65 engines",
        engines(*(f"http://127.0.0.1:{8000 + i}/metrics" for i in range(65))),
        "engines:",
    ),
    (
        "GPU index beyond the node",
        BASE + "engines: [{url: 'http://127.0.0.1:8000/metrics', gpus: [64]}]\n",
        "engines[0].gpus[0]",
    ),
    ("listen port 0", BASE + "web: {listen_address: ':0'}\n", "web.listen_address"),
    (
        "listen port 65536",
        BASE + "web: {listen_address: '127.0.0.1:65536'}\n",
        "web.listen_address",
    ),
    ("listen port of 30 digits", BASE + f"web: {{listen_address: ':{'9' * 30}'}}\n", "web.listen"),
    ("engine port 0", engines("http://127.0.0.1:0/metrics"), "engines[0].url"),
    ("engine port 65536", engines("http://127.0.0.1:65536/metrics"), "engines[0].url"),
    ("engine port not a number", engines("http://127.0.0.1:80a/metrics"), "engines[0].url"),
    (
        "localhost and 127.0.0.1",
        engines("http://127.0.0.1:8000/metrics", "http://localhost:8000/metrics"),
        "engines[1].url: http://localhost:8000/metrics is the same engine as engines[0]",
    ),
    (
        "default port written or not",
        engines("http://127.0.0.1/metrics", "http://127.0.0.1:80/metrics"),
        "engines[1].url",
    ),
    (
        "https default port",
        engines("https://engine.invalid:443/metrics", "https://engine.invalid/metrics"),
        "engines[1].url",
    ),
    (
        "trailing slash",
        engines("http://127.0.0.1:8000/metrics", "http://127.0.0.1:8000/metrics/"),
        "engines[1].url",
    ),
    (
        "scheme and host case",
        engines("http://engine.invalid:8000/metrics", "HTTP://Engine.INVALID:8000/metrics"),
        "engines[1].url",
    ),
    (
        "userinfo ignored",
        engines("http://127.0.0.1:8000/metrics", f"http://scraper:{SECRET}@127.0.0.1:8000/metrics"),
        "engines[1].url: http://127.0.0.1:8000/metrics is the same engine",
    ),
    (
        "a secret in a URL with a bad port",
        engines(f"http://scraper:{SECRET}@127.0.0.1:99999/metrics"),
        "engines[0].url: 'http://<secret>@127.0.0.1:99999/metrics'",
    ),
    (
        "missing bearer token file",
        BASE
        + "engines: [{url: 'http://127.0.0.1:8000/metrics', bearer_token_file: /nonexistent/t}]\n",
        "engines[0].bearer_token_file: secret file /nonexistent/t: cannot open",
    ),
    (
        "password and password file",
        BASE
        + "engines: [{url: 'http://127.0.0.1:8000/metrics', basic_auth: "
        + f"{{username: u, password: {SECRET}, password_file: /etc/hostname}}}}]\n",
        "engines[0].basic_auth: give either password or password_file",
    ),
    (
        "userinfo and basic_auth",
        BASE
        + f"engines: [{{url: 'http://u:{SECRET}@127.0.0.1:8000/metrics', "
        + "basic_auth: {username: v}}]\n",
        "engines[0].url: give user:password in the URL or basic_auth",
    ),
    ("a very long value", BASE + f"currency: {'X' * 100_000}\n", "currency:"),
]


def _write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "hostile.yml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def assert_one_line_naming(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert stderr.count("\n") == 1 and stderr.endswith("\n"), stderr[:2000]
    assert stderr.startswith("llm-cost-exporter: configuration error: "), stderr[:300]
    assert expected in stderr, stderr[:300]
    assert SECRET not in stderr
    assert len(stderr) < 400, f"{len(stderr)} characters"


@pytest.fixture
def no_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file the checks let through would start serving: fail instead of hanging."""

    async def refuse(*args: object) -> None:
        raise AssertionError("the configuration was accepted and the daemon started")

    monkeypatch.setattr(assembly, "serve", refuse)


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("no_daemon")
@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes, expected: str
) -> None:
    path = _write(tmp_path, content)
    for argv in (["--config", str(path)], ["check-config", str(path)]):
        code, out, err = run_main(argv, capsys)
        assert code == 2, (argv, out[:300], err[:300])
        assert out == ""
        assert_one_line_naming(err, expected)


@pytest.mark.usefixtures("no_daemon")
@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp, "cannot read (Is a directory)"),
        (lambda tmp: tmp / "absent.yml", "cannot read (No such file or directory)"),
        (lambda tmp: Path("/dev/zero"), TOO_LARGE),
    ],
    ids=["a directory", "a missing file", "an endless device"],
)
def test_a_path_that_is_not_a_config_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], Path],
    expected: str,
) -> None:
    path = make(tmp_path)
    for argv in (["--config", str(path)], ["check-config", str(path)]):
        code, out, err = run_main(argv, capsys)
        assert code == 2 and out == ""
        assert_one_line_naming(err, f"{path}: {expected}")


def _without_root_powers() -> list[str]:
    """A prefix that runs a command without the power to read any file."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: every file is readable")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]


def run_cli(*args: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "llm_cost_exporter", *args],
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )


def test_an_unreadable_file_exits_2_naming_it(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE)
    path.chmod(0)
    prefix = _without_root_powers()
    for args in (("--config", str(path)), ("check-config", str(path))):
        done = run_cli(*args, prefix=prefix)
        assert done.returncode == 2
        assert_one_line_naming(done.stderr, f"{path}: cannot read (Permission denied)")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (nested("[", "]", 100_000), "nested deeper than 32"),
        (BOMB_UNDER_A_FIELD + "windows: *i\n", f"more than {MAX_VALUES}"),
        (priced("9" * 5000), "cost.gpu_prices_per_hour.A100-80GB"),
    ],
    ids=["deep nesting", "alias bomb", "huge integer"],
)
def test_a_fresh_process_exits_2_with_one_line(tmp_path: Path, content: str, expected: str) -> None:
    """In a process of its own, with the interpreter's default stack."""
    path = _write(tmp_path, content)
    for args in (("--config", str(path)), ("check-config", str(path))):
        done = run_cli(*args)
        assert done.returncode == 2 and done.stdout == ""
        assert_one_line_naming(done.stderr, expected)


def test_an_unforeseen_failure_while_loading_is_still_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last resort: whatever a check forgot still names the file in one line."""
    from llm_cost_exporter.config import loading

    def broken(data: object) -> None:
        raise RuntimeError("a check\nthat broke")

    monkeypatch.setattr(loading, "config_from_mapping", broken)
    path = _write(tmp_path, BASE)
    code, out, err = run_main(["check-config", str(path)], capsys)
    assert code == 2 and out == ""
    assert_one_line_naming(err, f"{path}: cannot load: RuntimeError: a check\\nthat broke")


@pytest.mark.parametrize(
    "urls",
    [
        ("http://127.0.0.1:8000/metrics", "http://127.0.0.1:8001/metrics"),
        ("http://127.0.0.1:8000/metrics", "https://127.0.0.1:8000/metrics"),
        ("http://127.0.0.1:8000/metrics", "http://127.0.0.1:8000/engine/1/metrics"),
        ("http://engine-a.invalid:8000/metrics", "http://engine-b.invalid:8000/metrics"),
    ],
    ids=["other port", "other scheme", "other path", "unresolvable names"],
)
def test_distinct_engines_are_accepted(urls: tuple[str, str]) -> None:
    from llm_cost_exporter.config import config_from_mapping

    config = config_from_mapping(yaml.safe_load(engines(*urls)))
    assert [e.url for e in config.engines] == list(urls)
