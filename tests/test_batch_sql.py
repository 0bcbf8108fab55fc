"""A commit's statements run as multi-row statements (``_batch_sql``) and leave the
database exactly as one statement per row would."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from autopersist._batch_sql import _chunks, _shape, execute_batch

SCHEMA = """
CREATE TABLE keyed (k TEXT PRIMARY KEY, v INTEGER, b BLOB);
CREATE TABLE log (n INTEGER, note TEXT);
CREATE TABLE counts (k TEXT PRIMARY KEY, seen INTEGER, last TEXT);
"""
INSERT_KEYED = "INSERT OR IGNORE INTO keyed VALUES (?, ?, ?)"
INSERT_LOG = "INSERT INTO log VALUES (?, ?)"
UPSERT = (
    "INSERT INTO counts VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET "
    "seen = seen + excluded.seen, last = excluded.last"
)
UPDATE = "UPDATE counts SET seen = seen * ? WHERE k = ?"


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SCHEMA)
    return conn


def _one_by_one(conn: sqlite3.Connection, batch: list[tuple[str, Any]]) -> None:
    for sql, params in batch:
        conn.execute(sql, params)


def _dump(conn: sqlite3.Connection) -> list[list[Any]]:
    return [
        conn.execute("SELECT * FROM keyed ORDER BY rowid").fetchall(),
        conn.execute("SELECT * FROM log ORDER BY rowid").fetchall(),
        conn.execute("SELECT * FROM counts ORDER BY rowid").fetchall(),
    ]


def _batch(rows: int) -> list[tuple[str, Any]]:
    batch: list[tuple[str, Any]] = []
    for i in range(rows):
        # Keys repeat (i % 7): OR IGNORE keeps the first, the upsert accumulates.
        batch.append((INSERT_KEYED, (f"k{i % 997}", i, bytes([i % 256]) * (i % 5))))
        batch.append((INSERT_LOG, (i, f"note {i}")))
        batch.append((UPSERT, (f"c{i % 7}", 1, f"last {i}")))
    batch.append((UPDATE, (3, "c1")))
    return batch


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 100, 4_095, 4_096, 4_097, 10_001])
def test_same_database_as_one_statement_per_row(rows: int) -> None:
    batch = _batch(rows)
    expected, got = _db(), _db()
    _one_by_one(expected, batch)
    execute_batch(got, batch)
    assert _dump(got) == _dump(expected)


def test_rows_per_statement_respect_sqlite_parameter_limit() -> None:
    conn = _db()
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    batch = _batch(3_000)
    execute_batch(conn, batch)  # 999 // 3 = 333 rows -> chunks of 256
    expected = _db()
    _one_by_one(expected, batch)
    assert _dump(conn) == _dump(expected)


def test_chunks_are_powers_of_two_and_padding_repeats_the_last_row() -> None:
    rows = [(i,) for i in range(4_096 + 300)]
    padded = list(_chunks(rows, 4_096, pad=True))
    assert [len(c) for c in padded] == [4_096, 512]
    assert padded[1][:300] == rows[4_096:] and set(padded[1][300:]) == {rows[-1]}
    exact = list(_chunks(rows, 4_096, pad=False))
    assert [len(c) for c in exact] == [4_096, 256, 32, 8, 4]
    assert [row for chunk in exact for row in chunk] == rows


def test_only_single_row_inserts_take_several_rows() -> None:
    assert _shape(INSERT_KEYED) == (
        "INSERT OR IGNORE INTO keyed VALUES ",
        "(?, ?, ?)",
        "",
        True,
    )
    upsert = _shape(UPSERT)
    assert upsert is not None and upsert[3] is False  # never padded
    assert _shape(UPDATE) is None
    assert _shape("INSERT INTO log SELECT ?, ?") is None
