"""The store on disk: one SQLite database (WAL) plus content-addressed blob files.

Two paths with different needs share this module:

* the run-time path (``Storage``) uses the standard library's ``sqlite3`` directly:
  it runs inside the user's program, where importing sqlite-utils would cost about
  300 ms (it imports pandas) and its per-row conveniences would cost microseconds
  per call;
* the query path (``open_query_database``) hands out a ``sqlite_utils.Database``
  for the Store API and the CLI, imported on first use.

Durability (see docs/durability.md): writes are buffered in memory and committed
in one transaction at least every ``FLUSH_SECONDS`` (by a daemon thread), at
``flush()`` and at ``close()``; in child processes (``commit_each_call``) at the
end of every call, because workers often leave through ``os._exit``. A blob file is
written completely (temporary name, then an atomic rename) before the row that
names it is committed, and a call is buffered after its values, so a kill at any
moment leaves a consistent store that keeps every call committed before it.
``check_consistency`` verifies exactly that. Rows are inserted with ``INSERT OR
IGNORE`` on content-derived keys, so several processes can write one store at once
without duplicates; ``BEGIN IMMEDIATE`` plus a long busy timeout serializes them.

Fork safety: a forked child must not use its parent's SQLite connections, so an
``os.register_at_fork`` hook quiesces every open ``Storage`` before ``fork()`` and
gives the child fresh connections, locks and an empty buffer (the parent commits
what it had buffered).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
import weakref
from itertools import chain
from pathlib import Path
from typing import Any

from autopersist._batch_sql import Statement, execute_batch
from autopersist._blobfile import read_blob
from autopersist._call_index import (
    COUNTED_CALLS,
    INDEX_LOAD_SHARE,
    LOAD_AFTER_LOOKUPS,
    LOAD_SHARE,
    LOAD_SHARE_HITS,
    Candidate,
    OpIndex,
)
from autopersist._schema import DDL, SCHEMA_VERSION, TABLE_SINCE, UPGRADES
from autopersist._wal_watch import WalWatch, kept_fd
from autopersist.errors import SchemaVersionError, StorageError

LOG = logging.getLogger(__name__)

DB_NAME = "store.db"
BLOB_DIR = "blobs"
#: Values whose pickled form is larger than this live in blob files.
INLINE_LIMIT = 64 * 1024
#: A finished call is committed at most this long after it finished.
FLUSH_SECONDS = 0.5
#: Buffered statements above which the writing thread commits them itself (a new
#: call buffers about four, ~1.5 KB in all: this bounds the buffer near 80 MB).
BACKPRESSURE_STATEMENTS = 200_000
#: How long a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT_MS = 120_000
#: While commits fail (full disk), keep at most this many statements to retry.
MAX_RETRY_STATEMENTS = 200_000
#: Page cache of the writing connection, in KiB (see ``_tune_writer``), and of
#: the reading one (see ``Storage._query``).
WRITER_CACHE_KIB = 64 * 1024
READER_CACHE_KIB = 64 * 1024
#: Longest time the reading connection keeps one snapshot (see ``Storage._query``),
#: even while nobody commits.
SNAPSHOT_SECONDS = FLUSH_SECONDS
#: Page size of new stores (see ``_prepare_new_store``).
PAGE_SIZE = 16_384
#: WAL pages after which a commit checkpoints (see ``_tune_writer``).
WAL_CHECKPOINT_PAGES = 5_000  # 80 MB of 16 KiB pages
#: Row values per ``IN (VALUES ...)`` statement (SQLite allows 32,766 parameters).
_ROW_VALUES_PER_STATEMENT = 500

_SQLITE_MAGIC = b"SQLite format 3\x00"
_INSERT_VALUE = "INSERT OR IGNORE INTO value_rows VALUES (?, ?, ?, ?, ?, ?)"
_INSERT_DEPS = "INSERT OR IGNORE INTO deps VALUES (?, ?)"
_INSERT_CALL = "INSERT OR IGNORE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_EDGE = "INSERT OR IGNORE INTO call_values VALUES (?, ?, ?, ?)"
_INSERT_LINK = "INSERT OR IGNORE INTO call_links VALUES (?, ?, ?, ?, ?)"
_INSERT_PARENT = "INSERT OR IGNORE INTO call_parents VALUES (?, ?)"
_SET_META = "INSERT OR REPLACE INTO _autopersist_meta VALUES (?, ?)"

#: A log, one row per run and commit: a run may reuse a call from its in-memory
#: index after another process forgot it; its row then names a call no longer
#: stored (not an inconsistency).
_INSERT_REUSES = "INSERT INTO reuses VALUES (?, ?, ?)"

_COUNT_INTO_RUN = (
    "UPDATE runs SET calls = calls + ?, reused = reused + ?, computed = computed + ?, "
    "failed = failed + ? WHERE run_id = ?"
)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """An autocommit connection that waits for other writers (the store's one way
    to open its database, for runs and queries alike)."""
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(
        uri,
        uri=True,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,  # autocommit; transactions are explicit
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def _storage_error(store_dir: Path, exc: BaseException) -> StorageError:
    text = str(exc) or type(exc).__name__
    errno = getattr(exc, "errno", None)
    if "not a database" in text or "malformed" in text:
        msg = (
            f"{store_dir / DB_NAME} is not a readable autopersist store ({text}); "
            "move it aside or point --store / AUTOPERSIST_STORE at another directory."
        )
    elif ("disk" in text and "full" in text) or errno == 28:  # ENOSPC
        msg = (
            f"the disk holding the store {store_dir} is full ({text}); free space and "
            "run again (calls committed before this point are kept)."
        )
    elif (
        "readonly" in text
        or "read-only" in text
        or "unable to open" in text
        or errno in (1, 13, 30)  # EPERM, EACCES, EROFS
    ):
        msg = (
            f"cannot write the store in {store_dir} ({text}); make the directory "
            "writable, or point --store at a writable directory."
        )
    elif "locked" in text or "busy" in text:
        msg = (
            f"the store {store_dir} stayed locked by another process for "
            f"{BUSY_TIMEOUT_MS // 1000} s ({text}); check for a hung autopersist "
            "process, or use another --store."
        )
    else:
        msg = f"the store {store_dir} failed ({text}); set AUTOPERSIST_DEBUG=1 for details."
    return StorageError(msg)


def check_store_dir(store_dir: Path, *, create: bool, write: bool = False) -> None:
    """Raise a clear ``StorageError`` when ``store_dir`` cannot hold a store."""
    if store_dir.exists() and not store_dir.is_dir():
        msg = (
            f"the store path {store_dir} is a file, not a directory; pass --store "
            "with a directory path (it is created if missing)."
        )
        raise StorageError(msg)
    if not store_dir.exists():
        if not create:
            msg = (
                f"no autopersist store at {store_dir}; run a script with "
                "'autopersist run' first, or pass --store with the right directory."
            )
            raise StorageError(msg)
        try:
            store_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = (
                f"cannot create the store directory {store_dir} ({exc.strerror}); "
                "pass --store with a directory you can write."
            )
            raise StorageError(msg) from exc
    if not os.access(store_dir, os.R_OK | os.X_OK):
        msg = (
            f"the store directory {store_dir} is not readable; fix its permissions "
            f"(chmod u+rx {store_dir}) or pass --store with another directory."
        )
        raise StorageError(msg)
    if write:
        # os.access also sees immutable directories and read-only mounts, even as root.
        targets = [store_dir, store_dir / DB_NAME]
        for target in targets:
            if target.exists() and not os.access(target, os.W_OK):
                msg = (
                    f"the store {target} is read-only; make it writable (chmod u+w "
                    f"{target}) or pass --store with a writable directory."
                )
                raise StorageError(msg)


def read_header_version(db_path: Path) -> int | None:
    """The store's format version, read from the file header without SQLite, so a
    foreign or newer file is refused before anything could touch it; None when the
    file is empty (a store being created).

    :raises StorageError: the file is not an SQLite database.
    """
    try:
        head = os.pread(kept_fd(db_path), 100, 0)
    except OSError as exc:
        raise _storage_error(db_path.parent, exc) from exc
    if not head:
        return None
    if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
        msg = (
            f"{db_path} is not an autopersist store (not an SQLite database); move it "
            "aside or point --store / AUTOPERSIST_STORE at another directory."
        )
        raise StorageError(msg)
    return int.from_bytes(head[60:64], "big")  # PRAGMA user_version lives here


def _refuse_newer(found: int, store_dir: Path) -> None:
    if found > SCHEMA_VERSION:
        msg = (
            f"{store_dir} was written by a newer autopersist (store format "
            f"{found}, this version reads {SCHEMA_VERSION}); upgrade autopersist "
            "or use another --store."
        )
        raise SchemaVersionError(msg)


def check_schema_version(conn: sqlite3.Connection, store_dir: Path) -> int:
    """The store's format version; refuse a newer one. Reads only."""
    try:
        found: int = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise _storage_error(store_dir, exc) from exc
    _refuse_newer(found, store_dir)
    return found


def _table_names() -> list[str]:
    names = []
    for statement in DDL.split(";"):
        words = statement.split()
        if words[:2] == ["CREATE", "TABLE"]:
            names.append(
                words[5] if words[2:5] == ["IF", "NOT", "EXISTS"] else words[2]
            )
    return names


TABLES = tuple(_table_names())


def _missing_tables(conn: sqlite3.Connection) -> list[str]:
    present = {
        row[0]
        for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    return [name for name in TABLES if name not in present]


def create_schema(conn: sqlite3.Connection, store_dir: Path) -> None:
    """Create the tables of a new store (a no-op when another process won the race)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found < SCHEMA_VERSION:
            if found:  # an existing store of an older format
                for version in range(found, SCHEMA_VERSION):
                    for statement in UPGRADES.get(version, ()):
                        conn.execute(statement)
            for statement in DDL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(_SET_META, ("schema_version", str(SCHEMA_VERSION)))
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise _storage_error(store_dir, exc) from exc


class _Pending:
    """Buffered rows that lookups must see before they are committed."""

    __slots__ = ("calls", "deps", "values")

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
        self.values: dict[str, bytes | Path] = {}
        self.deps: dict[str, str] = {}

    def absorb(self, newer: _Pending) -> None:
        for key, rows in newer.calls.items():
            self.calls.setdefault(key, []).extend(rows)
        self.values.update(newer.values)
        self.deps.update(newer.deps)


#: Open stores, quiesced around ``fork()`` (see ``_before_fork``).
_live: weakref.WeakSet[Storage] = weakref.WeakSet()
#: Connections inherited across fork: never used and never closed in the child.
_abandoned: list[sqlite3.Connection] = []


class Storage:
    """Read and buffered write access to one store, for the run-time path.

    Locks (always taken in this order): ``_commit_lock`` serializes commits on the
    write connection; ``_lock`` guards the buffer and the pending indexes (held
    only for list and dict operations, never while waiting for SQLite, so a busy
    store does not stall the program); ``_read_lock`` guards the read connection.
    Lookups see buffered rows through ``_pending`` (buffered) and ``_committing``
    (in the transaction being committed).
    """

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.db_path = store_dir / DB_NAME
        check_store_dir(store_dir, create=True, write=True)
        if self.db_path.exists():
            found = read_header_version(self.db_path)
            if found is not None:
                _refuse_newer(found, store_dir)
        try:
            self._write = connect(self.db_path)
            _prepare_new_store(self._write, store_dir)
            missing = _missing_tables(self._write)
            _tune_writer(self._write)
            self._read = _reader(self.db_path)
            wal = self._write.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        except sqlite3.Error as exc:
            raise _storage_error(store_dir, exc) from exc
        if missing:
            msg = (
                f"the store {store_dir} is damaged (tables missing: "
                f"{', '.join(missing)}); move it aside and run again."
            )
            raise StorageError(msg)
        self._init_state()
        self._wal = wal
        _live.add(self)

    def _init_state(self) -> None:
        self._commit_lock = threading.RLock()
        self._lock = threading.RLock()
        self._read_lock = threading.RLock()
        self._buffer: list[Statement] = []
        #: Reused call ids by run, not yet buffered as a ``reuses`` row.
        self._uses: dict[str, list[str]] = {}
        self._use_count = 0
        self._pending = _Pending()
        self._committing = _Pending()
        #: When buffered rows must be committed at the latest (monotonic clock).
        self._commit_due = time.monotonic() + FLUSH_SECONDS
        self._known_values: set[str] = set()
        self._known_deps: set[str] = set()
        self._deps_cache: dict[str, dict[str, str]] = {}
        #: Ops whose reusable calls are held in memory (see ``_call_index``); for
        #: the others, the SQL lookups made so far, how many found a call, and
        #: how many calls the store held of the op when first asked
        #: (``_stored_calls``).
        self._indexes: dict[str, OpIndex] = {}
        self._lookups: dict[str, int] = {}
        self._hits: dict[str, int] = {}
        self._stored: dict[str, int] = {}
        self._closed = False
        #: The first write error; reported by ``close()``.
        self._error: StorageError | None = None
        #: After a write error that lost data, nothing more is buffered.
        self._dropping = False
        #: Child processes commit at the end of every call and count into their run.
        self._each_call = False
        self._count_run: str | None = None
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        #: The reads' snapshot (see ``_query``): the WAL-index header when it
        #: began, and when it ends at the latest (monotonic clock).
        self._watch: WalWatch | None = None
        self._snapshot_header = b""
        self._snapshot_until = 0.0
        #: True while this process commits: reads hold no snapshot then.
        self._committing_now = False

    def commit_each_call(self, run_id: str) -> None:
        """Commit at the end of every call (and reuse), adding the counts to run
        ``run_id``: for worker processes, which often exit through ``os._exit``."""
        self._each_call = True
        self._count_run = run_id

    # -- reads ---------------------------------------------------------------

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Rows of one read statement.

        Reads share one snapshot (a read transaction) while nobody commits: a
        statement in a transaction of its own takes and drops SQLite's file
        locks, system calls that cost more than the search of an index (~2.5 of
        ~4.5 µs per lookup). One read of the WAL-index header (``_wal_watch``,
        ~0.5 µs) tells whether any process committed since the snapshot began; if so,
        the read starts a new one, so a commit is seen as soon as without a held
        snapshot. No snapshot is held while this process commits, nor for longer
        than ``SNAPSHOT_SECONDS`` (the flush thread ends one left idle), so that
        this reader does not hold back checkpoints; and only in WAL mode, where a
        reader never blocks a writer.
        """
        try:
            with self._read_lock:
                if self._wal and not self._committing_now:
                    watch = self._watch
                    if (
                        watch is None
                        or watch.header() != self._snapshot_header
                        or time.monotonic() >= self._snapshot_until
                        or not self._read.in_transaction
                    ):
                        self._new_snapshot()
                return self._read.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _storage_error(self.store_dir, exc) from exc

    def _new_snapshot(self) -> None:
        """End the reads' snapshot and begin another (under ``_read_lock``); it
        takes effect at the next statement, so the header is read first: a
        commit in between only makes the next read begin yet another."""
        self._drop_snapshot()
        if self._watch is None:
            try:
                self._watch = WalWatch(self.db_path)
            except (OSError, ValueError):
                self._wal = False  # no watch, no snapshot: each statement in its own
                return
        header = self._watch.header()
        if not header:
            return  # unreadable now: this read in its own transaction
        self._snapshot_header = header
        self._read.execute("BEGIN")
        self._snapshot_until = time.monotonic() + SNAPSHOT_SECONDS

    def _drop_snapshot(self) -> None:
        """End the reads' read transaction, if any (under ``_read_lock``)."""
        with contextlib.suppress(sqlite3.Error):  # also: the connection is closed
            if not self._closed and self._read.in_transaction:
                self._read.execute("COMMIT")

    def _end_snapshot(self, *, committing: bool) -> None:
        """End the reads' snapshot, so the next read sees the latest commits (a
        commit ends it before its rows leave ``_committing``); ``committing``: hold
        none until this process's commit has ended."""
        with self._read_lock:
            self._committing_now = committing
            self._snapshot_until = 0.0
            self._drop_snapshot()

    def candidates(self, op_id: str, inputs_id: str) -> tuple[Candidate, ...]:
        """Stored reusable calls ``(call_id, deps_id, output_id, pickled output or
        None)`` for these inputs, first stored first: one indexed query per lookup, or,
        for an op looked up often, a dict lookup in its in-memory index."""
        index = self._indexes.get(op_id)
        if index is not None:
            return index.get(inputs_id)
        lookups = self._lookups.get(op_id, 0) + 1
        self._lookups[op_id] = lookups
        if lookups >= LOAD_AFTER_LOOKUPS:
            stored = self._stored.get(op_id)
            if stored is None:
                stored = self._stored[op_id] = self._stored_calls(op_id)
            if (
                lookups >= stored * LOAD_SHARE
                or self._hits.get(op_id, 0) >= stored * LOAD_SHARE_HITS
            ):
                return self._load_index(op_id, stored).get(inputs_id)
        found: list[Candidate] = self._query(
            "SELECT call_id, deps_id, output_id, output_data FROM calls "
            "WHERE op_id = ? AND inputs_id = ? AND status = 'ok' ORDER BY rowid",
            (op_id, inputs_id),
        )
        for pending in (self._committing, self._pending):
            buffered = pending.calls.get((op_id, inputs_id))
            if buffered:
                found.extend((*row, None) for row in buffered)
        if found:
            self._hits[op_id] = self._hits.get(op_id, 0) + 1
        return tuple(found)

    def _stored_calls(self, op_id: str) -> int:
        """How many calls the store holds of ``op_id``: counted in its range of
        ``calls_by_inputs`` (~0.03 µs a call) up to ``COUNTED_CALLS``, so that
        other ops' calls do not delay a small op's load; beyond, the whole
        store's (an upper bound, read at once), as counting a big op's calls
        through would cost a short run more than it could save."""
        rows = self._query(
            "SELECT count(*) FROM (SELECT 1 FROM calls WHERE op_id = ? LIMIT ?)",
            (op_id, COUNTED_CALLS),
        )
        if rows[0][0] < COUNTED_CALLS:
            return int(rows[0][0])
        return self._store_size()

    def _store_size(self) -> int:
        """How many calls the store holds, about (the last row's id: read at once)."""
        return int(self._query("SELECT max(rowid) FROM calls", ())[0][0] or 0)

    def _load_index(self, op_id: str, stored: int) -> OpIndex:
        """Read all of ``op_id``'s reusable calls (``stored``: about how many calls
        of it the store holds, see ``_stored_calls``) into an ``OpIndex``, which
        from now on also receives the calls this process stores."""
        index = OpIndex()
        # No commit may move rows from ``_committing`` to the database between the
        # read and the merge of the buffered rows below.
        with self._commit_lock:
            # Through the op's range of ``calls_by_inputs`` (a probe of the table
            # per call) when the op holds few of the store's calls; else a scan of
            # the whole table in storage order, which reads each page once.
            by_index = stored < self._store_size() * INDEX_LOAD_SHARE
            rows = self._query(
                "SELECT inputs_id, call_id, deps_id, output_id, output_data "
                f"FROM calls WHERE {'' if by_index else '+'}op_id = ? "
                "AND status = 'ok' ORDER BY rowid",
                (op_id,),
            )
            index.extend(rows)
            with self._lock:
                for pending in (self._committing, self._pending):
                    for (op, inputs_id), calls in pending.calls.items():
                        if op == op_id:
                            for call_id, deps_id, output_id in calls:
                                index.add(inputs_id, call_id, deps_id, output_id, None)
                self._indexes[op_id] = index
        return index

    def deps(self, deps_id: str) -> dict[str, str]:
        """A stored dependency set; parsed once per process (it never changes)."""
        found = self._deps_cache.get(deps_id)
        if found is not None:
            return found
        data = self._pending.deps.get(deps_id) or self._committing.deps.get(deps_id)
        if data is None:
            rows = self._query("SELECT data FROM deps WHERE deps_id = ?", (deps_id,))
            data = rows[0][0] if rows else "[]"
        found = {name: value for name, value in json.loads(data)}
        if len(self._deps_cache) > 10_000:
            self._deps_cache.clear()
        self._deps_cache[deps_id] = found
        return found

    def value_bytes(self, value_id: str) -> bytes | memoryview:
        """The pickled bytes of a stored value; a blob file's as a fresh, private
        copy-on-write mapping (``_blobfile.read_blob``), read only where touched.

        :raises StorageError: the value is missing, or its blob file is damaged.
        """
        pending = self._pending.values.get(value_id)
        if pending is None:
            pending = self._committing.values.get(value_id)
        if isinstance(pending, bytes):
            return pending
        size: int | None = None
        if pending is None:
            rows = self._query(
                "SELECT data, size FROM value_rows WHERE value_id = ?", (value_id,)
            )
            if not rows:
                msg = f"value {value_id} is missing from the store {self.store_dir}."
                raise StorageError(msg)
            if rows[0][0] is not None:
                return bytes(rows[0][0])
            size = rows[0][1]
        path = self.blob_path(value_id)
        try:
            data = read_blob(path)
        except OSError as exc:
            msg = f"the blob file {path} of value {value_id} cannot be read ({exc})."
            raise StorageError(msg) from exc
        if size is not None and len(data) != size:
            msg = f"the blob file {path} has {len(data)} bytes, expected {size}."
            raise StorageError(msg)
        return data

    def meta_value(self, key: str) -> str | None:
        """A committed value of ``_autopersist_meta``, or None."""
        rows = self._query("SELECT value FROM _autopersist_meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def add_meta(self, key: str, value: str) -> None:
        """Buffer a value of ``_autopersist_meta`` (committed with the rows before)."""
        self.add_row(_SET_META, (key, value))

    def known_versions(self, module: str) -> set[tuple[str, str]]:
        """``(func_id, version_id)`` stored for the functions of ``module``."""
        # func_ids are "module:qualname": the range [module + ":", module + ";")
        # holds exactly this module's, and the primary key serves it.
        rows = self._query(
            "SELECT func_id, version_id FROM versions WHERE func_id >= ? "
            "AND func_id < ?",
            (module + ":", module + ";"),
        )
        return {(func_id, version) for func_id, version in rows}

    def mark_versions_seen(
        self,
        module: str,
        qualnames: list[str],
        versions: list[str],
        now: float,
        run_id: str,
    ) -> None:
        """Buffer one statement setting ``last_seen`` of the stored versions
        ``(module:qualnames[i], versions[i])``. On the path of every import: the
        parameters are the module's prefix once and the two lists interleaved,
        with no string or tuple made per version (SQLite joins each func_id)."""
        step = _ROW_VALUES_PER_STATEMENT
        prefix = module + ":"
        for start in range(0, len(qualnames), step):
            pairs = zip(
                qualnames[start : start + step],
                versions[start : start + step],
                strict=True,
            )
            params = (now, run_id, prefix, *chain.from_iterable(pairs))
            # ?3 is the prefix; a bare ? takes the number after the highest used.
            rows = ", ".join(["(?3 || ?, ?)"] * ((len(params) - 3) // 2))
            self.add_row(
                "UPDATE versions SET last_seen = ?1, last_run_id = ?2 "
                f"WHERE (func_id, version_id) IN (VALUES {rows})",
                params,
            )

    def accepted_rows(self) -> list[tuple[str, str, str, str | None]]:
        """``(func_id, old_version, new_version, new_params_json)`` declared
        compatible with ``autopersist accept``."""
        return self._query(
            "SELECT func_id, old_version, new_version, new_params FROM accepted", ()
        )

    def version_source(self, func_id: str, version_id: str) -> str | None:
        """The stored source of a version (``version_id`` or its ``call_version``)."""
        rows = self._query(
            "SELECT source FROM versions WHERE func_id = ? "
            "AND (version_id = ? OR call_version = ?)",
            (func_id, version_id, version_id),
        )
        return None if not rows else str(rows[0][0])

    def run_totals(self, run_id: str) -> tuple[int, int, int, int] | None:
        """Committed ``(calls, reused, computed, failed)`` of a run, its child
        processes included."""
        rows = self._query(
            "SELECT calls, reused, computed, failed FROM runs WHERE run_id = ?",
            (run_id,),
        )
        return tuple(rows[0]) if rows else None

    # -- writes (buffered) ---------------------------------------------------------

    def blob_path(self, value_id: str) -> Path:
        return self.store_dir / BLOB_DIR / value_id[:2] / value_id[2:]

    def _accepting(self) -> bool:
        """Called with ``_lock`` held before buffering: False when the store no
        longer accepts writes; else True, with the flush thread started."""
        if self._dropping or self._closed:
            return False
        if self._flusher is None:
            self._start_flusher()
        return True

    def _append(self, statements: list[Statement]) -> bool:
        """Buffer statements; False when the store no longer accepts writes."""
        with self._lock:
            if not self._accepting():
                return False
            self._buffer.extend(statements)
            return True

    def _backpressure(self) -> bool:
        """True when the buffer is so long that the writing thread must commit it
        itself (called outside ``_lock``), to bound memory.

        Otherwise the flush thread commits every ``FLUSH_SECONDS``: its commits run
        as a few long SQLite steps that release the GIL (``_batch_sql``), so on a
        second core they cost the program little. A program that produces rows
        faster than they commit pays for the commit itself."""
        return len(self._buffer) + self._use_count > BACKPRESSURE_STATEMENTS

    def add_value(
        self, value_id: str, data: bytes, type_name: str, preview: str
    ) -> None:
        """Store a value once; large ones go to a blob file written right away."""
        if value_id in self._known_values or self._dropping:
            return
        inline: bytes | None = data
        if len(data) > INLINE_LIMIT:
            try:
                self._write_blob(value_id, data)
            except StorageError as exc:
                # The call that needs this value must not be committed without it:
                # stop buffering altogether (the program itself runs on).
                self._fail(exc, dropping=True)
                return
            inline = None
        row = (value_id, type_name, len(data), preview, inline, time.time())
        # On the path of most new calls: the row is buffered here, under the lock
        # taken once, rather than through ``_append``, which would take it again.
        with self._lock:
            if not self._accepting():
                return
            self._buffer.append((_INSERT_VALUE, row))
            self._pending.values[value_id] = (
                data if inline is not None else self.blob_path(value_id)
            )
            # Known only once its row is buffered: a call naming it commits after it.
            if len(self._known_values) > 200_000:  # bounded memory in long runs
                self._known_values.clear()
            self._known_values.add(value_id)

    def _write_blob(self, value_id: str, data: bytes) -> None:
        path = self.blob_path(value_id)
        with contextlib.suppress(OSError):
            found = path.stat().st_size
            # Written by this or another process (same content, same id), maybe in
            # an older layout (format 2: plain pickles) that its row's size records.
            if found == len(data) or found == self._committed_size(value_id):
                return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, path)  # atomic: readers see all bytes or no file
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise _storage_error(self.store_dir, exc) from exc

    def _committed_size(self, value_id: str) -> int | None:
        """The size the committed row of ``value_id`` records, or None."""
        rows = self._query(
            "SELECT size FROM value_rows WHERE value_id = ?", (value_id,)
        )
        return rows[0][0] if rows else None

    def knows_value(self, value_id: str) -> bool:
        """True when this process already stored ``value_id`` (no need to pickle it)."""
        return value_id in self._known_values

    def add_deps(self, deps_id: str, data: str) -> None:
        if deps_id in self._known_deps:
            return
        with self._lock:
            if self._append([(_INSERT_DEPS, (deps_id, data))]):
                self._pending.deps[deps_id] = data
                if len(self._known_deps) > 100_000:  # bounded memory in long runs
                    self._known_deps.clear()
                self._known_deps.add(deps_id)

    def add_call(
        self,
        row: tuple[Any, ...],
        edges: list[tuple[str, str, str, str]],
        links: list[tuple[str, str, str, str, str]] = (),  # type: ignore[assignment]
        children: list[str] = (),  # type: ignore[assignment]
        output: bytes | None = None,
    ) -> None:
        """Buffer a call row (``calls`` column order), its value edges, provenance
        links, and the calls made while it computed (``children``). Its values and
        deps must have been added before, so they commit no later than the call.
        ``output`` (the pickled output, when at hand) lets a reuse skip reading it."""
        call_id = row[0]
        # On the path of every new call: the statements go straight into the
        # buffer (a call has one or two, rarely links or children), under the lock
        # that a commit takes to swap the buffer.
        with self._lock:
            if not self._accepting():
                return
            buffer = self._buffer
            buffer.append((_INSERT_CALL, row))
            for edge in edges:
                buffer.append((_INSERT_EDGE, edge))
            if links:
                buffer += [(_INSERT_LINK, link) for link in links]
            if children:
                buffer += [(_INSERT_PARENT, (child, call_id)) for child in children]
            if row[6] == "ok":  # status: a reusable call, which lookups must see
                op_id, inputs_id = row[1], row[3]
                index = self._indexes.get(op_id)
                if index is not None:
                    index.add(inputs_id, call_id, row[4], row[5], output)
                else:
                    self._pending.calls.setdefault((op_id, inputs_id), []).append(
                        (call_id, row[4], row[5])
                    )
        if self._each_call or self._backpressure():
            self._flush_quietly()

    def add_use(self, run_id: str, call_id: str) -> None:
        """Record that ``run_id`` reused stored call ``call_id``. On the path of
        every reuse: the ids are collected and written as one ``reuses`` row per
        run and commit."""
        with self._lock:
            if not self._accepting():
                return
            found = self._uses.get(run_id)
            if found is None:
                found = self._uses[run_id] = []
            found.append(call_id)
            self._use_count += 1
        if self._each_call or self._backpressure():
            self._flush_quietly()

    def add_row(self, sql: str, params: tuple[Any, ...]) -> None:
        """Buffer any other statement (functions, versions, uses, run updates)."""
        if self._append([(sql, params)]) and self._backpressure():
            self._flush_quietly()

    def execute_now(self, sql: str, params: tuple[Any, ...]) -> None:
        """Run one write statement in its own committed transaction."""
        with self._commit_lock:
            self._commit([(sql, params)])

    # -- committing ----------------------------------------------------------------

    def _commit(self, batch: list[Statement]) -> None:
        conn = self._write
        self._end_snapshot(committing=True)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                execute_batch(conn, batch)
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _storage_error(self.store_dir, exc) from exc
        finally:
            self._end_snapshot(committing=False)

    def flush(self) -> None:
        """Commit everything buffered, in one transaction.

        :raises StorageError: the commit failed; the rows stay buffered for a retry.
        """
        with self._commit_lock:
            with self._lock:
                if not self._buffer and not self._uses:
                    self._commit_due = time.monotonic() + FLUSH_SECONDS
                    return
                batch, self._buffer = self._buffer, []
                taken = time.monotonic()
                reused = self._use_count
                if self._uses:
                    now = time.time()
                    batch.extend(
                        (_INSERT_REUSES, (run_id, now, json.dumps(ids)))
                        for run_id, ids in self._uses.items()
                    )
                    self._uses, self._use_count = {}, 0
                self._committing, self._pending = self._pending, _Pending()
            statements = batch
            if self._count_run is not None:
                statements = [*batch, _run_counts(batch, reused, self._count_run)]
            try:
                self._commit(statements)
            except StorageError:
                with self._lock:
                    # Back in front, in order: a retry commits them before newer rows.
                    self._buffer[:0] = batch
                    self._committing.absorb(self._pending)
                    self._pending, self._committing = self._committing, _Pending()
                    if len(self._buffer) > MAX_RETRY_STATEMENTS:
                        # Bounded memory: give up on everything not committed yet.
                        self._buffer.clear()
                        self._dropping = True
                raise
            with self._lock:
                self._committing = _Pending()
                # Counted from when this batch was taken, not from the end of its
                # commit: a row buffered just after waits at most FLUSH_SECONDS
                # plus one commit (in a big store a commit can take ~0.5 s).
                self._commit_due = taken + FLUSH_SECONDS

    def discard_uncommitted(self) -> None:
        """Drop everything buffered and store nothing more."""
        with self._lock:
            self._buffer.clear()
            self._uses.clear()
            self._use_count = 0
            self._dropping = True

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except StorageError as exc:
            self._fail(exc, dropping=False)

    def _fail(self, exc: StorageError, *, dropping: bool) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
                LOG.warning(
                    "autopersist: %s The script goes on; its calls may not be stored.",
                    exc,
                )
            if dropping:
                # Stop buffering for the rest of this process; rows buffered so far
                # are complete and are still retried (at the latest by close()).
                self._dropping = True

    def _start_flusher(self) -> None:
        self._flusher = threading.Thread(
            target=self._flush_loop, name="autopersist-flush", daemon=True
        )
        self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._closed:
            self._wake.wait(max(self._commit_due - time.monotonic(), 0.01))
            if self._closed:
                return
            if time.monotonic() >= self._commit_due:
                self._flush_quietly()
            self._end_stale_snapshot()

    def _end_stale_snapshot(self) -> None:
        """A program that stopped reading (a long computation) must not hold its
        last snapshot: it would keep other processes' checkpoints from finishing."""
        if time.monotonic() < self._snapshot_until:
            return
        if self._read_lock.acquire(blocking=False):  # else a read is under way
            try:
                self._drop_snapshot()
            finally:
                self._read_lock.release()

    def close(self) -> None:
        """Flush and close; safe to call twice.

        :raises StorageError: a commit failed during the run or now; every call
            committed before the failure is kept.
        """
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._wake.set()
            with self._commit_lock, self._lock, self._read_lock:
                self._read.close()
                self._write.close()
            _live.discard(self)
        if self._error is not None:
            raise self._error

    # -- fork ----------------------------------------------------------------------

    def _acquire_for_fork(self) -> None:
        self._commit_lock.acquire()
        self._lock.acquire()
        self._read_lock.acquire()

    def _release_after_fork(self) -> None:
        self._read_lock.release()
        self._lock.release()
        self._commit_lock.release()

    def _reset_in_child(self) -> None:
        """Fresh connections, locks and buffer for a forked child; the parent
        commits what it had buffered."""
        _abandon(self._write)
        _abandon(self._read)
        closed = self._closed
        self._init_state()
        self._closed = closed
        if closed:
            return
        try:
            self._write = connect(self.db_path)
            _tune_writer(self._write)
            self._read = _reader(self.db_path)
        except sqlite3.Error as exc:
            self._fail(_storage_error(self.store_dir, exc), dropping=True)


def _tune_writer(conn: sqlite3.Connection) -> None:
    """Settings of the connection that commits a run's calls.

    Content hashes as keys make every insert land at a random place in its
    B-trees; with SQLite's default 2 MB page cache, a store of 100k calls no longer
    fits and every commit re-reads pages from the OS. 64 MB (allocated only as
    pages are used) keeps a store of about a million calls' index pages cached.
    """
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
    # Each commit rewrites (in the WAL) every page its inserts touched, and with
    # random keys that is most leaf pages of every index; checkpointing each time
    # the WAL passes SQLite's default 1,000 pages copies them all back again.
    # Checkpointing less often lets many commits' copies of a page go back once.
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")


def _reader(db_path: Path) -> sqlite3.Connection:
    """The connection of a run's lookups. Its page cache is sized like the
    writer's: with the default 2 MB, the indexes of a store of 100k calls no
    longer fit and a lookup reads its pages from the OS again."""
    conn = connect(db_path)
    conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
    return conn


def _prepare_new_store(conn: sqlite3.Connection, store_dir: Path) -> None:
    """Switch a new store to WAL and create its tables; checks the format first, so
    a newer store stays untouched.

    Several processes may create one store at the same moment; switching the
    journal mode can answer "database is locked" at once instead of waiting, so
    that step is retried for a while (the winner's schema is then found in place).
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if check_schema_version(conn, store_dir) < SCHEMA_VERSION:
                # Takes effect on a new, empty file only. Random-key inserts
                # rewrite whole pages; with 16 KiB pages a run's commits write
                # about a third less than with SQLite's default 4 KiB.
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                conn.execute("PRAGMA journal_mode = WAL")
                create_schema(conn, store_dir)
            return
        except (sqlite3.OperationalError, StorageError) as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _run_counts(batch: list[Statement], reused: int, run_id: str) -> Statement:
    """The ``runs`` counter update for the calls in ``batch`` and ``reused``."""
    computed = failed = 0
    for sql, params in batch:
        if sql == _INSERT_CALL:
            if params[6] == "failed":
                failed += 1
            else:
                computed += 1
    return (
        _COUNT_INTO_RUN,
        (reused + computed + failed, reused, computed, failed, run_id),
    )


def _abandon(conn: sqlite3.Connection) -> None:
    """Keep an inherited connection alive forever: closing it in the child would
    touch locks and the WAL that belong to the parent."""
    try:
        import ctypes

        ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))
    except Exception:
        _abandoned.append(conn)


def _before_fork() -> None:
    for storage in list(_live):
        storage._acquire_for_fork()


def _after_fork_in_parent() -> None:
    for storage in list(_live):
        storage._release_after_fork()


def _after_fork_in_child() -> None:
    for storage in list(_live):
        storage._reset_in_child()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


def check_consistency(store_dir: Path) -> list[str]:
    """Problems that would make the store unusable or a result unfounded: one
    sentence each; an empty list for a consistent store.

    Checks the SQLite file (``integrity_check``), the schema, that every row points
    at rows that exist (calls at their values and deps, edges, links, parents and
    reuses at their calls, versions at their functions, calls at their run) and that
    every blob file exists with the size its value row records. Unreferenced values
    and blob files are not problems (``autopersist gc`` removes them).
    """
    db_path = store_dir / DB_NAME
    if not db_path.exists():
        return [f"{db_path} does not exist."]
    conn = sqlite3.connect(f"file:{db_path}", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        return _problems(conn, store_dir)
    except sqlite3.Error as exc:
        return [f"{db_path} cannot be read: {exc}."]
    finally:
        conn.close()


_DANGLING = (
    ("calls", "output_id", "value_rows", "value_id", "output_id IS NOT NULL"),
    ("calls", "deps_id", "deps", "deps_id", "deps_id IS NOT NULL"),
    ("calls", "run_id", "runs", "run_id", "1"),
    ("call_values", "call_id", "calls", "call_id", "1"),
    ("call_values", "value_id", "value_rows", "value_id", "1"),
    ("call_links", "call_id", "calls", "call_id", "1"),
    ("call_links", "source_call_id", "calls", "call_id", "1"),
    ("call_parents", "call_id", "calls", "call_id", "1"),
    ("call_parents", "parent_call_id", "calls", "call_id", "1"),
    ("versions", "func_id", "functions", "func_id", "1"),
)


def _problems(conn: sqlite3.Connection, store_dir: Path) -> list[str]:
    problems = [
        f"integrity_check: {row[0]}"
        for row in conn.execute("PRAGMA integrity_check").fetchall()
        if row[0] != "ok"
    ]
    if problems:
        return problems
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    missing = _missing_tables(conn)
    if version == 0 and len(missing) == len(TABLES):
        return []  # killed before the schema was committed: a new, empty store
    if not 1 <= version <= SCHEMA_VERSION:
        problems.append(f"user_version is {version}, expected 1 to {SCHEMA_VERSION}.")
    # A store of an older format lacks the tables added since (until a run opens it).
    missing = [name for name in missing if TABLE_SINCE.get(name, 1) <= version]
    if missing:
        return [*problems, f"tables missing: {', '.join(missing)}."]
    for table, column, target, key, where in _DANGLING:
        count, example = conn.execute(
            f"SELECT count(*), min(t.{column}) FROM {table} AS t "
            f"WHERE {where} AND NOT EXISTS "
            f"(SELECT 1 FROM {target} AS u WHERE u.{key} = t.{column})"
        ).fetchone()
        if count:
            problems.append(
                f"{count} {table} row(s) point at a missing {target} row "
                f"({column} = {example!r})."
            )
    for value_id, size, is_blob in conn.execute(
        "SELECT value_id, size, data IS NULL FROM value_rows "
        "WHERE data IS NULL OR length(data) != size"
    ):
        if not is_blob:
            problems.append(f"value {value_id} holds a different size than recorded.")
            continue
        path = store_dir / BLOB_DIR / value_id[:2] / value_id[2:]
        try:
            found = path.stat().st_size
        except OSError:
            problems.append(f"value {value_id}: blob file {path} is missing.")
            continue
        if found != size:
            problems.append(
                f"value {value_id}: blob file {path} has {found} bytes, expected {size}."
            )
    return problems


def existing_db_path(store_dir: Path) -> Path:
    """The database file of an existing store.

    :raises StorageError: no store there (or the path cannot hold one).
    """
    check_store_dir(store_dir, create=False)
    db_path = store_dir / DB_NAME
    if not db_path.exists():
        msg = (
            f"no autopersist store at {store_dir}; run a script with 'autopersist run' "
            "first, or pass --store with the right directory."
        )
        raise StorageError(msg)
    return db_path


def open_query_database(store_dir: Path, *, write: bool = False) -> Any:
    """A ``sqlite_utils.Database`` on the store, for queries (``write`` for forget/gc).

    :raises StorageError: no store there, not a store, or a newer format.
    """
    db_path = existing_db_path(store_dir)
    found = read_header_version(db_path)
    if found is not None:
        _refuse_newer(found, store_dir)
    import sqlite_utils

    try:
        conn = connect(db_path, readonly=not write)
        check_schema_version(conn, store_dir)
        conn.execute("SELECT count(*) FROM calls").fetchone()
    except sqlite3.Error as exc:
        raise _storage_error(store_dir, exc) from exc
    return sqlite_utils.Database(conn, execute_plugins=False)
