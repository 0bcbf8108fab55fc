"""Compile rewritten source so that every original line keeps its number.

The rewriter inserts whole lines (each ending with ``INSERTED_COMMENT``). Before
compiling, the positions in the syntax tree are mapped back: an original line gets
its original number, an inserted line the number of the original line after it
(so an op decorator reports the ``def`` line). Columns on original lines are
untouched, so tracebacks show the user's own lines with correct carets.
"""

from __future__ import annotations

import ast
from types import CodeType

from autopersist._transform._instrument import INSERTED_COMMENT


def line_map(text: str) -> list[int]:
    """``result[n]`` is the original line number of rewritten line ``n`` (1-based)."""
    mapping = [0]
    inserted = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.rstrip().endswith(INSERTED_COMMENT):
            inserted += 1
            mapping.append(number - inserted + 1)
        else:
            mapping.append(number - inserted)
    mapping.append(mapping[-1] + 1)  # a position just past the last line
    return mapping


def compile_rewritten(text: str, filename: str) -> CodeType:
    """Compile rewritten source with the line numbers of the original source."""
    tree = ast.parse(text, filename=filename)
    mapping = line_map(text)
    last = len(mapping) - 1
    for node in ast.walk(tree):
        lineno = getattr(node, "lineno", None)
        if lineno is not None:
            node.lineno = mapping[min(lineno, last)]  # type: ignore[attr-defined]
            end = getattr(node, "end_lineno", None)
            if end is not None:
                node.end_lineno = mapping[min(end, last)]  # type: ignore[attr-defined]
    return compile(tree, filename, "exec", dont_inherit=True)
