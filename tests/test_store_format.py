"""Store format upgrades: a store written by an older autopersist is upgraded in
place by the next run and keeps every stored call; gc never collects outputs."""

from __future__ import annotations

import json
import pickle
import sqlite3
from pathlib import Path

import pytest

import autopersist
from autopersist._codec import MAGIC, loads
from autopersist._schema import SCHEMA_VERSION
from autopersist._storage import check_consistency

pytestmark = pytest.mark.subprocess

SCRIPT = """
# persist
def square(x):
    return [x * x] * 3

print(sum(square(i)[0] for i in range(20)))
"""


def _downgrade_to_format_1(db: sqlite3.Connection) -> None:
    """Make a fresh store look like one written by format 1: an ``out`` row per
    call, the ``calls_by_run`` index, no ``calls.output_data``, a ``uses`` table
    (one row per reuse) instead of ``reuses``, user_version 1."""
    db.execute(
        "INSERT INTO call_values SELECT call_id, 'out', 'output', output_id "
        "FROM calls WHERE output_id IS NOT NULL"
    )
    db.execute("CREATE INDEX calls_by_run ON calls (run_id)")
    db.execute("ALTER TABLE calls DROP COLUMN output_data")
    db.execute("CREATE TABLE uses (run_id TEXT, call_id TEXT, used_at REAL)")
    db.execute(
        "INSERT INTO uses SELECT run_id, call_id, started FROM calls "
        "UNION ALL SELECT run_id, call_id, started + 1 FROM calls"
    )
    db.execute("DROP TABLE reuses")
    db.execute("PRAGMA user_version = 1")
    db.commit()


def test_a_format_1_store_is_upgraded_and_keeps_its_calls(project):
    project.write("s.py", SCRIPT)
    first = project.run("s.py")
    with project.db() as db:
        _downgrade_to_format_1(db)
    assert check_consistency(project.store) == []
    second = project.run("s.py")
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert second.counts()["computed"] == 0
    with project.db() as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = [row[1] for row in db.execute("PRAGMA table_info(calls)")]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        logged = [
            (run_id, len(json.loads(ids)))
            for run_id, ids in db.execute("SELECT run_id, call_ids FROM reuses")
        ]
    assert columns[-1] == "output_data"
    assert "uses" not in tables
    # the old log, one row per run, and the second run's reuses, one row
    assert sorted(count for _, count in logged) == [20, 40]
    assert check_consistency(project.store) == []
    # Calls stored by format 1 have no output copy: read from value_rows.
    third = project.run("s.py")
    assert third.stdout == first.stdout and third.counts()["computed"] == 0


def test_gc_keeps_outputs_named_only_by_their_calls(project):
    project.write("s.py", SCRIPT)
    first = project.run("s.py")
    with project.db() as db:
        outs = db.execute(
            "SELECT count(*) FROM call_values WHERE role = 'out'"
        ).fetchone()[0]
        outputs = db.execute("SELECT count(DISTINCT output_id) FROM calls").fetchone()
    assert outs == 0  # formats 2 and up store no output edges
    with autopersist.Store(project.store) as store:
        assert store.gc().values == 0
    with project.db() as db:
        kept = db.execute(
            "SELECT count(*) FROM value_rows WHERE value_id IN "
            "(SELECT output_id FROM calls)"
        ).fetchone()
    assert kept == outputs
    again = project.run("s.py")
    assert again.stdout == first.stdout
    assert again.counts()["computed"] == 0


ARRAYS = """
# persist
import sys

import numpy as np


def make(n):
    return np.arange(n, dtype=np.float64)


def scaled(a, k):
    return a * k


a = make(100_000)
b = scaled(a, int(sys.argv[1]))
b[0] = -1.0  # a reused result is writable
print(float(a.sum()), float(b.sum()))
"""


def _downgrade_to_format_2(db: sqlite3.Connection, store: Path) -> int:
    """Make a fresh store look like one written by format 2: every blob file a
    plain protocol-5 pickle (its large buffers in band) with its size in its row,
    user_version 2. Returns the number of blob files rewritten."""
    rows = db.execute("SELECT value_id FROM value_rows WHERE data IS NULL").fetchall()
    for (value_id,) in rows:
        path = store / "blobs" / value_id[:2] / value_id[2:]
        old = pickle.dumps(loads(path.read_bytes()), 5)
        path.write_bytes(old)
        db.execute(
            "UPDATE value_rows SET size = ? WHERE value_id = ?", (len(old), value_id)
        )
    db.execute("PRAGMA user_version = 2")
    db.commit()
    return len(rows)


def _blob_heads(store: Path) -> set[bytes]:
    return {
        path.read_bytes()[:4]
        for path in (store / "blobs").rglob("*")
        if path.is_file() and not path.name.startswith(".tmp-")
    }


def test_a_format_2_store_is_upgraded_and_its_plain_pickle_blobs_load(project):
    pytest.importorskip("numpy")
    project.write("arrays.py", ARRAYS)
    first = project.run("arrays.py", "2")
    assert first.returncode == 0, first.stderr
    assert _blob_heads(project.store) == {MAGIC}  # arrays: framed (format 3)
    with project.db() as db:
        assert _downgrade_to_format_2(db, project.store) == 2
    assert {head[:1] for head in _blob_heads(project.store)} == {b"\x80"}
    assert check_consistency(project.store) == []
    second = project.run("arrays.py", "2")
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert second.counts()["computed"] == 0
    assert "unreadable" not in second.stderr
    with project.db() as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        meta = db.execute(
            "SELECT value FROM _autopersist_meta WHERE key = 'schema_version'"
        ).fetchone()
    assert meta == (str(SCHEMA_VERSION),)
    assert check_consistency(project.store) == []


def test_an_old_blob_stays_readable_when_a_new_call_stores_its_value_again(project):
    """After the upgrade, a new call taking a value that a format-2 blob holds
    stores that value again (in the framed layout, another size): the calls that
    reuse the old blob must still find a file of the size their row records."""
    pytest.importorskip("numpy")
    project.write("arrays.py", ARRAYS)
    first = project.run("arrays.py", "2")
    with project.db() as db:
        _downgrade_to_format_2(db, project.store)
    other = project.run("arrays.py", "3")  # scaled(a, 3) is new: stores a again
    assert other.returncode == 0, other.stderr
    assert other.counts()["computed"] == 1
    assert check_consistency(project.store) == []
    again = project.run("arrays.py", "2")
    assert again.stdout == first.stdout
    assert again.counts()["computed"] == 0, again.stderr
