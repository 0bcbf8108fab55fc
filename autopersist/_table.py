"""Plain-text tables for the terminal (no dependency): aligned columns, long cells
cut to a width, numbers right-aligned."""

from __future__ import annotations

import re
from collections.abc import Sequence

#: Cells longer than this are cut, ending in "...".
MAX_CELL = 40
_NUMBER_RE = re.compile(r"-?(\d[\d_]*)?(\.\d+)?([eE][-+]?\d+)?s?%?")
_GAP = "  "


def truncate(text: str, width: int = MAX_CELL) -> str:
    """``text`` on one line, cut to ``width`` characters."""
    one_line = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")
    if len(one_line) <= width:
        return one_line
    return one_line[: max(width - 3, 1)] + "..."


def _is_number(text: str) -> bool:
    return bool(text) and text[0] != "." and _NUMBER_RE.fullmatch(text) is not None


def render_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], *, max_cell: int = MAX_CELL
) -> str:
    """Render ``rows`` of cell texts under ``columns`` as an aligned text table.

    A column whose every non-empty cell is a number is right-aligned.

    >>> print(render_table(["op", "calls"], [["train", "3"], ["evaluate", "12"]]))
    op        calls
    --------  -----
    train         3
    evaluate     12
    """
    header = [truncate(name, max_cell) for name in columns]
    body = [[truncate(cell, max_cell) for cell in row] for row in rows]
    widths = [len(name) for name in header]
    numeric = [True] * len(header)
    for row in body:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
            if cell and not _is_number(cell):
                numeric[index] = False
    lines = [
        _GAP.join(
            name.ljust(width) for name, width in zip(header, widths, strict=True)
        ),
        _GAP.join("-" * width for width in widths),
    ]
    for row in body:
        cells = [
            cell.rjust(width) if is_num else cell.ljust(width)
            for cell, width, is_num in zip(row, widths, numeric, strict=True)
        ]
        lines.append(_GAP.join(cells))
    return "\n".join(line.rstrip() for line in lines)
