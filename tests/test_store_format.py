"""Store format upgrades: a store written by an older autopersist is upgraded in
place by the next run and keeps every stored call; gc never collects outputs."""

from __future__ import annotations

import json
import sqlite3

import pytest

import autopersist
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
    assert outs == 0  # format 2 stores no output edges
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
