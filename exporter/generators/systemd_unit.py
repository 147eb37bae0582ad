"""The hardened systemd unit for a bare node, pointed at the installed command.

The unit ships as package data (`deploy/llm-cost-exporter.service`), so a pip
install carries it; `llm-cost-exporter systemd-unit` writes it with ExecStart
set to this installation's `llm-cost-exporter`, since systemd needs an absolute
path and a virtualenv puts the command wherever the operator chose.
"""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

UNIT_NAME = "llm-cost-exporter.service"
COMMAND = "llm-cost-exporter"
_EXEC = "@EXEC@"


def unit_template() -> str:
    """The unit as shipped, with `@EXEC@` where the command's path goes."""
    return resources.files("llm_cost_exporter").joinpath("deploy", UNIT_NAME).read_text()


def installed_command() -> Path | None:
    """This installation's `llm-cost-exporter`: beside the interpreter (a virtualenv's
    bin/), else the first on PATH."""
    beside = Path(sys.executable).parent / COMMAND
    if beside.is_file():
        return beside
    found = shutil.which(COMMAND)
    return Path(found) if found else None


def render_unit(command: Path) -> str:
    """The unit with ExecStart running `command`, which must be an absolute path
    without whitespace (systemd would split it)."""
    text = str(command)
    if not command.is_absolute():
        raise ValueError(f"{text!r} is not an absolute path")
    if any(character.isspace() for character in text):
        raise ValueError(f"{text!r} holds whitespace; systemd would split it")
    return unit_template().replace(_EXEC, text)
