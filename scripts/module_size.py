"""Size gate run by `make lint`: no module of the shipped package is over MAX_LINES lines.

A module that outgrows this has usually grown a second concern; split it along that seam instead of
raising the bound."""

from __future__ import annotations

import sys
from pathlib import Path

MAX_LINES = 600
PACKAGE = Path("layers/core/python/connect_metering")


def oversized(root: Path = PACKAGE, limit: int = MAX_LINES) -> list[tuple[Path, int]]:
    sizes = (
        (path, len(path.read_text(encoding="utf-8").splitlines())) for path in sorted(root.rglob("*.py"))
    )
    return [(path, lines) for path, lines in sizes if lines > limit]


def main() -> int:
    found = oversized()
    for path, lines in found:
        print(f"{path}: {lines} lines, over the {MAX_LINES}-line bound", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
