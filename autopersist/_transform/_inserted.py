"""The text of the code the rewriter inserts, shared by the libcst rewrite
(``_instrument``) and the compilation straight from the ``ast`` (``_compile``).
Imports no libcst."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from autopersist._names import RUNTIME_NAME

if TYPE_CHECKING:
    from autopersist._transform._analysis import Entry

#: Ends every inserted line. ``_compile`` takes a line for inserted only when it also
#: holds inserted code (a string line ending with this text stays a user line).
INSERTED_COMMENT = "# __autopersist__ inserted"


def register_text(
    prefix: str,
    entries: Sequence[Entry],
    versions: Sequence[str],
    call_versions: Sequence[str],
) -> str:
    """``__autopersist__.register(prefix, table)`` with one row per entry.

    Row: (qualname, kind, version, parent, global_reads, writes_globals, is_op,
    first_line, last_line, call_version). The table is a literal so it is stored in
    the cached bytecode: importing a cached module needs neither libcst nor a parse.
    """
    rows = tuple(
        (
            entry.qualname,
            entry.kind,
            version,
            entry.parent,
            entry.global_reads,
            entry.writes_globals,
            entry.is_op,
            entry.first_line,
            entry.last_line,
            call_version,
        )
        for entry, version, call_version in zip(
            entries, versions, call_versions, strict=True
        )
    )
    return f"{RUNTIME_NAME}.register({prefix!r}, {rows!r})"


def op_decorator_text(entry: Entry) -> str:
    """``__autopersist__.op(index, ...)``, the innermost decorator of an op."""
    options = ""
    ignore = entry.options.get("ignore")
    if isinstance(ignore, tuple) and ignore:
        options += f", ignore={ignore!r}"
    if entry.options.get("always"):
        options += ", always=True"
    return f"{RUNTIME_NAME}.op({entry.index}{options})"
