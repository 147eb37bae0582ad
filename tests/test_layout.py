"""Source layout rules that imports and names alone would not keep.

The simulator stands for a vLLM server, so it must not lean on the exporter it
is used to test. And the exporter knows engines through the collector registry:
the engine name "vllm" belongs to the vLLM collector, the registry, the
simulator and the vLLM latency panels, not to the rest of the code.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "llm_cost_exporter"
# Repository directory -> import package it is installed as (see pyproject.toml).
PACKAGE_DIRS = {"exporter": PACKAGE, "collectors": f"{PACKAGE}.collectors"}

SIMULATOR_DIR = "exporter/tools/simulator"
SIMULATOR_PACKAGE = f"{PACKAGE}.tools.simulator"

# Files that may name vLLM in code: they are about vLLM itself.
VLLM_FILES = frozenset(
    {
        "collectors/vllm.py",  # the vLLM collector
        "collectors/registry.py",  # maps engine types to collectors
        "exporter/generators/dashboards.py",  # its latency panels read vLLM's own histograms
    }
)
VLLM_TREES = (f"{SIMULATOR_DIR}/",)  # the simulator serves vLLM's pages
# Single literals allowed elsewhere: (file, literal).
VLLM_LITERALS = frozenset({("exporter/cli.py", "--vllm.target")})


def _modules(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_package(path: Path) -> str:
    """The import package a source file belongs to (the package itself for __init__)."""
    top, *rest = path.relative_to(ROOT).parent.parts
    return ".".join([PACKAGE_DIRS[top], *rest])


def _imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for each import in `path`, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.lineno, node.module or ""
                continue
            parts = _module_package(path).split(".")
            base = parts[: len(parts) - (node.level - 1)]
            if node.module:
                yield node.lineno, ".".join([*base, node.module])
            else:  # `from .. import x`: x may be a module of the base package
                for alias in node.names:
                    yield node.lineno, ".".join([*base, alias.name])


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_simulator_imports_nothing_of_the_exporter() -> None:
    modules = _modules(SIMULATOR_DIR)
    assert len(modules) >= 5, modules  # the check must see the simulator's modules
    bad = [
        f"{_relative(path)}:{line}: imports {module}"
        for path in modules
        for line, module in _imported_modules(path)
        if _within(module, PACKAGE) and not _within(module, SIMULATOR_PACKAGE)
    ]
    assert not bad, "the simulator must not import the exporter:\n" + "\n".join(bad)


def test_import_resolution_sees_relative_imports() -> None:
    """The check above would pass vacuously if relative imports were not resolved."""
    server = ROOT / SIMULATOR_DIR / "server.py"
    assert any(module == f"{SIMULATOR_PACKAGE}.engine" for _, module in _imported_modules(server))


def _documentation(tree: ast.AST) -> set[int]:
    """ids of string constants that stand alone as statements: docstrings, not code."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def _vllm_allowed(relative: str, literal: str) -> bool:
    return (
        relative in VLLM_FILES
        or relative.startswith(VLLM_TREES)
        or (relative, literal) in VLLM_LITERALS
    )


def test_vllm_is_named_only_where_it_means_vllm() -> None:
    for allowed in VLLM_FILES:
        assert (ROOT / allowed).is_file(), f"allowed file {allowed} no longer exists"
    bad = []
    for path in _modules(*PACKAGE_DIRS):
        relative = _relative(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        prose = _documentation(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and "vllm" in node.value
                and id(node) not in prose
                and not _vllm_allowed(relative, node.value)
            ):
                bad.append(f"{relative}:{node.lineno}: {node.value!r}")
    assert not bad, (
        "string literals naming vllm outside the vLLM collector, the registry, the simulator "
        "and the vLLM latency panels (select engines through the registry instead):\n"
        + "\n".join(bad)
    )
