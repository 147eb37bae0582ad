"""`python -m llm_cost_exporter.config [--write README.md]`: print the configuration
reference table, or rewrite it between the markers of a README."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from llm_cost_exporter.config.reference import render_table, with_table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llm_cost_exporter.config",
        description="Print the configuration reference table rendered from the schema.",
    )
    parser.add_argument(
        "--write",
        metavar="README",
        type=Path,
        help="replace the table between the config-table markers of this file instead",
    )
    args = parser.parse_args(argv)
    if args.write is None:
        sys.stdout.write(render_table())
        return 0
    try:
        args.write.write_text(with_table(args.write.read_text(encoding="utf-8")), encoding="utf-8")
    except (OSError, ValueError) as error:
        parser.exit(1, f"{parser.prog}: {args.write}: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
