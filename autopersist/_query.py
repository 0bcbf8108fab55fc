"""The query side of the store: ``autopersist.Store``.

A ``Store`` reads the SQLite database that runs write (see ``_schema``) through a
connection that cannot write (``PRAGMA query_only``) and answers with pandas
DataFrames; only ``forget`` and ``gc`` open a second, writing connection, for one
transaction each. pandas and networkx are imported here, so ``import autopersist``
loads this module only when ``autopersist.Store`` is first used.

"Current" calls. A stored call is current when every dependency it recorded
matches the store's view of the present: a function dependency ``f:module:qualname``
matches the version of that function seen last (greatest ``versions.last_seen``),
or a version ``autopersist accept`` declared compatible with it (transitively, as
the runtime reads it through ``_compat.Compatibility``); the op's own
dependency is compared with that version's ``call_version`` (the version without
parameter defaults), exactly as the runtime does. A global ``g:module:NAME``
matches the hash recorded by the most recently started call that read it.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopersist._blobfile import read_blob
from autopersist._codec import loads
from autopersist._compat import Compatibility
from autopersist._config import store_dir_from
from autopersist._storage import (
    BLOB_DIR,
    DB_NAME,
    _storage_error,
    check_schema_version,
    connect,
    existing_db_path,
)
from autopersist.errors import QueryError, StorageError

if TYPE_CHECKING:
    import pandas as pd

    from autopersist._frame import ComputationFrame

__all__ = ["GcResult", "Store", "UnreadableValue", "compile_where"]

#: Length of the short form of version ids shown in tables and ``version`` columns.
SHORT = 12
#: Length of a value id (hex digest); a longer value reference adds an element
#: path such as ``[0]`` or ``['k']``.
VALUE_ID_LENGTH = 32
#: ``json_each`` takes any number of ids in one statement; chunks bound memory.
_CHUNK = 50_000
#: Loading more than this share of all values reads the whole table sequentially.
_SCAN_VALUES = 0.5
#: Runs not finished and started less than this long ago count as in progress.
_ACTIVE_RUN_WINDOW = 24 * 3600.0
#: Blob files without a row are left alone for this long (a run writes the file
#: before it commits the row naming it).
_ORPHAN_BLOB_AGE = 3600.0
#: Columns of ``Store.calls`` besides the parameters.
CALL_COLUMNS = (
    "output",
    "call_id",
    "version",
    "run_id",
    "started",
    "duration",
    "status",
)
_MISSING = object()


class UnreadableValue:
    """Stands in a query result for a stored value that cannot be loaded (its class
    no longer exists, or its bytes are gone); ``repr`` says why."""

    __slots__ = ("reason", "type_name", "value_id")

    def __init__(self, value_id: str, type_name: str, reason: str) -> None:
        self.value_id = value_id
        self.type_name = type_name
        self.reason = reason

    def __repr__(self) -> str:
        return f"<unreadable {self.type_name} {self.value_id[:SHORT]}: {self.reason}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnreadableValue) and other.value_id == self.value_id

    def __hash__(self) -> int:
        return hash(("UnreadableValue", self.value_id))


@dataclass(frozen=True)
class GcResult:
    """What ``Store.gc`` deleted."""

    #: Value rows deleted (no call referred to them).
    values: int
    #: Bytes those values held (inline data and blob files), plus orphan blob files.
    bytes_freed: int
    #: Blob files deleted (of deleted values, and orphans left by killed runs).
    blob_files: int
    #: Dependency sets no call uses any more.
    deps: int


@dataclass(frozen=True)
class _Currency:
    """The store's present, as the last runs saw it (see the module docstring)."""

    #: ``func_id -> (version_id, call_version)`` of the version seen last.
    versions: dict[str, tuple[str, str]]
    #: ``(op_id, deps_id)`` pairs whose dependencies all hold.
    current: frozenset[tuple[str, str]]


def _short(version: object) -> object:
    return version[:SHORT] if isinstance(version, str) else version


def _timestamps(values: Iterable[float | None]) -> Any:
    """Seconds since the epoch as timezone-aware local datetimes (pandas)."""
    import pandas as pd

    tz = datetime.now().astimezone().tzinfo
    series = pd.to_datetime(
        pd.Series(list(values), dtype="float64"), unit="s", utc=True
    )
    # Float seconds carry about a microsecond of precision: no made-up nanoseconds.
    return series.dt.round("us").dt.tz_convert(tz)


def _ref_parts(ref: str) -> tuple[str, str]:
    """``(value_id, element path)`` of a value reference (path ``""`` for a whole
    value)."""
    if len(ref) > VALUE_ID_LENGTH and ref[VALUE_ID_LENGTH] == "[":
        return ref[:VALUE_ID_LENGTH], ref[VALUE_ID_LENGTH:]
    return ref, ""


def _element(value: object, path: str) -> object:
    """``value[key]`` for a recorded element path such as ``[2]`` or ``['k']``."""
    key = ast.literal_eval(path[1:-1])
    return value[key]  # type: ignore[index]


class Store:
    """Read access to an autopersist store, answering with pandas DataFrames.

    Opens the store read-only; ``forget`` and ``gc`` write, each in one SQLite
    transaction, and are safe while scripts run on the same store.

    :param path: the store directory (default: ``$AUTOPERSIST_STORE`` or
        ``./.autopersist``).
    :raises StorageError: there is no store at ``path``, or it is not readable.

    >>> import autopersist as ap
    >>> with ap.Store() as store:        # doctest: +SKIP
    ...     store.calls("train")
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path: Path = store_dir_from(path)
        self._conn = _open_reader(self.path)
        self._snapshot_depth = 0
        self._cache_key: int | None = None
        self._currency_cache: _Currency | None = None
        self._ops_cache: list[str] | None = None

    # -- connection ---------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; the store cannot be queried afterwards."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import sqlite3

        try:
            rows: list[tuple[Any, ...]] = self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            msg = f"reading the store {self.path} failed: {exc}."
            raise StorageError(msg) from exc
        return rows

    def _execute_ids(
        self, sql: str, ids: Iterable[str], params: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Run ``sql`` (one ``?`` taking a JSON array of ids, then ``params``) in
        chunks over ``ids``."""
        unique = list(dict.fromkeys(ids))
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(unique), _CHUNK):
            chunk = json.dumps(unique[start : start + _CHUNK])
            rows.extend(self._execute(sql, (chunk, *params)))
        return rows

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read everything inside the block from one consistent state of the store,
        even while a run commits. Re-entrant.

        >>> with store.snapshot():      # doctest: +SKIP
        ...     a, b = store.calls("train"), store.calls("evaluate")
        """
        if self._snapshot_depth:
            self._snapshot_depth += 1
            try:
                yield
            finally:
                self._snapshot_depth -= 1
            return
        self._execute("BEGIN")
        self._snapshot_depth = 1
        try:
            yield
        finally:
            self._snapshot_depth = 0
            with contextlib.suppress(Exception):
                self._conn.execute("COMMIT")

    def _data_version(self) -> int:
        """Changes whenever another connection commits to the store."""
        version: int = self._execute("PRAGMA data_version")[0][0]
        return version

    def _fresh(self) -> None:
        """Drop cached facts when another connection committed since they were read."""
        key = self._data_version()
        if key != self._cache_key:
            self._cache_key = key
            self._currency_cache = None
            self._ops_cache = None

    # -- names ----------------------------------------------------------------------

    def _op_ids(self) -> list[str]:
        self._fresh()
        if self._ops_cache is None:
            rows = self._execute(
                "SELECT func_id FROM functions WHERE is_op = 1 "
                "UNION SELECT DISTINCT op_id FROM calls"
            )
            self._ops_cache = sorted({row[0] for row in rows if row[0]})
        return self._ops_cache

    def resolve_op(self, op: str) -> str:
        """The op id (``module:qualname``) that ``op`` names.

        :param op: ``qualname`` (``train``) or ``module:qualname`` (``pipeline:train``).
        :raises QueryError: no such op, or a bare name several modules define.

        >>> store.resolve_op("train")   # doctest: +SKIP
        'pipeline:train'
        """
        return self._resolve(op, self._op_ids(), "op")

    def _resolve(self, name: str, known: list[str], what: str) -> str:
        if not isinstance(name, str) or not name:
            msg = f"name the {what} as a string such as 'train' or 'pipeline:train', not {name!r}."
            raise QueryError(msg)
        if name in known:
            return name
        if ":" not in name:
            matches = [item for item in known if item.rpartition(":")[2] == name]
            if len(matches) == 1:
                return matches[0]
            if matches:
                msg = (
                    f"{what} name {name!r} is ambiguous: {', '.join(matches)} all match; "
                    "pass the full module:qualname."
                )
                raise QueryError(msg)
        shown = ", ".join(_display_names(known)) or "none yet"
        msg = (
            f"no {what} named {name!r} in the store {self.path}; known {what}s: {shown}. "
            "Check the spelling, or run the script that defines it first."
        )
        raise QueryError(msg)

    def _display_name(self, op_id: str) -> str:
        """The qualname alone when it is unique among the store's ops."""
        qualname = op_id.rpartition(":")[2]
        same = [
            other for other in self._op_ids() if other.rpartition(":")[2] == qualname
        ]
        return qualname if len(same) <= 1 else op_id

    # -- current versions -------------------------------------------------------------

    def _currency(self) -> _Currency:
        self._fresh()
        if self._currency_cache is not None:
            return self._currency_cache
        with self.snapshot():
            latest: dict[str, tuple[tuple[float, float], str, str]] = {}
            for (
                func_id,
                version_id,
                call_version,
                last_seen,
                first_seen,
            ) in self._execute(
                "SELECT func_id, version_id, call_version, last_seen, first_seen FROM versions"
            ):
                key = (last_seen or 0.0, first_seen or 0.0)
                if func_id not in latest or key > latest[func_id][0]:
                    latest[func_id] = (key, version_id, call_version or version_id)
            compatibility = Compatibility(
                (row[0], row[1], row[2], row[3])
                for row in self._execute(
                    "SELECT func_id, old_version, new_version, new_params FROM accepted"
                )
            )
            pairs = self._execute(
                "SELECT op_id, deps_id, max(started) FROM calls "
                "WHERE deps_id IS NOT NULL GROUP BY op_id, deps_id"
            )
            deps = {
                deps_id: _dep_items(data)
                for deps_id, data in self._execute("SELECT deps_id, data FROM deps")
            }
        versions = {func: (entry[1], entry[2]) for func, entry in latest.items()}
        # The hash of each global as the most recently started call read it.
        global_hash: dict[str, str] = {}
        for _op, deps_id, _started in sorted(pairs, key=lambda row: row[2] or 0.0):
            for name, recorded in deps.get(deps_id, ()):
                if name.startswith("g:"):
                    global_hash[name] = recorded
        current = set()
        for op_id, deps_id, _started in pairs:
            if deps_id in deps and _deps_hold(
                op_id, deps[deps_id], versions, compatibility, global_hash
            ):
                current.add((op_id, deps_id))
        self._currency_cache = _Currency(versions, frozenset(current))
        return self._currency_cache

    def current_version(self, func: str) -> str:
        """The version id of ``func`` seen last.

        :raises QueryError: no function or op of that name.
        """
        func_id = self._resolve_function(func)
        found = self._currency().versions.get(func_id)
        if found is None:
            msg = f"no version of {func_id} is recorded in the store {self.path}."
            raise QueryError(msg)
        return found[0]

    def _resolve_function(self, func: str) -> str:
        rows = self._execute(
            "SELECT func_id FROM functions UNION SELECT DISTINCT func_id FROM versions"
        )
        known = sorted({row[0] for row in rows} | set(self._op_ids()))
        return self._resolve(func, known, "function")

    def is_current(self, op_id: str, deps_id: str | None) -> bool:
        """Whether a call of ``op_id`` with dependency set ``deps_id`` is current."""
        return (op_id, deps_id) in self._currency().current if deps_id else False

    # -- values ------------------------------------------------------------------------

    def blob_path(self, value_id: str) -> Path:
        """Where the bytes of a large value live."""
        return self.path / BLOB_DIR / value_id[:2] / value_id[2:]

    def load_values(self, refs: Iterable[str]) -> dict[str, object]:
        """``{ref: value}`` for value ids (or ids with an element path, ``id[0]``).

        Each value is loaded once; a value that cannot be loaded becomes an
        ``UnreadableValue``.
        """
        refs = list(dict.fromkeys(ref for ref in refs if isinstance(ref, str)))
        base_ids = list(
            dict.fromkeys(_ref_parts(ref)[0] if "[" in ref else ref for ref in refs)
        )
        loaded: dict[str, object] = {}
        size = self._execute("SELECT max(rowid) FROM value_rows")[0][0] or 0
        if len(base_ids) > _SCAN_VALUES * size:
            # Most of the table is wanted: one sequential read beats index probes.
            wanted = set(base_ids)
            rows = [
                row
                for row in self._execute("SELECT value_id, type, data FROM value_rows")
                if row[0] in wanted
            ]
        else:
            rows = self._execute_ids(
                "SELECT value_id, type, data FROM value_rows "
                "WHERE value_id IN (SELECT value FROM json_each(?))",
                base_ids,
            )
        for value_id, type_name, data in rows:
            if data is None:
                loaded[value_id] = self._decode(value_id, type_name or "value", data)
                continue
            try:
                loaded[value_id] = loads(data)
            except Exception as exc:
                loaded[value_id] = UnreadableValue(
                    value_id, type_name or "value", f"{type(exc).__name__}: {exc}"
                )
        result = {ref: loaded[ref] for ref in refs if ref in loaded}
        for ref in refs:
            if ref in result:
                continue
            base, path = _ref_parts(ref)
            value = loaded.get(base, _MISSING)
            if value is _MISSING:
                value = UnreadableValue(base, "value", "missing from the store")
            elif path:
                try:
                    value = _element(value, path)
                except Exception as exc:
                    value = UnreadableValue(
                        base, type(value).__name__, f"no element {path}: {exc}"
                    )
            result[ref] = value
        return result

    def _decode(self, value_id: str, type_name: str, data: bytes | None) -> object:
        try:
            # A blob as a private copy-on-write mapping: big arrays load lazily.
            raw = (
                bytes(data) if data is not None else read_blob(self.blob_path(value_id))
            )
        except OSError as exc:
            return UnreadableValue(
                value_id, type_name, f"blob file unreadable ({exc.strerror})"
            )
        try:
            return loads(raw)
        except Exception as exc:
            return UnreadableValue(value_id, type_name, f"{type(exc).__name__}: {exc}")

    def get(self, value_id: str) -> object:
        """The stored value with this id (or a unique prefix of at least 4 characters).

        :param value_id: a value id as shown by ``calls``/``frame`` with ``values=False``.
        :raises QueryError: no such value, the prefix is ambiguous, or it cannot be
            loaded.

        >>> store.get("3b555e55")       # doctest: +SKIP
        0
        """
        base, path = _ref_parts(value_id)
        if len(base) < 4:
            msg = f"value id {value_id!r} is too short; give at least 4 hex characters."
            raise QueryError(msg)
        rows = self._execute(
            "SELECT value_id FROM value_rows WHERE value_id >= ? AND value_id < ? LIMIT 2",
            (base, base + "~"),
        )
        if not rows:
            msg = f"no value with id {value_id!r} in the store {self.path}."
            raise QueryError(msg)
        if len(rows) > 1 and rows[0][0] != base:
            msg = f"value id prefix {value_id!r} is ambiguous; give more characters."
            raise QueryError(msg)
        full = rows[0][0] if rows[0][0].startswith(base) else base
        value = self.load_values([full + path])[full + path]
        if isinstance(value, UnreadableValue):
            msg = f"value {full} cannot be loaded: {value.reason}."
            raise QueryError(msg)
        return value

    # -- tables ------------------------------------------------------------------------

    def runs(self) -> pd.DataFrame:
        """One row per run: id, script, arguments, times, exit status and counters.

        >>> store.runs()[["run_id", "script", "computed"]]   # doctest: +SKIP
        """
        import pandas as pd

        columns = [
            "run_id", "script", "argv", "cwd", "started", "ended", "status",
            "python", "calls", "reused", "computed", "failed",
        ]  # fmt: skip
        rows = self._execute(
            f"SELECT {', '.join(columns)} FROM runs ORDER BY started, rowid"
        )
        frame = pd.DataFrame(rows, columns=columns, dtype=object)
        frame["argv"] = [_json_or(text, []) for text in frame["argv"]]
        started = [row[4] for row in rows]
        ended = [row[5] for row in rows]
        frame["duration"] = pd.Series(
            [
                e - s if e is not None and s is not None else None
                for s, e in zip(started, ended, strict=True)
            ],
            dtype="float64",
        )
        frame["started"] = _timestamps(started)
        frame["ended"] = _timestamps(ended)
        for name in ("status", "calls", "reused", "computed", "failed"):
            frame[name] = pd.array(frame[name].tolist(), dtype="Int64")
        order = [*columns[:6], "duration", *columns[6:]]
        return frame[order]

    def ops(self) -> pd.DataFrame:
        """One row per op: name, module, current version, versions seen, calls.

        ``calls`` counts every stored call (all versions, failed ones included);
        ``current_calls`` those of the current version (see ``calls``).

        >>> store.ops()                 # doctest: +SKIP
        """
        import pandas as pd

        currency = self._currency()
        counts: dict[str, int] = {}
        current_counts: dict[str, int] = {}
        for op_id, deps_id, status, count in self._execute(
            "SELECT op_id, deps_id, status, count(*) FROM calls GROUP BY op_id, deps_id, status"
        ):
            counts[op_id] = counts.get(op_id, 0) + count
            if status != "failed" and (op_id, deps_id) in currency.current:
                current_counts[op_id] = current_counts.get(op_id, 0) + count
        seen = dict(
            self._execute("SELECT func_id, count(*) FROM versions GROUP BY func_id")
        )
        records = []
        for op_id in self._op_ids():
            module = op_id.rpartition(":")[0]
            version = currency.versions.get(op_id, (None, None))[0]
            records.append(
                {
                    "op": self._display_name(op_id),
                    "module": module,
                    "op_id": op_id,
                    "version": _short(version),
                    "versions": int(seen.get(op_id, 0)),
                    "calls": counts.get(op_id, 0),
                    "current_calls": current_counts.get(op_id, 0),
                }
            )
        columns = [
            "op",
            "module",
            "op_id",
            "version",
            "versions",
            "calls",
            "current_calls",
        ]
        return pd.DataFrame(records, columns=columns)

    def versions(self, func: str) -> pd.DataFrame:
        """The code versions of a function or op, oldest first.

        Columns: ``version`` (short id), ``version_id``, ``first_seen``,
        ``last_seen``, ``current``, ``calls`` (stored calls that used the version:
        the op's own calls, and calls of other ops that ran it), ``source``.

        :param func: ``qualname`` or ``module:qualname``.
        :raises QueryError: no function of that name.

        >>> store.versions("train")     # doctest: +SKIP
        """
        import pandas as pd

        func_id = self._resolve_function(func)
        rows = self._execute(
            "SELECT version_id, first_seen, last_seen, source FROM versions "
            "WHERE func_id = ? ORDER BY first_seen, rowid",
            (func_id,),
        )
        current = self._currency().versions.get(func_id, (None, None))[0]
        uses: dict[str, int] = dict(
            self._execute(
                "SELECT version_id, count(*) FROM calls WHERE op_id = ? GROUP BY version_id",
                (func_id,),
            )
        )
        key = f"f:{func_id}"
        # Calls of other ops that ran this function record its full version.
        for deps_id, data, count in self._execute(
            "SELECT d.deps_id, d.data, count(*) FROM deps d JOIN calls c "
            "ON c.deps_id = d.deps_id WHERE c.op_id != ? AND d.data LIKE ? "
            "GROUP BY d.deps_id",
            (func_id, f"%{key}%"),
        ):
            del deps_id
            for name, recorded in _dep_items(data):
                if name == key:
                    uses[recorded] = uses.get(recorded, 0) + count
        records = [
            {
                "version": _short(version_id),
                "version_id": version_id,
                "first_seen": first,
                "last_seen": last,
                "current": version_id == current,
                "calls": uses.get(version_id, 0),
                "source": source,
            }
            for version_id, first, last, source in rows
        ]
        columns = [
            "version",
            "version_id",
            "first_seen",
            "last_seen",
            "current",
            "calls",
            "source",
        ]
        frame = pd.DataFrame(records, columns=columns)
        frame["first_seen"] = _timestamps(row[1] for row in rows)
        frame["last_seen"] = _timestamps(row[2] for row in rows)
        return frame

    def calls(
        self,
        op: str,
        all_versions: bool = False,
        *,
        include_failed: bool = False,
        values: bool = True,
    ) -> pd.DataFrame:
        """One row per stored call of ``op``, oldest first.

        Columns: one per input parameter and ``output`` (the Python values, loaded
        from the store), then ``call_id``, ``version`` (the op's code version, short),
        ``run_id``, ``started`` (local time), ``duration`` (seconds) and ``status``
        (``ok``, or ``impure`` for a call that is recorded but never reused). A
        parameter named like one of these columns gets the suffix ``_in``.

        :param op: ``train`` or ``pipeline:train``.
        :param all_versions: every stored call, with a ``current`` column, instead of
            only the calls valid for the current code and globals.
        :param include_failed: add calls that raised (``status`` ``failed``, no
            output), with an ``error`` column.
        :param values: load values (default); ``False`` puts value ids in the cells.
        :raises QueryError: unknown or ambiguous op.

        >>> store.calls("train")[["k", "output"]]   # doctest: +SKIP
        """
        import pandas as pd

        op_id = self.resolve_op(op)
        with self.snapshot():
            currency = self._currency()
            status_filter = "" if include_failed else " AND status != 'failed'"
            rows = self._execute(
                "SELECT call_id, version_id, deps_id, output_id, status, run_id, started, "
                f"duration, error FROM calls WHERE op_id = ?{status_filter} "
                "ORDER BY started, rowid",
                (op_id,),
            )
            op_version = currency.versions.get(op_id, (None, None))[0]
            is_current = [
                (op_id, deps_id) in currency.current
                if status != "failed"
                else version_id == op_version
                for _c, version_id, deps_id, _o, status, *_rest in rows
            ]
            if not all_versions:
                rows = [row for row, keep in zip(rows, is_current, strict=True) if keep]
                is_current = [True] * len(rows)
            call_ids = [row[0] for row in rows]
            inputs = self._execute_ids(
                "SELECT call_id, name, value_id FROM call_values WHERE role = 'in' "
                "AND call_id IN (SELECT value FROM json_each(?)) ORDER BY rowid",
                call_ids,
            )
            params: dict[str, dict[str, str]] = {}
            for call_id, name, value_id in inputs:
                params.setdefault(name, {})[call_id] = value_id
            refs = [ref for per in params.values() for ref in per.values()]
            refs.extend(row[3] for row in rows if row[3])
            loaded = self.load_values(refs) if values else {}

        def shown(ref: str | None) -> object:
            if ref is None:
                return None
            return loaded.get(ref) if values else ref

        data: dict[str, Any] = {}
        for name, per_call in params.items():
            column = (
                f"{name}_in"
                if name in CALL_COLUMNS or name in ("current", "error")
                else name
            )
            data[column] = pd.Series(
                [shown(per_call.get(c)) for c in call_ids], dtype=object
            )
        data["output"] = pd.Series([shown(row[3]) for row in rows], dtype=object)
        data["call_id"] = pd.Series(call_ids, dtype=object)
        data["version"] = pd.Series([_short(row[1]) for row in rows], dtype=object)
        data["run_id"] = pd.Series([row[5] for row in rows], dtype=object)
        data["started"] = _timestamps(row[6] for row in rows)
        data["duration"] = pd.Series([row[7] for row in rows], dtype="float64")
        data["status"] = pd.Series([row[4] for row in rows], dtype=object)
        if all_versions:
            data["current"] = pd.Series(is_current, dtype=bool)
        if include_failed:
            data["error"] = pd.Series([row[8] for row in rows], dtype=object)
        return pd.DataFrame(data, index=pd.RangeIndex(len(rows)))

    # -- frames --------------------------------------------------------------------------

    def frame(
        self,
        op_or_value: object = _MISSING,
        *,
        value: object = _MISSING,
        all_versions: bool = False,
    ) -> ComputationFrame:
        """A ComputationFrame around an op's calls, or around one stored value.

        :param op_or_value: an op name (``train``), or a value: a value id string,
            or any Python object (identified by its content hash).
        :param value: a value to start from, when it is itself a string.
        :param all_versions: every stored call instead of the current ones, with
            version columns in ``df()``.
        :raises QueryError: unknown op, or a value the store does not hold.

        >>> store.frame("train").expand_all().df()   # doctest: +SKIP
        """
        from autopersist._frame import ComputationFrame

        if value is not _MISSING:
            return ComputationFrame.from_value(
                self, self._value_id_of(value), all_versions=all_versions
            )
        if op_or_value is _MISSING:
            msg = "give an op name or a value to build a frame from."
            raise QueryError(msg)
        if isinstance(op_or_value, str):
            try:
                op_id = self.resolve_op(op_or_value)
            except QueryError:
                found = self._stored_value_id(op_or_value)
                if found is None:
                    raise
                return ComputationFrame.from_value(
                    self, found, all_versions=all_versions
                )
            return ComputationFrame.from_op(self, op_id, all_versions=all_versions)
        return ComputationFrame.from_value(
            self, self._value_id_of(op_or_value), all_versions=all_versions
        )

    def _stored_value_id(self, text: str) -> str | None:
        if len(text) < 8 or any(ch not in "0123456789abcdef" for ch in text):
            return None
        rows = self._execute(
            "SELECT value_id FROM value_rows WHERE value_id >= ? AND value_id < ? LIMIT 2",
            (text, text + "~"),
        )
        return rows[0][0] if len(rows) == 1 else None

    def _value_id_of(self, value: object) -> str:
        from autopersist._hashing import content_hash

        value_id = content_hash(value)
        if not self._execute(
            "SELECT 1 FROM value_rows WHERE value_id = ?", (value_id,)
        ):
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            msg = (
                f"the store {self.path} holds no value equal to {shown}; "
                "no stored call took or returned it."
            )
            raise QueryError(msg)
        return value_id

    # -- deleting ------------------------------------------------------------------------

    def _writer(self) -> Any:
        """A writing connection for one transaction (``forget``, ``gc``).

        Opened with ``sqlite3`` alone, for the reason given in ``_open_reader``.
        """
        import sqlite3

        try:
            conn = connect(self.path / DB_NAME, readonly=False)
            check_schema_version(conn, self.path)
        except sqlite3.Error as exc:
            msg = f"cannot open the store {self.path} for writing: {exc}."
            raise StorageError(msg) from exc
        return conn

    def forget(
        self,
        op: str,
        version: str | None = None,
        where: str | None = None,
        dependents: bool = False,
        *,
        dry_run: bool = False,
    ) -> pd.DataFrame:
        """Delete stored calls of ``op`` (all versions unless ``version`` is given).

        The next run computes forgotten calls again. Values stay until ``gc``.
        Everything is deleted in one SQLite transaction, safe while scripts run.

        :param op: ``train`` or ``pipeline:train``.
        :param version: only calls of this code version (a prefix of its id).
        :param where: only calls for which this expression over input and output
            names holds, e.g. ``"k < 3"`` (comparisons, ``and``/``or``/``not``,
            arithmetic, ``in``, indexing such as ``output['a']``, and ``len``,
            ``abs``, ``min``, ``max``, ``round``).
        :param dependents: also every call computed from those: calls whose inputs
            came from them (recursively), and calls they were nested in.
        :param dry_run: report what would be deleted, delete nothing.
        :returns: the forgotten calls: ``call_id``, ``op``, ``version``, ``run_id``,
            ``started``, ``dependent`` (True for a call forgotten as a dependent).
        :raises QueryError: unknown op or version, or a bad ``where`` expression.

        >>> store.forget("train", where="k < 3", dependents=True)   # doctest: +SKIP
        """
        import sqlite3

        import pandas as pd

        op_id = self.resolve_op(op)
        selected = self._select_calls(op_id, version, where)
        columns = ["call_id", "op", "version", "run_id", "started", "dependent"]
        conn = self._conn if dry_run else self._writer()
        try:
            conn.execute("BEGIN" if dry_run else "BEGIN IMMEDIATE")
            try:
                chosen = json.dumps(selected)
                if dependents:
                    closure = (
                        "WITH RECURSIVE closure(call_id) AS ("
                        " SELECT value FROM json_each(?)"
                        " UNION SELECT l.call_id FROM call_links l"
                        "  JOIN closure c ON l.source_call_id = c.call_id"
                        " UNION SELECT p.parent_call_id FROM call_parents p"
                        "  JOIN closure c ON p.call_id = c.call_id) "
                    )
                else:
                    closure = (
                        "WITH closure(call_id) AS (SELECT value FROM json_each(?)) "
                    )
                rows = conn.execute(
                    closure
                    + "SELECT k.call_id, k.op_id, k.version_id, k.run_id, k.started "
                    "FROM calls k JOIN closure c ON c.call_id = k.call_id "
                    "ORDER BY k.started, k.rowid",
                    (chosen,),
                ).fetchall()
                doomed = json.dumps([row[0] for row in rows])
                if not dry_run and rows:
                    in_doomed = "IN (SELECT value FROM json_each(?))"
                    for sql in (
                        f"DELETE FROM call_values WHERE call_id {in_doomed}",
                        f"DELETE FROM call_links WHERE call_id {in_doomed}",
                        f"DELETE FROM call_links WHERE source_call_id {in_doomed}",
                        f"DELETE FROM call_parents WHERE parent_call_id {in_doomed}",
                        f"DELETE FROM call_parents WHERE call_id {in_doomed}",
                        f"DELETE FROM calls WHERE call_id {in_doomed}",
                    ):
                        conn.execute(sql, (doomed,))
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            msg = f"forgetting calls of {op_id} in {self.path} failed: {exc}."
            raise StorageError(msg) from exc
        finally:
            if not dry_run:
                conn.close()
        self._cache_key = None
        base = set(selected)
        frame = pd.DataFrame(
            {
                "call_id": pd.Series([row[0] for row in rows], dtype=object),
                "op": pd.Series(
                    [self._display_name(row[1]) for row in rows], dtype=object
                ),
                "version": pd.Series([_short(row[2]) for row in rows], dtype=object),
                "run_id": pd.Series([row[3] for row in rows], dtype=object),
                "started": _timestamps(row[4] for row in rows),
                "dependent": pd.Series(
                    [row[0] not in base for row in rows], dtype=bool
                ),
            },
            columns=columns,
        )
        return frame

    def _select_calls(
        self, op_id: str, version: str | None, where: str | None
    ) -> list[str]:
        rows = self._execute(
            "SELECT call_id, version_id FROM calls WHERE op_id = ?", (op_id,)
        )
        if version is not None:
            matching = {v for _c, v in rows if v and v.startswith(version)}
            if not matching:
                known = sorted({_short(v) for _c, v in rows if v})  # type: ignore[type-var]
                msg = (
                    f"{op_id} has no stored calls of a version starting with {version!r}; "
                    f"its versions with calls: {', '.join(map(str, known)) or 'none'}."
                )
                raise QueryError(msg)
            rows = [row for row in rows if row[1] in matching]
        selected = [row[0] for row in rows]
        if where is not None and selected:
            table = self.calls(op_id, all_versions=True, include_failed=True)
            names = [
                c
                for c in table.columns
                if c
                not in (
                    "call_id",
                    "version",
                    "run_id",
                    "started",
                    "duration",
                    "status",
                    "current",
                    "error",
                )
            ]
            keep = compile_where(where, names, what=f"calls of {op_id}")
            records = table[names].to_dict("records")
            chosen = set(selected)
            selected = [
                call_id
                for call_id, record in zip(table["call_id"], records, strict=True)
                if call_id in chosen and keep(record)
            ]
        return selected

    def gc(self, *, vacuum: bool = False) -> GcResult:
        """Delete stored values that no call refers to, and their blob files.

        Runs in one SQLite transaction; blob files are deleted while it holds the
        write lock. While a run is in progress (started within the last day, not
        ended) no value is deleted: its calls, not committed yet, may name any value
        it has seen stored. Blob files younger than an hour that no row names are
        kept too (a run writes them just before their row).

        :param vacuum: afterwards, rebuild the database file so it shrinks on disk.
        :returns: counts and bytes freed.

        >>> store.gc().bytes_freed      # doctest: +SKIP
        1024
        """
        import sqlite3

        conn = self._writer()
        now = time.time()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                unfinished = conn.execute(
                    "SELECT pid FROM runs WHERE ended IS NULL AND started > ?",
                    (now - _ACTIVE_RUN_WINDOW,),
                ).fetchall()
                # A run in progress may name, in calls it has not committed yet,
                # any value it saw stored (it does not store a value twice), new or
                # old: while one runs, no value is deleted.
                running = any(_may_be_running(pid) for (pid,) in unfinished)
                keep_after = -math.inf if running else math.inf
                rows = conn.execute(
                    "SELECT v.value_id, v.size, v.data IS NULL, v.created FROM value_rows v "
                    "WHERE NOT EXISTS "
                    "(SELECT 1 FROM call_values cv WHERE cv.value_id = v.value_id) "
                    "AND v.value_id NOT IN "
                    "(SELECT output_id FROM calls WHERE output_id IS NOT NULL)"
                ).fetchall()
                doomed = [row for row in rows if (row[3] or 0.0) < keep_after]
                ids = [row[0] for row in doomed]
                for start in range(0, len(ids), _CHUNK):
                    conn.execute(
                        "DELETE FROM value_rows WHERE value_id IN (SELECT value FROM json_each(?))",
                        (json.dumps(ids[start : start + _CHUNK]),),
                    )
                deps = conn.execute(
                    "DELETE FROM deps WHERE deps_id NOT IN "
                    "(SELECT deps_id FROM calls WHERE deps_id IS NOT NULL)"
                ).rowcount
                freed = sum(int(row[1] or 0) for row in doomed if not row[2])
                files = 0
                for value_id, _size, in_blob, _created in doomed:
                    if in_blob:
                        size = _unlink(self.blob_path(value_id))
                        if size is not None:
                            files += 1
                            freed += size
                named = {
                    row[0]
                    for row in conn.execute(
                        "SELECT value_id FROM value_rows WHERE data IS NULL"
                    )
                }
                for path, value_id in _blob_files(self.path / BLOB_DIR):
                    if value_id in named:
                        continue
                    with contextlib.suppress(OSError):
                        if path.stat().st_mtime < min(
                            now - _ORPHAN_BLOB_AGE, keep_after
                        ):
                            size = _unlink(path)
                            if size is not None:
                                files += 1
                                freed += size
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            if vacuum:
                conn.execute("VACUUM")
        except sqlite3.Error as exc:
            msg = f"garbage collection of {self.path} failed: {exc}."
            raise StorageError(msg) from exc
        finally:
            conn.close()
        self._cache_key = None
        return GcResult(
            values=len(doomed), bytes_freed=freed, blob_files=files, deps=deps
        )


def _open_reader(store_dir: Path) -> Any:
    """The Store's connection: it takes part in WAL locking like any other but
    cannot write (``PRAGMA query_only``); ``mode=ro`` only when a normal open fails
    (a read-only directory).

    Opened with ``sqlite3`` alone: closing any other descriptor of the database
    file would drop the POSIX locks of every SQLite connection of this process
    (``_wal_watch.kept_fd`` keeps its descriptors open for that reason).

    :raises StorageError: no store there, not a store, or a newer format.
    """
    import sqlite3

    db_path = existing_db_path(store_dir)
    for readonly in (False, True):
        try:
            conn = connect(db_path, readonly=readonly)
            if not readonly:
                conn.execute("PRAGMA query_only = ON")
            check_schema_version(conn, store_dir)
            conn.execute("SELECT count(*) FROM calls").fetchone()
        except sqlite3.Error as exc:
            if readonly:
                raise _storage_error(store_dir, exc) from exc
            continue
        return conn
    raise AssertionError  # pragma: no cover - the loop returns or raises


def _unlink(path: Path) -> int | None:
    """Delete a file; its size, or None when it was not there."""
    try:
        size = path.stat().st_size
        path.unlink()
    except OSError:
        return None
    return size


def _may_be_running(pid: object) -> bool:
    """False only for a run whose process is known to be gone (killed runs never
    record their end); a process of another machine sharing the store, or a pid
    reused since, counts as running: gc then keeps more, never less."""
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _blob_files(root: Path) -> Iterator[tuple[Path, str]]:
    """``(path, value_id)`` of every blob file; a temporary file (a blob being
    written, or left behind by a killed run) has the value id ``""``, which no row
    names, so gc removes it once it is old enough."""
    if not root.is_dir():
        return
    for folder in root.iterdir():
        if not folder.is_dir() or len(folder.name) != 2:
            continue
        for path in folder.iterdir():
            if path.name.startswith(".tmp-"):
                yield path, ""
            elif not path.name.startswith("."):
                yield path, folder.name + path.name


def _json_or(text: object, default: object) -> object:
    if not isinstance(text, str):
        return default
    try:
        return json.loads(text)
    except ValueError:
        return text


def _dep_items(data: str | None) -> list[tuple[str, str]]:
    """``[(dep name, hash)]`` from a ``deps.data`` JSON text (``[name, hash]`` pairs;
    ``[kind, name, hash]`` triples are read too)."""
    items: list[tuple[str, str]] = []
    for entry in json.loads(data or "[]"):
        if len(entry) == 2:
            items.append((str(entry[0]), str(entry[1])))
        elif len(entry) == 3:
            items.append((f"{entry[0]}:{entry[1]}", str(entry[2])))
    return items


def _deps_hold(
    op_id: str,
    items: list[tuple[str, str]],
    versions: Mapping[str, tuple[str, str]],
    compatibility: Compatibility,
    global_hash: Mapping[str, str],
) -> bool:
    """Whether every recorded dependency of a call of ``op_id`` matches the present."""
    for name, recorded in items:
        kind, _, rest = name.partition(":")
        if kind == "f":
            found = versions.get(rest)
            if found is None:
                return False
            current = found[1] if rest == op_id else found[0]
            if not compatibility.same(rest, recorded, current):
                return False
        elif kind == "g":
            if global_hash.get(name) != recorded:
                return False
        else:
            return False
    return True


def _display_names(op_ids: Iterable[str]) -> list[str]:
    """Qualnames where unique, ``module:qualname`` where several modules share one."""
    op_ids = list(op_ids)
    counts: dict[str, int] = {}
    for op_id in op_ids:
        qualname = op_id.rpartition(":")[2]
        counts[qualname] = counts.get(qualname, 0) + 1
    return [
        op_id.rpartition(":")[2] if counts[op_id.rpartition(":")[2]] == 1 else op_id
        for op_id in op_ids
    ]


# -- where expressions ------------------------------------------------------------------

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len, "abs": abs, "min": min, "max": max, "round": round,
    "str": str, "int": int, "float": float, "bool": bool,
}  # fmt: skip
_ALLOWED_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
    ast.UAdd, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
    ast.Pow, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In,
    ast.NotIn, ast.Is, ast.IsNot, ast.Name, ast.Load, ast.Constant, ast.List,
    ast.Tuple, ast.Set, ast.Subscript, ast.Slice, ast.Call,
)  # fmt: skip


def compile_where(
    expr: str, columns: Sequence[str], *, what: str = "rows"
) -> Callable[[Mapping[str, object]], bool]:
    """A predicate over a row (``{column: value}``) from a Python expression.

    Only a safe subset of Python is accepted: names of ``columns``, literals,
    comparisons, ``and``/``or``/``not``, arithmetic, ``in``, indexing and the
    functions ``len abs min max round str int float bool``. No attribute access and
    no other calls, so a user's string can never run code. A comparison that fails
    because a referenced cell is empty (None) counts as false.

    :raises QueryError: the expression is not valid or names an unknown column.

    >>> keep = compile_where("k < 3 and output['a'] > 1", ["k", "output"])
    >>> keep({"k": 1, "output": {"a": 2}})
    True
    """
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        msg = (
            f"cannot parse the expression {expr!r}: {exc.msg}. "
            "Write a Python condition such as 'k < 3'."
        )
        raise QueryError(msg) from exc
    known = set(columns)
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            msg = (
                f"the expression {expr!r} uses {type(node).__name__}, which is not allowed; "
                "use comparisons, and/or/not, arithmetic, 'in', indexing and "
                f"{', '.join(_FUNCTIONS)}."
            )
            raise QueryError(msg)
        if isinstance(node, ast.Call) and (
            not isinstance(node.func, ast.Name)
            or node.func.id not in _FUNCTIONS
            or node.keywords
        ):
            msg = (
                f"the expression {expr!r} calls something other than "
                f"{', '.join(_FUNCTIONS)} (positional arguments only)."
            )
            raise QueryError(msg)
        if isinstance(node, ast.Name) and not (
            node.id in _FUNCTIONS and _is_called(tree, node)
        ):
            if node.id not in known:
                msg = (
                    f"the expression {expr!r} names {node.id!r}, which is not a column of "
                    f"the {what}; columns: {', '.join(columns) or 'none'}."
                )
                raise QueryError(msg)
            names.add(node.id)
    code = compile(tree, "<where>", "eval")
    scope: dict[str, Any] = {"__builtins__": {}, **_FUNCTIONS}

    def keep(row: Mapping[str, object]) -> bool:
        local = {name: row.get(name) for name in names}
        try:
            result = eval(code, scope, local)  # the tree was checked above
            return bool(result)
        except Exception as exc:
            if any(_is_empty(local[name]) for name in names):
                return False
            msg = f"the expression {expr!r} failed on a row ({type(exc).__name__}: {exc})."
            raise QueryError(msg) from exc

    return keep


def _is_called(tree: ast.AST, name: ast.Name) -> bool:
    return any(
        isinstance(node, ast.Call) and node.func is name for node in ast.walk(tree)
    )


def _is_empty(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
