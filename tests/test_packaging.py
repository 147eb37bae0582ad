"""What `pip install` gets: one import package named after the project.

The repository keeps `exporter/` and `collectors/` at the top; pyproject.toml maps
them to `llm_cost_exporter` and `llm_cost_exporter.collectors` and lists every
package by hand, so a new package directory left out of the list would be
missing from installs while every test (run against the source tree) passes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path, PurePosixPath

import pytest
from packaging.requirements import Requirement
from realparts.timeouts import scaled

from llm_cost_exporter import __version__

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGE = "llm_cost_exporter"
PACKAGE_DIRS = {PACKAGE: "exporter", f"{PACKAGE}.collectors": "collectors"}
ENTRY_POINT = "llm-cost-exporter = llm_cost_exporter.cli:main"
# What a build needs of the repository; anything else (tests, build/, egg-info) stays out.
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", *PACKAGE_DIRS.values())


def _source_dirs() -> list[Path]:
    """Every directory under the mapped source directories, caches left out."""
    return sorted(
        path
        for top in PACKAGE_DIRS.values()
        for path in [ROOT / top, *(ROOT / top).rglob("*")]
        if path.is_dir() and path.name != "__pycache__"
    )


def _import_name(directory: Path) -> str:
    """The import name a source directory is installed as."""
    for package, top in sorted(PACKAGE_DIRS.items(), key=lambda item: -len(item[1])):
        if directory == ROOT / top or (ROOT / top) in directory.parents:
            rest = directory.relative_to(ROOT / top).parts
            return ".".join([package, *rest])
    raise AssertionError(f"{directory} is outside the package directories")


def test_package_dir_maps_the_two_source_trees() -> None:
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == PACKAGE_DIRS


def test_every_directory_with_modules_is_a_package() -> None:
    """A directory of modules without __init__.py would be left out of the wheel."""
    bare = [
        path.relative_to(ROOT).as_posix()
        for path in _source_dirs()
        if any(path.glob("*.py")) and not (path / "__init__.py").is_file()
    ]
    assert not bare, f"directories with modules but no __init__.py: {bare}"


def test_packages_list_names_exactly_the_package_directories() -> None:
    listed = PYPROJECT["tool"]["setuptools"]["packages"]
    assert len(listed) == len(set(listed)), "a package is listed twice"
    on_disk = {_import_name(path) for path in _source_dirs() if (path / "__init__.py").is_file()}
    assert set(listed) == on_disk, (
        f"[tool.setuptools] packages lacks {sorted(on_disk - set(listed))} "
        f"and lists {sorted(set(listed) - on_disk)} that are no package directory"
    )


def _build_requirements_met() -> bool:
    """Whether this Python has the build backend pyproject.toml asks for."""
    for line in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(line)
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            return False
        if not requirement.specifier.contains(installed, prereleases=True):
            return False
    return True


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """A wheel built from a clean copy of the sources (no stale build/ directory)."""
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, source / name)
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out)]
    if _build_requirements_met():
        command.append("--no-build-isolation")  # else pip fetches the backend
    done = subprocess.run(
        [*command, str(source)], capture_output=True, text=True, timeout=scaled(600), check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


@pytest.mark.realparts
def test_wheel_holds_one_package_and_its_metadata(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    top = {PurePosixPath(name).parts[0] for name in names}
    dist_info = [name for name in top if name.endswith(".dist-info")]
    assert len(dist_info) == 1 and dist_info[0].startswith("llm_cost_exporter-"), top
    assert top == {PACKAGE, *dist_info}, f"unexpected top-level entries: {sorted(top)}"
    metadata_file = wheel.read(f"{dist_info[0]}/METADATA").decode()
    assert f"\nVersion: {__version__}\n" in metadata_file  # taken from the package's one literal


@pytest.mark.realparts
def test_wheel_holds_every_module_and_data_file(wheel: zipfile.ZipFile) -> None:
    """Modules, and the files they read at run time (simulator templates, the systemd
    unit, ...): a data file left out of package-data would be missing only once installed."""
    names = set(wheel.namelist())
    files = {
        "/".join([*_import_name(path.parent).split("."), path.name])
        for top in PACKAGE_DIRS.values()
        for path in (ROOT / top).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert any(name.endswith(".prom") for name in files)
    assert f"{PACKAGE}/deploy/llm-cost-exporter.service" in files
    assert files - names == set(), f"missing from the wheel: {sorted(files - names)}"


@pytest.mark.realparts
def test_wheel_has_the_command_line_entry_point(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "[console_scripts]" in text
    assert ENTRY_POINT in [line.strip() for line in text.splitlines()]
