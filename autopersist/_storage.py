"""The store on disk: one SQLite database (WAL) plus content-addressed blob files.

Two paths with different needs share this module:

* the run-time path (``Storage``) uses the standard library's ``sqlite3`` directly:
  it runs inside the user's program, where importing sqlite-utils would cost about
  300 ms (it imports pandas) and its per-row conveniences would cost microseconds
  per call;
* the query path (``open_query_database``) hands out a ``sqlite_utils.Database``
  for the Store API and the CLI, imported on first use.

Durability: writes are buffered in memory and committed in one transaction at
least every ``FLUSH_SECONDS`` (by a daemon thread), at ``flush()`` and at
``close()``. A blob file is written completely (temporary name, then an atomic
rename) before the row that names it is committed, so a kill at any moment leaves
a consistent store that keeps every call committed before it. Rows are inserted
with ``INSERT OR IGNORE`` on content-derived keys, so several processes can write
one store at once without duplicates.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from autopersist._schema import DDL, SCHEMA_VERSION
from autopersist.errors import SchemaVersionError, StorageError

DB_NAME = "store.db"
BLOB_DIR = "blobs"
#: Values whose pickled form is larger than this live in blob files.
INLINE_LIMIT = 64 * 1024
#: A finished call is committed at most this long after it finished.
FLUSH_SECONDS = 0.5
BUSY_TIMEOUT_MS = 120_000


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
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
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        msg = (
            f"{store_dir / DB_NAME} is not a readable autopersist store ({text}); "
            "move it aside or point --store / AUTOPERSIST_STORE at another directory."
        )
    elif "readonly" in text or "read-only" in text or "unable to open" in text:
        msg = (
            f"cannot write the store in {store_dir} ({text}); check that the "
            "directory is writable, or point --store at a writable directory."
        )
    elif "disk" in text and "full" in text:
        msg = (
            f"the disk holding {store_dir} is full ({text}); free space and run "
            "again; calls committed before this point are kept."
        )
    else:
        msg = f"store {store_dir} failed: {text}"
    return StorageError(msg)


def check_store_dir(store_dir: Path, *, create: bool) -> None:
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
            msg = f"cannot create the store directory {store_dir}: {exc.strerror}."
            raise StorageError(msg) from exc
    if not os.access(store_dir, os.R_OK | os.X_OK):
        msg = f"the store directory {store_dir} is not readable; fix its permissions."
        raise StorageError(msg)


def check_schema_version(conn: sqlite3.Connection, store_dir: Path) -> int:
    """The store's format version; refuse a newer one. Reads only."""
    try:
        found: int = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise _storage_error(store_dir, exc) from exc
    if found > SCHEMA_VERSION:
        msg = (
            f"{store_dir} was written by a newer autopersist (store format "
            f"{found}, this version reads {SCHEMA_VERSION}); upgrade autopersist "
            "or use another --store."
        )
        raise SchemaVersionError(msg)
    return found


def create_schema(conn: sqlite3.Connection, store_dir: Path) -> None:
    """Create the tables of a new store (a no-op when another process won the race)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            for statement in DDL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR REPLACE INTO _autopersist_meta VALUES (?, ?)",
                ("schema_version", str(SCHEMA_VERSION)),
            )
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise _storage_error(store_dir, exc) from exc


class Storage:
    """Read and buffered write access to one store, for the run-time path.

    Thread-safety: ``_lock`` guards the write buffer and the pending indexes; reads
    use their own connection. ``pending_*`` dicts make buffered writes visible to
    lookups before they are committed.
    """

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        check_store_dir(store_dir, create=True)
        self.db_path = store_dir / DB_NAME
        try:
            self._write = _connect(self.db_path)
            # Check the format before anything writes: a newer store stays untouched.
            if check_schema_version(self._write, store_dir) < SCHEMA_VERSION:
                self._write.execute("PRAGMA journal_mode = WAL")
                create_schema(self._write, store_dir)
            self._write.execute("PRAGMA synchronous = NORMAL")
            self._read = _connect(self.db_path)
        except sqlite3.Error as exc:
            raise _storage_error(store_dir, exc) from exc
        self._lock = threading.RLock()
        self._buffer: list[tuple[str, tuple[Any, ...]]] = []
        self.pending_calls: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
        self.pending_values: dict[str, bytes | Path] = {}
        self.pending_deps: dict[str, str] = {}
        self._known_values: set[str] = set()
        self._deps_cache: dict[str, dict[str, str]] = {}
        self._closed = False
        self._error: StorageError | None = None
        self._flusher = threading.Thread(
            target=self._flush_loop, name="autopersist-flush", daemon=True
        )
        self._wake = threading.Event()
        self._flusher.start()

    # -- reads ---------------------------------------------------------------

    def candidates(
        self, op_id: str, inputs_id: str
    ) -> list[tuple[str, str, str, bytes | None]]:
        """Stored reusable calls ``(call_id, deps_id, output_id, inline output bytes
        or None)`` for these inputs, oldest first: one indexed query per lookup."""
        rows: list[tuple[str, str, str, bytes | None]] = self._read.execute(
            "SELECT c.call_id, c.deps_id, c.output_id, v.data FROM calls c "
            "LEFT JOIN value_rows v ON v.value_id = c.output_id "
            "WHERE c.op_id = ? AND c.inputs_id = ? AND c.status = 'ok' ORDER BY c.started",
            (op_id, inputs_id),
        ).fetchall()
        pending = self.pending_calls.get((op_id, inputs_id))
        if pending:
            rows.extend((*row, None) for row in pending)
        return rows

    def deps(self, deps_id: str) -> dict[str, str]:
        """A stored dependency set; parsed once per process (it never changes)."""
        found = self._deps_cache.get(deps_id)
        if found is not None:
            return found
        data = self.pending_deps.get(deps_id)
        if data is None:
            row = self._read.execute(
                "SELECT data FROM deps WHERE deps_id = ?", (deps_id,)
            ).fetchone()
            data = row[0] if row else "[]"
        found = {name: value for name, value in json.loads(data)}
        if len(self._deps_cache) > 10_000:
            self._deps_cache.clear()
        self._deps_cache[deps_id] = found
        return found

    def value_bytes(self, value_id: str) -> bytes:
        """The pickled bytes of a stored value."""
        pending = self.pending_values.get(value_id)
        if isinstance(pending, bytes):
            return pending
        if pending is None:
            row = self._read.execute(
                "SELECT data FROM value_rows WHERE value_id = ?", (value_id,)
            ).fetchone()
            if row is None:
                msg = f"value {value_id} is missing from the store {self.store_dir}."
                raise StorageError(msg)
            if row[0] is not None:
                return bytes(row[0])
        return self.blob_path(value_id).read_bytes()

    def accepted_rows(self) -> list[tuple[str, str, str, str | None]]:
        """``(func_id, old_version, new_version, new_params_json)`` declared
        compatible with ``autopersist accept``."""
        rows: list[tuple[str, str, str, str | None]] = self._read.execute(
            "SELECT func_id, old_version, new_version, new_params FROM accepted"
        ).fetchall()
        return rows

    def version_source(self, func_id: str, version_id: str) -> str | None:
        """The stored source of a version (``version_id`` or its ``call_version``)."""
        row = self._read.execute(
            "SELECT source FROM versions WHERE func_id = ? "
            "AND (version_id = ? OR call_version = ?)",
            (func_id, version_id, version_id),
        ).fetchone()
        return None if row is None else str(row[0])

    # -- writes (buffered) ---------------------------------------------------------

    def blob_path(self, value_id: str) -> Path:
        return self.store_dir / BLOB_DIR / value_id[:2] / value_id[2:]

    def add_value(
        self, value_id: str, data: bytes, type_name: str, preview: str
    ) -> None:
        """Store a value once; large ones go to a blob file written right away."""
        if value_id in self._known_values:
            return
        self._known_values.add(value_id)
        if len(self._known_values) > 200_000:  # bounded memory in very long runs
            self._known_values.clear()
        inline: bytes | None = data
        if len(data) > INLINE_LIMIT:
            self._write_blob(value_id, data)
            inline = None
        with self._lock:
            self.pending_values[value_id] = (
                data if inline is not None else self.blob_path(value_id)
            )
            self._buffer.append(
                (
                    "INSERT OR IGNORE INTO value_rows VALUES (?, ?, ?, ?, ?, ?)",
                    (value_id, type_name, len(data), preview, inline, time.time()),
                )
            )

    def _write_blob(self, value_id: str, data: bytes) -> None:
        path = self.blob_path(value_id)
        if path.exists():
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

    def add_deps(self, deps_id: str, data: str) -> None:
        with self._lock:
            if deps_id in self.pending_deps:
                return
            self.pending_deps[deps_id] = data
            self._buffer.append(
                ("INSERT OR IGNORE INTO deps VALUES (?, ?)", (deps_id, data))
            )

    def add_call(
        self,
        row: tuple[Any, ...],
        edges: list[tuple[str, str, str, str]],
        links: list[tuple[str, str, str, str, str]] = (),  # type: ignore[assignment]
        children: list[str] = (),  # type: ignore[assignment]
    ) -> None:
        """Buffer a call row (``calls`` column order), its value edges, provenance
        links, and the calls made while it computed (``children``)."""
        call_id, op_id, _version, inputs_id, deps_id, output_id, status = row[:7]
        with self._lock:
            if status == "ok":
                self.pending_calls.setdefault((op_id, inputs_id), []).append(
                    (call_id, deps_id, output_id)
                )
            self._buffer.append(
                (
                    "INSERT OR IGNORE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            )
            for edge in edges:
                self._buffer.append(
                    ("INSERT OR IGNORE INTO call_values VALUES (?, ?, ?, ?)", edge)
                )
            for link in links:
                self._buffer.append(
                    ("INSERT OR IGNORE INTO call_links VALUES (?, ?, ?, ?, ?)", link)
                )
            for child in children:
                self._buffer.append(
                    (
                        "INSERT OR IGNORE INTO call_parents VALUES (?, ?)",
                        (child, call_id),
                    )
                )

    def add_row(self, sql: str, params: tuple[Any, ...]) -> None:
        """Buffer any other statement (functions, versions, uses, run updates)."""
        with self._lock:
            self._buffer.append((sql, params))

    def execute_now(self, sql: str, params: tuple[Any, ...]) -> None:
        """Run one write statement in its own committed transaction."""
        with self._lock:
            self._commit([(sql, params)])

    # -- committing ----------------------------------------------------------------

    def _commit(self, batch: list[tuple[str, tuple[Any, ...]]]) -> None:
        conn = self._write
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Runs of the same statement go through executemany: one prepared
                # statement per run instead of one execute per row.
                start = 0
                while start < len(batch):
                    sql = batch[start][0]
                    end = start + 1
                    while end < len(batch) and batch[end][0] is sql:
                        end += 1
                    if end - start == 1:
                        conn.execute(sql, batch[start][1])
                    else:
                        conn.executemany(
                            sql, [params for _, params in batch[start:end]]
                        )
                    start = end
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _storage_error(self.store_dir, exc) from exc

    def flush(self) -> None:
        """Commit everything buffered; raise the first error a background flush met."""
        with self._lock:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            self._commit(batch)
            self.pending_calls.clear()
            self.pending_values.clear()
            self.pending_deps.clear()

    def _flush_loop(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_SECONDS)
            if self._closed:
                return
            try:
                self.flush()
            except StorageError as exc:
                with self._lock:
                    self._error = exc

    def close(self) -> None:
        """Flush and close; safe to call twice."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._wake.set()
            self._read.close()
            with self._lock:
                self._write.close()


def open_query_database(store_dir: Path, *, write: bool = False) -> Any:
    """A ``sqlite_utils.Database`` on the store, for queries (``write`` for forget/gc).

    :raises StorageError: no store there, not a store, or a newer format.
    """
    check_store_dir(store_dir, create=False)
    db_path = store_dir / DB_NAME
    if not db_path.exists():
        msg = (
            f"no autopersist store at {store_dir}; run a script with 'autopersist run' "
            "first, or pass --store with the right directory."
        )
        raise StorageError(msg)
    import sqlite_utils

    try:
        conn = _connect(db_path, readonly=not write)
        check_schema_version(conn, store_dir)
        conn.execute("SELECT count(*) FROM calls").fetchone()
    except sqlite3.Error as exc:
        raise _storage_error(store_dir, exc) from exc
    return sqlite_utils.Database(conn, execute_plugins=False)
