"""Versions and invalidation, explained: what ``versions``, ``diff``, ``accept``,
``status`` and ``why`` compute. No code of the user's project is run: the current
code is read from the files on disk and parsed.

Module-level globals cannot be known without running the module, except literal
constants (``LR = 0.1``, ``NAMES = ("a", "b")``), which ``status`` evaluates
statically; a recorded global that is not a literal is reported as "unknown until
the next run" instead of being guessed.
"""

from __future__ import annotations

import ast
import difflib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopersist._compat import Compatibility
from autopersist._hashing import content_hash
from autopersist._storage import open_query_database
from autopersist._transform import Definition, definitions_of_module
from autopersist.errors import HashingError, QueryError, TransformError


@dataclass
class VersionRow:
    """One stored code version of a function."""

    version_id: str
    call_version: str | None
    first_seen: float
    last_seen: float | None
    source: str
    calls: int = 0
    current: bool = False


@dataclass
class Staleness:
    """What ``status`` says about one op."""

    op_id: str
    checked: int
    stale: int
    #: dependency name -> human-readable reason, for the deps that make calls stale
    reasons: dict[str, str] = field(default_factory=dict)
    #: globals that cannot be checked without running the module
    unknown: list[str] = field(default_factory=list)


def short(version: str | None) -> str:
    return (version or "-")[:12]


class History:
    """Read (and for ``accept``, write) the version history of a store."""

    def __init__(self, store_dir: Path, project_root: Path, *, write: bool = False):
        self.db = open_query_database(store_dir, write=write)
        self.root = project_root
        self._definitions: dict[str, dict[str, Definition] | None] = {}
        self._constants: dict[str, dict[str, Any]] = {}

    def close(self) -> None:
        self.db.conn.close()

    # -- names ---------------------------------------------------------------------

    def resolve(self, name: str, *, ops_only: bool = False) -> str:
        """``train`` or ``pipeline:train`` -> the stored ``func_id``.

        :raises QueryError: unknown or ambiguous name.
        """
        where = " WHERE is_op = 1" if ops_only else ""
        known = [
            row[0] for row in self.db.execute(f"SELECT func_id FROM functions{where}")
        ]
        if name in known:
            return name
        matches = [f for f in known if f.split(":", 1)[1] == name]
        if len(matches) == 1:
            return matches[0]
        what = "op" if ops_only else "function"
        if matches:
            msg = f"{what} name {name!r} is ambiguous; use one of: {', '.join(sorted(matches))}."
            raise QueryError(msg)
        close = difflib.get_close_matches(
            name, [f.split(":", 1)[1] for f in known], n=5
        )
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        listing = ", ".join(sorted(known)[:20]) or "none yet"
        msg = f"no {what} named {name!r} in the store (known: {listing}).{hint}"
        raise QueryError(msg)

    # -- the code on disk ------------------------------------------------------------

    def module_file(self, module: str) -> Path | None:
        base = self.root.joinpath(*module.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def definitions(self, module: str) -> dict[str, Definition] | None:
        """What the module's file defines now; None when the file is gone or broken."""
        if module not in self._definitions:
            path = self.module_file(module)
            found: dict[str, Definition] | None = None
            if path is not None:
                try:
                    found = definitions_of_module(path.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError, TransformError):
                    found = None
            self._definitions[module] = found
        return self._definitions[module]

    def on_disk(self, func_id: str) -> Definition | None:
        module, _, qualname = func_id.rpartition(":")
        definitions = self.definitions(module)
        return None if definitions is None else definitions.get(qualname)

    def constants(self, module: str) -> dict[str, Any]:
        """Module-level names bound to literals, evaluated without running anything."""
        if module not in self._constants:
            values: dict[str, Any] = {}
            path = self.module_file(module)
            if path is not None:
                try:
                    tree = ast.parse(path.read_text(encoding="utf-8"))
                except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                    tree = ast.Module(body=[], type_ignores=[])
                for node in tree.body:
                    targets = (
                        node.targets
                        if isinstance(node, ast.Assign)
                        else [node.target]
                        if isinstance(node, ast.AnnAssign) and node.value is not None
                        else []
                    )
                    value_node = getattr(node, "value", None)
                    for target in targets:
                        if not isinstance(target, ast.Name) or value_node is None:
                            continue
                        try:
                            values[target.id] = ast.literal_eval(value_node)
                        except (ValueError, TypeError, SyntaxError, MemoryError):
                            values.pop(target.id, None)
                            values[f"\0{target.id}"] = True  # bound, not a literal
            self._constants[module] = values
        return self._constants[module]

    # -- versions -----------------------------------------------------------------------

    def compatibility(self) -> Compatibility:
        rows = self.db.execute(
            "SELECT func_id, old_version, new_version, new_params FROM accepted"
        ).fetchall()
        return Compatibility(rows)

    def versions(self, func_id: str) -> list[VersionRow]:
        """Stored versions, oldest first, with calls per version and the current one."""
        rows = [
            VersionRow(v, cv, first or 0.0, last, src or "")
            for v, cv, first, last, src in self.db.execute(
                "SELECT version_id, call_version, first_seen, last_seen, source "
                "FROM versions WHERE func_id = ? ORDER BY first_seen",
                [func_id],
            )
        ]
        counts = self._calls_per_version(func_id)
        for row in rows:
            row.calls = counts.get(row.version_id, 0)
            if row.call_version and row.call_version != row.version_id:
                row.calls += counts.get(row.call_version, 0)
        disk = self.on_disk(func_id)
        if disk is not None:
            for row in rows:
                row.current = row.version_id == disk.version
        elif rows:
            newest = max(rows, key=lambda r: r.last_seen or 0.0)
            newest.current = True
        return rows

    def _calls_per_version(self, func_id: str) -> dict[str, int]:
        """Stored calls whose dependencies name each version of ``func_id``."""
        needle = json.dumps("f:" + func_id)
        counts: dict[str, int] = {}
        for data, n in self.db.execute(
            "SELECT d.data, count(c.call_id) FROM deps d JOIN calls c "
            "ON c.deps_id = d.deps_id WHERE d.data LIKE ? GROUP BY d.deps_id",
            [f"%{needle}%"],
        ):
            for name, version in json.loads(data):
                if name == "f:" + func_id:
                    counts[version] = counts.get(version, 0) + n
        return counts

    def pick(self, func_id: str, prefix: str, rows: list[VersionRow]) -> VersionRow:
        found = [r for r in rows if r.version_id.startswith(prefix)]
        if len(found) != 1:
            listing = ", ".join(short(r.version_id) for r in rows)
            problem = "matches several versions" if found else "matches no version"
            msg = f"{prefix!r} {problem} of {func_id} (versions: {listing})."
            raise QueryError(msg)
        return found[0]

    def with_disk(self, func_id: str) -> list[VersionRow]:
        """Stored versions plus the one on disk, if it was never run, newest last."""
        rows = sorted(self.versions(func_id), key=lambda r: r.last_seen or 0.0)
        disk = self.on_disk(func_id)
        if disk is not None and all(r.version_id != disk.version for r in rows):
            rows.append(
                VersionRow(
                    disk.version,
                    disk.call_version,
                    time.time(),
                    None,
                    disk.source,
                    current=True,
                )
            )
        return rows

    def diff(self, func_id: str, a: str | None = None, b: str | None = None) -> str:
        """Unified source diff from version ``a`` to ``b`` (default: the two newest)."""
        rows = self.with_disk(func_id)
        if b is not None:
            new = self.pick(func_id, b, rows)
        elif rows:
            new = rows[-1]
        else:
            msg = f"no stored versions of {func_id}."
            raise QueryError(msg)
        if a is not None:
            old = self.pick(func_id, a, rows)
        else:
            older = [r for r in rows if r.version_id != new.version_id]
            if not older:
                msg = f"{func_id} has only one version ({short(new.version_id)}); nothing to diff."
                raise QueryError(msg)
            old = older[-1]
        return source_diff(func_id, old, new)

    # -- accept --------------------------------------------------------------------------

    def accept(
        self, func_id: str, version: str | None = None
    ) -> tuple[VersionRow, VersionRow, list[str]]:
        """Declare the current code of ``func_id`` compatible with an older version.

        :returns: ``(old, new, added_parameters)``.
        """
        rows = self.with_disk(func_id)
        if not rows:
            msg = f"no stored versions of {func_id}."
            raise QueryError(msg)
        new = rows[-1]
        if version is not None:
            old = self.pick(func_id, version, rows)
        else:
            older = [r for r in rows if r.version_id != new.version_id]
            if not older:
                msg = (
                    f"{func_id} has not changed since its only stored version "
                    f"{short(new.version_id)}; there is nothing to accept."
                )
                raise QueryError(msg)
            old = older[-1]
        if old.version_id == new.version_id:
            msg = f"version {short(old.version_id)} is the current code of {func_id} already."
            raise QueryError(msg)
        added = added_parameters(old.source, new.source)
        now = time.time()
        params = json.dumps(added) if added else None
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if new.last_seen is None:  # the on-disk version: keep its source for diffs
                conn.execute(
                    "INSERT OR IGNORE INTO versions (func_id, version_id, source, "
                    "first_seen, call_version) VALUES (?, ?, ?, ?, ?)",
                    [func_id, new.version_id, new.source, now, new.call_version],
                )
            pairs = {(old.version_id, new.version_id)}
            if old.call_version and new.call_version:
                pairs.add((old.call_version, new.call_version))
            for old_v, new_v in sorted(pairs):
                conn.execute(
                    "INSERT OR REPLACE INTO accepted VALUES (?, ?, ?, ?, ?)",
                    [func_id, old_v, new_v, now, params],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return old, new, added

    # -- status and why ------------------------------------------------------------------

    def current_dep(
        self, name: str, compat: Compatibility, ops: set[str]
    ) -> tuple[str, str | None]:
        """``(kind, current value)`` of a dependency as the files say now.

        kind is ``"f"`` (value: version, or None if the function is gone), ``"g"``
        (value: content hash of a literal constant, or None if it is gone), or
        ``"?"`` (a global whose value is known only when the module runs).
        """
        kind, _, rest = name.partition(":")
        if kind == "f":
            disk = self.on_disk(rest)
            if disk is None:
                return "f", None
            return "f", disk.call_version if rest in ops else disk.version
        module, _, global_name = rest.rpartition(":")
        constants = self.constants(module)
        if global_name in constants:
            try:
                return "g", content_hash(constants[global_name])
            except HashingError:
                return "?", None
        if f"\0{global_name}" in constants:
            return "?", None
        if self.module_file(module) is None:
            return "g", None
        return "?", None  # bound by an import or at run time

    def status(self, only_modules: set[str] | None = None) -> list[Staleness]:
        """For every op: of its latest stored call per input, how many are stale now
        and which changed function or global makes them stale. Computes nothing."""
        ops = {
            row[0]
            for row in self.db.execute("SELECT func_id FROM functions WHERE is_op = 1")
        }
        compat = self.compatibility()
        results: list[Staleness] = []
        for op_id in sorted(ops):
            if (
                only_modules is not None
                and op_id.rpartition(":")[0] not in only_modules
            ):
                continue
            latest = self.db.execute(
                "SELECT c.deps_id, d.data FROM calls c JOIN deps d ON d.deps_id = c.deps_id "
                "WHERE c.op_id = ? AND c.status = 'ok' AND c.started = ("
                " SELECT max(c2.started) FROM calls c2 WHERE c2.op_id = c.op_id"
                " AND c2.inputs_id = c.inputs_id AND c2.status = 'ok')",
                [op_id],
            ).fetchall()
            report = Staleness(op_id, len(latest), 0)
            for _deps_id, data in latest:
                stale = False
                for name, recorded in json.loads(data):
                    kind, current = self.current_dep(name, compat, ops)
                    if kind == "?":
                        if name not in report.unknown:
                            report.unknown.append(name)
                        continue
                    if kind == "f" and compat.same(name[2:], recorded, current):
                        continue
                    if kind == "g" and current == recorded:
                        continue
                    stale = True
                    report.reasons.setdefault(
                        name, describe_change(name, recorded, current)
                    )
                report.stale += stale
            results.append(report)
        return results

    def latest_run(self, op_id: str) -> str | None:
        row = self.db.execute(
            "SELECT run_id FROM calls WHERE op_id = ? AND status != 'failed' "
            "ORDER BY started DESC LIMIT 1",
            [op_id],
        ).fetchone()
        return row[0] if row else None

    def why(
        self, op_id: str, run_id: str | None = None
    ) -> tuple[str | None, list[dict[str, Any]]]:
        """For calls of ``op_id`` computed in a run (default: its latest), the
        dependencies that differ from the previous stored call with the same inputs."""
        run = run_id or self.latest_run(op_id)
        if run is None:
            return None, []
        run = self._resolve_run(run)
        computed = self.db.execute(
            "SELECT c.call_id, c.inputs_id, c.started, d.data FROM calls c "
            "LEFT JOIN deps d ON d.deps_id = c.deps_id "
            "WHERE c.op_id = ? AND c.run_id = ? AND c.status != 'failed' ORDER BY c.started",
            [op_id, run],
        ).fetchall()
        explanations: list[dict[str, Any]] = []
        for call_id, inputs_id, started, data in computed:
            previous = self.db.execute(
                "SELECT d.data FROM calls c JOIN deps d ON d.deps_id = c.deps_id "
                "WHERE c.op_id = ? AND c.inputs_id = ? AND c.started < ? "
                "AND c.status != 'failed' ORDER BY c.started DESC LIMIT 1",
                [op_id, inputs_id, started],
            ).fetchone()
            inputs = dict(
                self.db.execute(
                    "SELECT cv.name, v.preview FROM call_values cv JOIN value_rows v "
                    "ON v.value_id = cv.value_id WHERE cv.call_id = ? AND cv.role = 'in'",
                    [call_id],
                ).fetchall()
            )
            entry: dict[str, Any] = {
                "call_id": call_id,
                "inputs": inputs,
                "changes": [],
            }
            if previous is None:
                entry["new_inputs"] = True
            else:
                now = dict(json.loads(data or "[]"))
                before = dict(json.loads(previous[0]))
                for name in sorted(set(now) | set(before)):
                    if now.get(name) != before.get(name):
                        entry["changes"].append((name, before.get(name), now.get(name)))
            explanations.append(entry)
        return run, explanations

    def _resolve_run(self, run: str) -> str:
        rows = [
            r[0]
            for r in self.db.execute(
                "SELECT run_id FROM runs WHERE run_id LIKE ?", [f"{run}%"]
            )
        ]
        if len(rows) == 1:
            return rows[0]
        if run in rows:
            return run
        msg = f"no single run matches {run!r}; see 'autopersist runs'."
        raise QueryError(msg)

    def source_of(self, func_id: str, version: str | None) -> str | None:
        if version is None:
            return None
        row = self.db.execute(
            "SELECT source FROM versions WHERE func_id = ? "
            "AND (version_id = ? OR call_version = ?)",
            [func_id, version, version],
        ).fetchone()
        return row[0] if row else None


def describe_change(name: str, recorded: str, current: str | None) -> str:
    kind, _, rest = name.partition(":")
    if kind == "f":
        if current is None:
            return f"function {rest} was deleted or renamed"
        return f"function {rest} changed ({short(recorded)} -> {short(current)})"
    if current is None:
        return f"global {rest} was removed"
    return f"global {rest} changed"


def source_diff(func_id: str, old: VersionRow, new: VersionRow) -> str:
    lines = difflib.unified_diff(
        old.source.splitlines(keepends=True),
        new.source.splitlines(keepends=True),
        fromfile=f"{func_id} {short(old.version_id)}",
        tofile=f"{func_id} {short(new.version_id)}",
    )
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    if text:
        return text
    return (
        f"{func_id}: versions {short(old.version_id)} and {short(new.version_id)} "
        "differ only in what versions ignore.\n"
    )


def added_parameters(old_source: str, new_source: str) -> list[str]:
    """Parameters the new source's function has, with a default, that the old lacks."""

    def params(source: str) -> dict[str, bool] | None:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return None
        func = next(
            (
                n
                for n in tree.body
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            ),
            None,
        )
        if func is None:
            return None
        args = func.args
        positional = [*args.posonlyargs, *args.args]
        defaults = [False] * (len(positional) - len(args.defaults)) + [True] * len(
            args.defaults
        )
        found = {a.arg: d for a, d in zip(positional, defaults, strict=True)}
        for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
            found[arg.arg] = default is not None
        return found

    old, new = params(old_source), params(new_source)
    if old is None or new is None:
        return []
    return sorted(
        name for name, has_default in new.items() if has_default and name not in old
    )
