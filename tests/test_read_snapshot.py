"""The run-time reader's snapshot (``Storage._query``): reads share one read
transaction for speed, yet see any commit, this process's or another's, at the
next read (``_wal_watch``), and never hold back a checkpoint for long."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from autopersist._storage import SNAPSHOT_SECONDS, Storage
from autopersist._wal_watch import WalWatch

OP = "m:f"


def _call_row(n: int) -> tuple[object, ...]:
    """A ``calls`` row of op ``OP`` for inputs ``in-<n>``."""
    return (
        f"call-{n}",
        OP,
        "v1",
        f"in-{n}",
        "deps-0",
        f"out-{n}",
        "ok",
        "run-1",
        0.0,
        0.0,
        None,
        None,
    )


def _store(storage: Storage, n: int) -> None:
    storage.add_call(_call_row(n), [])
    storage.flush()


@pytest.fixture
def stores(tmp_path):
    opened: list[Storage] = []

    def open_store() -> Storage:
        storage = Storage(tmp_path / "store")
        opened.append(storage)
        return storage

    yield open_store
    for storage in opened:
        storage.close()


def test_reads_hold_a_snapshot_between_statements(stores):
    storage = stores()
    assert storage.candidates(OP, "in-0") == ()
    assert storage._read.in_transaction


def test_own_commit_is_seen_by_the_next_lookup(stores):
    """The commit ends the snapshot before its rows leave the buffers that
    lookups also read: a lookup right after finds the call in the database."""
    storage = stores()
    assert storage.candidates(OP, "in-1") == ()  # a snapshot from before the commit
    _store(storage, 1)
    assert storage._committing.calls == {}
    assert [c[0] for c in storage.candidates(OP, "in-1")] == ["call-1"]


def test_another_writers_commit_is_seen_at_the_next_read(stores):
    reader, writer = stores(), stores()
    assert reader.candidates(OP, "in-2") == ()
    assert reader._read.in_transaction
    _store(writer, 2)
    assert [c[0] for c in reader.candidates(OP, "in-2")] == ["call-2"]


def test_a_forked_childs_commit_is_seen_by_the_parent(stores):
    """The case of ``os.fork`` and process pools: the parent waits for a child
    that stored a call, then looks it up."""
    storage = stores()
    assert storage.candidates(OP, "in-7") == ()
    pid = os.fork()
    if pid == 0:  # the child: fresh connections (see _reset_in_child)
        try:
            _store(storage, 7)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert [c[0] for c in storage.candidates(OP, "in-7")] == ["call-7"]


def test_without_a_wal_index_every_read_is_its_own_transaction(stores, monkeypatch):
    def no_watch(db_path):
        raise OSError("no -shm file")

    monkeypatch.setattr("autopersist._storage.WalWatch", no_watch)
    reader, writer = stores(), stores()
    assert reader.candidates(OP, "in-8") == ()
    assert not reader._read.in_transaction
    _store(writer, 8)
    assert reader.candidates(OP, "in-8")


def test_the_header_changes_with_every_commit(stores):
    storage = stores()
    watch = WalWatch(storage.db_path)
    seen = {watch.header()}
    for n in range(10, 15):
        _store(storage, n)
        seen.add(watch.header())
    assert len(seen) == 6


def test_an_idle_reader_lets_checkpoints_finish(stores, tmp_path):
    """A program that read, then computes for a long time, must not keep its
    snapshot: other writers' checkpoints could not copy the WAL back past it."""
    reader, writer = stores(), stores()
    reader.add_row("INSERT OR IGNORE INTO deps VALUES (?, ?)", ("d", "[]"))
    reader.flush()  # the flush thread is running from now on
    assert reader.candidates(OP, "in-3") == ()
    assert reader._read.in_transaction
    for n in range(3, 6):
        _store(writer, n)
    conn = sqlite3.connect(tmp_path / "store" / "store.db")
    try:
        deadline = time.monotonic() + SNAPSHOT_SECONDS * 4 + 2
        while True:
            _busy, wal_pages, copied = conn.execute(
                "PRAGMA wal_checkpoint(PASSIVE)"
            ).fetchone()
            if wal_pages == copied and not reader._read.in_transaction:
                break
            assert time.monotonic() < deadline, "the idle reader held its snapshot"
            time.sleep(0.05)
    finally:
        conn.close()


def test_no_snapshot_is_held_while_this_process_commits(stores, monkeypatch):
    storage = stores()
    assert storage.candidates(OP, "in-6") == ()
    seen: list[bool] = []
    commit = storage._commit

    def commit_and_read(batch):
        def look():
            storage.candidates(OP, "in-x")
            seen.append(storage._read.in_transaction)

        look()  # before: the commit has not started
        storage._end_snapshot(committing=True)  # what _commit does first
        look()
        commit(batch)

    monkeypatch.setattr(storage, "_commit", commit_and_read)
    _store(storage, 6)
    assert seen == [True, False]
    assert storage.candidates(OP, "in-6")
    assert storage._read.in_transaction  # held again after the commit


def test_an_unreadable_header_holds_no_snapshot(stores, monkeypatch):
    """An empty header (the ``-shm`` file could not be read) would compare equal
    to another empty one: the read then runs in its own transaction instead."""
    reader, writer = stores(), stores()
    assert reader.candidates(OP, "in-20") == ()  # the watch exists from here on
    monkeypatch.setattr(WalWatch, "header", lambda self: b"")
    assert reader.candidates(OP, "in-20") == ()
    assert not reader._read.in_transaction
    _store(writer, 20)
    assert reader.candidates(OP, "in-20")


def test_ending_a_stale_snapshot_after_close_is_quiet(stores):
    """The flush thread may reach ``_end_stale_snapshot`` just after ``close()``
    closed the connections: nothing is raised (in a daemon thread it would
    print a traceback)."""
    storage = stores()
    assert storage.candidates(OP, "in-21") == ()
    storage.close()
    storage._snapshot_until = 0.0
    storage._end_stale_snapshot()
    assert storage._read_lock.acquire(blocking=False)  # released on the way out
    storage._read_lock.release()
