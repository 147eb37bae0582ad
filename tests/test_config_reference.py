"""The README's configuration table is the one the schema renders."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from realparts.timeouts import scaled

from llm_cost_exporter.config.__main__ import main
from llm_cost_exporter.config.reference import (
    TABLE_END,
    TABLE_START,
    reference_rows,
    render_table,
    table_in,
)

README_PATH = Path(__file__).parent.parent / "README.md"
README = README_PATH.read_text()
REGENERATE = "python -m llm_cost_exporter.config --write README.md"


def configuration_section(text: str) -> str:
    start = text.index("\n## Configuration\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_readme_table_is_the_generated_one() -> None:
    assert table_in(README) == render_table(), f"stale: run `{REGENERATE}`"


def test_the_table_sits_in_the_configuration_section_and_says_how_to_regenerate() -> None:
    section = configuration_section(README)
    assert section.count(TABLE_START) == 1 and section.count(TABLE_END) == 1
    assert REGENERATE in section


def test_write_replaces_a_stale_table_and_nothing_else(tmp_path: Path) -> None:
    stale = README.replace(table_in(README), "| old | table |\n")
    path = tmp_path / "README.md"
    path.write_text(stale)
    assert main(["--write", str(path)]) == 0
    assert path.read_text() == README


def test_write_refuses_a_file_without_the_markers(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text("# no table here\n")
    done = subprocess.run(
        [sys.executable, "-m", "llm_cost_exporter.config", "--write", str(path)],
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )
    assert done.returncode == 1
    assert "config-table:start" in done.stderr
    assert path.read_text() == "# no table here\n"


def test_every_row_has_a_type_and_a_one_line_description() -> None:
    for row in reference_rows():
        assert row.type_name and row.doc, row
        assert "\n" not in row.type_name + row.doc + row.default, row


def _example_paths(value: Any, prefix: str = "") -> list[str]:
    """Field paths of a YAML example: `engines[].gpus`, `cost.gpu_prices_per_hour.H100`."""
    if isinstance(value, dict):
        return [
            path
            for key, item in value.items()
            for path in _example_paths(item, f"{prefix}.{key}" if prefix else str(key))
        ]
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [path for item in value for path in _example_paths(item, f"{prefix}[]")]
    return [prefix]


def test_every_field_of_the_readme_examples_has_a_row() -> None:
    documented = [
        re.compile(re.escape(row.path).replace(re.escape("<model>"), ".+"))
        for row in reference_rows()
    ]
    maps = [
        re.compile(re.escape(row.path) + r"\..+")
        for row in reference_rows()
        if row.type_name.startswith("map of")
    ]
    blocks = re.findall(r"```yaml\n(.*?)```", configuration_section(README), re.DOTALL)
    paths = {path for block in blocks for path in _example_paths(yaml.safe_load(block))}
    assert len(paths) > 30
    undocumented = {p for p in paths if not any(r.fullmatch(p) for r in documented + maps)}
    assert undocumented == set()
