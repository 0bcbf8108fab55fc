"""Run a batch of buffered write statements as a few long SQLite steps.

A run's commits are made by the storage's flush thread while the program goes
on. ``sqlite3`` releases the GIL while SQLite works on a statement and takes it
back after; a thread that wants it back while the program's thread computes waits
for the interpreter's switch interval (5 ms). Run one statement per row, as
``executemany`` does, and the flush thread inserts about 200 rows a second, or
steals the GIL from the program for each row if it commits on the program's
thread instead. Rows of one ``INSERT ... VALUES (?, ...)`` statement are
therefore inserted many at a time, as one multi-row ``VALUES`` statement: one
bind in Python, then thousands of rows inserted with the GIL released (on a
second core, at the same time as the program).

Each distinct statement text is parsed once and kept in the connection's
statement cache, so chunk sizes come from a small set: full chunks, and the last
one rounded up to a power of two. ``INSERT OR IGNORE`` rows are keyed by
content, so that last chunk is padded by repeating its last row (ignored as a
duplicate); other statements get their remainder as power-of-two chunks.

Only the standard library is imported here.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["Statement", "execute_batch"]

Statement = tuple[str, tuple[Any, ...]]

#: Rows per statement at most (a power of two): bigger statements save little
#: and take long to parse. SQLite also bounds the parameters per statement
#: (32,766 by default since 3.32, 999 before).
_MAX_ROWS = 4_096

#: ``INSERT ... VALUES (?, ?, ...)`` with one row of placeholders, and what follows
#: it (an ``ON CONFLICT`` clause).
_ONE_ROW = re.compile(
    r"^(INSERT\b.*?\bVALUES\s*)(\(\s*\?(?:\s*,\s*\?)*\s*\))(.*)$", re.S
)

#: Per statement text: (prefix, one row of placeholders, suffix, padding allowed),
#: or None when the statement cannot take several rows.
_shapes: dict[str, tuple[str, str, str, bool] | None] = {}


def execute_batch(conn: sqlite3.Connection, batch: Sequence[Statement]) -> None:
    """Execute ``batch`` in the current transaction: the rows of each statement
    text together, texts in order of first appearance.

    Buffered statements are ``INSERT OR IGNORE`` on content keys, upserts that
    keep the newest values, and updates of one run's row; only the run row's
    insert-then-update order matters, and first appearance keeps it.
    """
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for sql, params in batch:
        grouped.setdefault(sql, []).append(params)
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    for sql, rows in grouped.items():
        shape = _shape(sql) if len(rows) > 1 else None
        if shape is None:
            if len(rows) == 1:
                conn.execute(sql, rows[0])
            else:
                conn.executemany(sql, rows)
            continue
        prefix, one_row, suffix, pad = shape
        most = max(1, min(_MAX_ROWS, limit // len(rows[0])))
        per = 1 << (most.bit_length() - 1)  # padded chunks then never exceed it
        for chunk in _chunks(rows, per, pad):
            text = prefix + ", ".join([one_row] * len(chunk)) + suffix
            conn.execute(text, [value for row in chunk for value in row])


def _shape(sql: str) -> tuple[str, str, str, bool] | None:
    try:
        return _shapes[sql]
    except KeyError:
        pass
    match = _ONE_ROW.match(sql)
    shape = None
    if match is not None:
        prefix, one_row, suffix = match.groups()
        pad = prefix.upper().startswith("INSERT OR IGNORE") and not suffix.strip()
        shape = (prefix, one_row, suffix, pad)
    _shapes[sql] = shape
    return shape


def _chunks(
    rows: list[tuple[Any, ...]], per: int, pad: bool
) -> Iterator[list[tuple[Any, ...]]]:
    """``rows`` in chunks of ``per`` (a power of two); the rest in power-of-two
    sizes, or padded up to the next one with copies of its last row when ``pad``."""
    full = len(rows) - len(rows) % per
    for start in range(0, full, per):
        yield rows[start : start + per]
    rest = rows[full:]
    if not rest:
        return
    if pad:
        size = 1 << (len(rest) - 1).bit_length()
        yield rest + [rest[-1]] * (size - len(rest))
        return
    while rest:
        size = 1 << (len(rest).bit_length() - 1)
        yield rest[:size]
        rest = rest[size:]
