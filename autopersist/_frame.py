"""``ComputationFrame``: stored calls as a graph of variables and ops (networkx).

The design follows mandala's: an **op node** holds a set of calls of one op, a
**variable node** holds a set of values, and edges carry names. An edge
``var -> op`` is labelled with the parameter (``data``), or ``models[*]`` when the
variable holds *elements* of that parameter (a list built from several calls'
results); an edge ``op -> var`` is labelled ``output``, or ``output[0]`` when the
variable is one element of the returned list, tuple or dict (``output[*]``: various
elements).

Calls are connected by the provenance the runtime recorded (``call_links``): a call's
input came from another call's output (or an element of it), including outputs of
nested calls. Nothing is matched by guessing, except that a frame started from a
bare value finds the calls that returned or took that value by its content.

Frames are values: every method returns a new frame. Reading is set-based and done
once per store state (``_Reader``): the rows of a set of calls are fetched in one
statement (``json_each`` over the id list), or, when the set covers a large share
of a table, the whole table is read in one sequential scan and indexed in memory;
never one query per call. ``df()`` joins per-op tables with pandas.

Node state lives in the graph (``frame.graph``):

* op nodes: ``kind="op"``, ``op_id``, ``calls`` (frozenset of call ids);
* variable nodes: ``kind="var"``, ``values`` (frozenset of value references: value
  ids, or ``<value id>[<key>]`` for an element no call took whole);
* edges: ``kind`` (``in``/``out``), ``label``; ``in`` edges also ``param`` and
  ``element``; ``out`` edges ``path`` (``""``, ``[0]``, ``[*]``);
* every node has ``order`` (creation order), used to break ties.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from autopersist._query import SHORT, Store, compile_where
from autopersist.errors import QueryError

if TYPE_CHECKING:
    import os

    import pandas as pd

__all__ = ["ComputationFrame", "Values"]

_ANY_PATH = "[*]"
_RIGHT = "\x00right"  # suffix of the right-hand columns while merging
_NULL = "\x00null"  # prefix of placeholders for empty join keys (never equal)


class Values(tuple[Any, ...]):
    """Several values (or call ids) in one ``df()`` cell: one trace that depends on
    several calls of the same op node, such as a list of model results fed into one
    call. A tuple, in call order, without repeats.

    >>> Values([1, 2])
    Values([1, 2])
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Values({list(self)!r})"


def _is_empty(cell: object) -> bool:
    return cell is None or (isinstance(cell, float) and math.isnan(cell))


def _collect(cells: Iterable[object]) -> object:
    """One cell from several: None, the single item, or ``Values`` of the distinct
    items in order."""
    found: list[object] = []
    seen: set[object] = set()
    for cell in cells:
        for item in cell if isinstance(cell, Values) else (cell,):
            if _is_empty(item) or item in seen:
                continue
            seen.add(item)
            found.append(item)
    if not found:
        return None
    return found[0] if len(found) == 1 else Values(found)


# -- reading the store ----------------------------------------------------------------

#: A request for more than this share of a table's rows reads the whole table in
#: one sequential scan (then serves later requests from memory): index probes on
#: random ids cost several microseconds per row.
_SCAN_SHARE = 0.2
_CALL_COLUMNS = "call_id, op_id, deps_id, status, output_id, started, version_id"

#: ``(op_id, deps_id, status, output_id, started, version_id)`` of a call.
CallInfo = tuple[str, "str | None", str, "str | None", float, str]
#: ``(call_id or source_call_id, name, path, source_path)``
Link = tuple[str, str, str, str]


class _Reader:
    """Rows about sets of calls, read set by set and indexed in memory by call id.

    One reader serves a frame and the frames expanded from it while the store does
    not change (``PRAGMA data_version``). A request is answered by probing the
    table through a ``json_each`` list of the ids not read yet, or, when it covers a
    large share of the table, by reading the whole table once (``*_complete``).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.version = store._data_version()
        self._sizes: dict[str, int] = {}
        self.info: dict[str, CallInfo] = {}
        self._info_complete = False
        #: consumer call -> its links ``(source_call_id, name, path, source_path)``
        self.into: dict[str, list[Link]] = {}
        #: source call -> links out of it ``(call_id, name, path, source_path)``
        self.out: dict[str, list[Link]] = {}
        self._links_complete = False
        # Calls whose links in that direction were all read (the other index may
        # hold some of their links already: that does not count).
        self._into_read: set[str] = set()
        self._out_read: set[str] = set()
        #: call -> ``[(name, value_id)]`` in parameter order
        self.params: dict[str, list[tuple[str, str]]] = {}
        self._params_complete = False

    def fresh(self) -> _Reader:
        """This reader, or a new one when the store changed since it was made."""
        return (
            self if self.store._data_version() == self.version else _Reader(self.store)
        )

    def _scan(self, table: str, wanted: int) -> bool:
        if table not in self._sizes:
            rows = self.store._execute(f"SELECT max(rowid) FROM {table}")
            self._sizes[table] = int(rows[0][0] or 0)
        return wanted > _SCAN_SHARE * self._sizes[table]

    @property
    def complete_calls(self) -> bool:
        """Whether the whole ``calls`` table has been read."""
        return self._info_complete

    def calls(self, ids: Iterable[str]) -> dict[str, CallInfo]:
        """``{call_id: info}``, holding (at least) those of ``ids`` that exist."""
        if not self._info_complete:
            missing = [i for i in ids if i not in self.info]
            if missing:
                if self._scan("calls", len(missing)):
                    rows = self.store._execute(f"SELECT {_CALL_COLUMNS} FROM calls")
                    self._info_complete = True
                else:
                    rows = self.store._execute_ids(
                        f"SELECT {_CALL_COLUMNS} FROM calls "
                        "WHERE call_id IN (SELECT value FROM json_each(?))",
                        missing,
                    )
                self.add_calls(rows)
        return self.info

    def add_calls(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Keep rows of ``SELECT {_CALL_COLUMNS} FROM calls`` read elsewhere."""
        info = self.info
        inf = math.inf
        for call_id, op_id, deps_id, status, output_id, started, version_id in rows:
            info[call_id] = (
                op_id,
                deps_id,
                status,
                output_id,
                inf if started is None else started,
                version_id,
            )

    def _read_links(self, ids: Iterable[str], into: bool) -> None:
        if self._links_complete:
            return
        done = self._into_read if into else self._out_read
        missing = [i for i in ids if i not in done]
        if not missing:
            return
        columns = "call_id, name, path, source_call_id, source_path"
        if self._scan("call_links", len(missing)):
            rows = self.store._execute(
                f"SELECT {columns} FROM call_links ORDER BY rowid"
            )
            self.into, self.out = {}, {}
            self._links_complete = True
            missing = []
        else:
            key = "call_id" if into else "source_call_id"
            rows = self.store._execute_ids(
                f"SELECT {columns} FROM call_links "
                f"WHERE {key} IN (SELECT value FROM json_each(?)) ORDER BY rowid",
                missing,
            )
            done.update(missing)
        into_index, out_index = self.into, self.out
        for call_id, name, path, source, source_path in rows:
            entry = (source, name, path, source_path)
            found = into_index.setdefault(call_id, [])
            if entry not in found:
                found.append(entry)
            back = (call_id, name, path, source_path)
            found = out_index.setdefault(source, [])
            if back not in found:
                found.append(back)

    def links_into(self, ids: Iterable[str]) -> dict[str, list[Link]]:
        """``{consumer call: [(source call, name, path, source path)]}``, holding
        (at least) the links into ``ids``."""
        ids = ids if isinstance(ids, (set, frozenset, list)) else list(ids)
        self._read_links(ids, into=True)
        return self.into

    def links_from(self, ids: Iterable[str]) -> dict[str, list[Link]]:
        """``{source call: [(consumer call, name, path, source path)]}``, holding
        (at least) the links out of ``ids``."""
        ids = ids if isinstance(ids, (set, frozenset, list)) else list(ids)
        self._read_links(ids, into=False)
        return self.out

    def inputs(self, ids: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
        """``{call: [(parameter, value id)]}`` in parameter order, holding (at
        least) the inputs of ``ids``."""
        if self._params_complete:
            return self.params
        missing = [i for i in ids if i not in self.params]
        if missing:
            if self._scan("call_values", 2 * len(missing)):
                rows = self.store._execute(
                    "SELECT call_id, name, value_id FROM call_values "
                    "WHERE role = 'in' ORDER BY rowid"
                )
                self.params = {}
                self._params_complete = True
            else:
                rows = self.store._execute_ids(
                    "SELECT call_id, name, value_id FROM call_values WHERE role = 'in' "
                    "AND call_id IN (SELECT value FROM json_each(?)) ORDER BY rowid",
                    missing,
                )
                for i in missing:
                    self.params[i] = []
            params = self.params
            for call_id, name, value_id in rows:
                found = params.get(call_id)
                if found is None:
                    params[call_id] = [(name, value_id)]
                else:
                    found.append((name, value_id))
        return self.params


class _Data:
    """Everything ``df()`` and value bookkeeping need about a frame's calls."""

    def __init__(self, reader: _Reader, graph: nx.DiGraph) -> None:
        calls: set[str] = set()
        resolve_for: set[str] = set()
        for node, attrs in graph.nodes(data=True):
            if attrs["kind"] == "op":
                calls |= attrs["calls"]
                if any(
                    d["path"] not in ("", _ANY_PATH)
                    for _, _, d in graph.out_edges(node, data=True)
                ):
                    resolve_for |= attrs["calls"]
        info = reader.calls(calls)
        self.output: dict[str, str | None] = {}
        self.started: dict[str, float] = {}
        self.version: dict[str, str] = {}
        for call_id in calls:
            found = info.get(call_id)
            if found is not None:
                self.output[call_id] = found[3]
                self.started[call_id] = found[4]
                self.version[call_id] = found[5]
        #: ``{param: {call_id: value_id}}``
        self.inputs: dict[str, dict[str, str]] = defaultdict(dict)
        params = reader.inputs(calls)
        for call_id in calls:
            for name, value_id in params.get(call_id, ()):
                self.inputs[name][call_id] = value_id
        #: ``{(param, is_element): [(call_id, source_call_id, source_path)]}`` for
        #: links between calls of the frame.
        self.links: dict[tuple[str, bool], list[tuple[str, str, str]]] = defaultdict(
            list
        )
        into = reader.links_into(calls)
        output = self.output
        for call_id in calls:
            for source, name, path, source_path in into.get(call_id, ()):
                if source in output:
                    self.links[(name, path != "")].append(
                        (call_id, source, source_path)
                    )
        #: ``{(call_id, path): value_id}``: an element of an output that some call
        #: took as a whole input, so it has a value id of its own.
        self.resolved: dict[tuple[str, str], str] = {}
        if resolve_for:
            out = reader.links_from(resolve_for)
            wanted = [
                (source, consumer, name, source_path)
                for source in resolve_for
                for consumer, name, path, source_path in out.get(source, ())
                if path == "" and source_path != ""
            ]
            taken = reader.inputs({w[1] for w in wanted})
            for source, consumer, name, source_path in wanted:
                for param, value_id in taken.get(consumer, ()):
                    if param == name:
                        self.resolved[(source, source_path)] = value_id

    def ref(self, call_id: str, path: str) -> str | None:
        """The value reference of ``call_id``'s output (or its element at ``path``)."""
        if path == _ANY_PATH:
            return None
        output = self.output.get(call_id)
        if output is None or not path:
            return output
        return self.resolved.get((call_id, path)) or f"{output}{path}"


# -- building frames ----------------------------------------------------------------------


class _Builder:
    """Mutates a copy of a frame's graph: adds nodes, edges and calls."""

    def __init__(
        self,
        store: Store,
        graph: nx.DiGraph,
        all_versions: bool,
        reader: _Reader | None = None,
    ) -> None:
        self.store = store
        self.graph = graph
        self.all_versions = all_versions
        self.reader = reader.fresh() if reader is not None else _Reader(store)
        # Far ends of links already classified by ``_links_by_node``.
        self._usable_back: dict[str, str] = {}
        self._usable_forward: dict[str, str] = {}

    # names and nodes

    def _name(self, base: str) -> str:
        if base not in self.graph:
            return base
        for index in range(1, 1_000_000):
            candidate = f"{base}_{index}"
            if candidate not in self.graph:
                return candidate
        msg = f"too many nodes named like {base!r}."  # pragma: no cover
        raise QueryError(msg)  # pragma: no cover

    def _order(self) -> int:
        order: int = self.graph.graph.get("next_order", 0)
        self.graph.graph["next_order"] = order + 1
        return order

    def add_op(self, op_id: str) -> str:
        name = self._name(op_id.rpartition(":")[2])
        self.graph.add_node(
            name, kind="op", op_id=op_id, calls=frozenset(), order=self._order()
        )
        return name

    def add_var(self, base: str, values: Iterable[str] = ()) -> str:
        name = self._name(base)
        self.graph.add_node(
            name, kind="var", values=frozenset(values), order=self._order()
        )
        return name

    def add_in_edge(self, var: str, op: str, param: str, *, element: bool) -> None:
        label = f"{param}{_ANY_PATH}" if element else param
        self.graph.add_edge(
            var, op, kind="in", param=param, element=element, label=label
        )

    def add_out_edge(self, op: str, var: str, path: str) -> None:
        existing = self.graph.get_edge_data(op, var)
        if existing is not None and existing["path"] != path:
            path = _ANY_PATH
        self.graph.add_edge(op, var, kind="out", path=path, label=f"output{path}")

    def op_nodes(self, op_id: str) -> list[str]:
        nodes = [
            n
            for n, d in self.graph.nodes(data=True)
            if d["kind"] == "op" and d["op_id"] == op_id
        ]
        return sorted(nodes, key=lambda n: self.graph.nodes[n]["order"])

    def whole_var(self, op: str, param: str) -> str | None:
        for var, _, data in self.graph.in_edges(op, data=True):
            if data["param"] == param and not data["element"]:
                return str(var)
        return None

    def producers(self, var: str) -> list[str]:
        return [str(op) for op, _ in self.graph.in_edges(var)]

    def creates_cycle(self, source: str, target: str) -> bool:
        """Whether an edge ``source -> target`` would close a cycle."""
        return source == target or nx.has_path(self.graph, target, source)

    def producer_for(self, var: str, op_id: str, calls: set[str]) -> str:
        """The op node to hold ``calls`` of ``op_id``, which produced ``var``: the
        existing producer of ``var``, else an op node of ``op_id`` that already
        holds some of these calls (a convergent history: one node) and that the
        edge keeps acyclic, else a new node (another role of the same op)."""
        for op in self.producers(var):
            if self.graph.nodes[op]["op_id"] == op_id:
                return op
        for op in self.op_nodes(op_id):
            if self.graph.nodes[op]["calls"] & calls and not self.creates_cycle(
                op, var
            ):
                return op
        return self.add_op(op_id)

    def converge(self, var: str, producer: str, path: str) -> str:
        """The variable for ``producer``'s output at ``path`` that ``var``'s consumer
        takes: ``var`` itself, or, when ``var`` is a fresh input variable (no
        producer yet, one consumer) and ``producer`` already has a variable for that
        output, that variable, which then feeds ``var``'s consumer too (one
        variable for one value consumed by several ops)."""
        graph = self.graph
        if path == _ANY_PATH or graph.in_degree(var) or graph.out_degree(var) != 1:
            return var
        consumer = next(iter(graph.successors(var)))
        for _, shared, data in graph.out_edges(producer, data=True):
            if (
                data["path"] == path
                and shared != var
                and not graph.has_edge(shared, consumer)
            ):
                graph.add_edge(shared, consumer, **graph.edges[var, consumer])
                graph.remove_node(var)
                return str(shared)
        return var

    def add_calls(self, op: str, calls: Iterable[str]) -> set[str]:
        """Add calls to an op node, with a variable for each new parameter."""
        attrs = self.graph.nodes[op]
        added = set(calls) - attrs["calls"]
        if not added:
            return added
        attrs["calls"] = attrs["calls"] | added
        inputs = self.reader.inputs(added)
        params: dict[str, None] = {}
        for call_id in added:
            for name, _value_id in inputs.get(call_id, ()):
                if name not in params:
                    params[name] = None
        for param in params:
            if self.whole_var(op, param) is None:
                var = self.add_var(
                    param if param not in self.graph else f"{op}_{param}"
                )
                self.add_in_edge(var, op, param, element=False)
        return added

    def add_output_var(self, op: str) -> str:
        for _, var, data in self.graph.out_edges(op, data=True):
            if data["path"] == "":
                return str(var)
        var = self.add_var(f"{op}_output")
        self.add_out_edge(op, var, "")
        return var

    def free_vars(self, targets: set[str] | None) -> list[str]:
        return [
            n
            for n, d in self.graph.nodes(data=True)
            if d["kind"] == "var"
            and self.graph.degree(n) == 0
            and (targets is None or n in targets)
        ]

    def keep_current(
        self, rows: Iterable[tuple[Any, ...]], op_at: int, deps_at: int
    ) -> list[Any]:
        """Rows whose call (op id and deps id at these positions) is current, or all
        rows for an all-versions frame."""
        if self.all_versions:
            return list(rows)
        current = self.store._currency().current
        return [row for row in rows if (row[op_at], row[deps_at]) in current]

    # expansion steps: each takes the calls not yet expanded in that direction and
    # returns the calls it added

    def back_step(
        self, frontier: dict[str, set[str]], targets: set[str] | None, free: list[str]
    ) -> dict[str, set[str]]:
        """Producers of the inputs of ``frontier``'s calls (of ``targets`` only, when
        given), and of the values of ``free`` variables by content."""
        added: dict[str, set[str]] = defaultdict(set)
        for var in free:
            rows = self.store._execute_ids(
                "SELECT call_id, op_id FROM calls WHERE status != 'failed' "
                "AND output_id IN (SELECT value FROM json_each(?))",
                self.graph.nodes[var]["values"],
            )
            by_op: dict[str, set[str]] = defaultdict(set)
            for call_id, op_id in rows:
                by_op[op_id].add(call_id)
            for op_id, calls in sorted(by_op.items()):
                op = self.producer_for(var, op_id, calls)
                self.add_out_edge(op, var, "")
                added[op] |= self.add_calls(op, calls)
        for (op, param, element, source_op), (sources, paths) in self._links_by_node(
            frontier, back=True
        ):
            whole = self.whole_var(op, param)
            if whole is None:
                whole = self.add_var(
                    param if param not in self.graph else f"{op}_{param}"
                )
                self.add_in_edge(whole, op, param, element=False)
            if targets is not None and whole not in targets:
                continue
            path = paths.pop() if len(paths) == 1 else _ANY_PATH
            if element:
                producer, var = self._element_source(op, param, source_op, sources)
            else:
                producer = self.producer_for(whole, source_op, sources)
                var = self.converge(whole, producer, path)
            self.add_out_edge(producer, var, path)
            added[producer] |= self.add_calls(producer, sources)
        return {op: calls for op, calls in added.items() if calls}

    def _element_source(
        self, op: str, param: str, source_op: str, sources: set[str]
    ) -> tuple[str, str]:
        """``(producer node, variable)`` for elements of ``op``'s ``param`` that
        the calls ``sources`` of ``source_op`` returned."""
        for var, _, data in self.graph.in_edges(op, data=True):
            if data["param"] == param and data["element"]:
                for producer in self.producers(var):
                    if self.graph.nodes[producer]["op_id"] == source_op:
                        return producer, var
        reusable = [
            p
            for p in self.op_nodes(source_op)
            if self.graph.nodes[p]["calls"] & sources
            and not nx.has_path(self.graph, op, p)
        ]
        producer = reusable[0] if reusable else self.add_op(source_op)
        var = self.add_var(f"{producer}_output")
        self.add_in_edge(var, op, param, element=True)
        return producer, var

    def forward_step(
        self, frontier: dict[str, set[str]], targets: set[str] | None, free: list[str]
    ) -> dict[str, set[str]]:
        """Consumers of the outputs of ``frontier``'s calls (through ``targets``
        only, when given), and of the values of ``free`` variables by content."""
        added: dict[str, set[str]] = defaultdict(set)
        for var in free:
            rows = self.keep_current(
                self.store._execute_ids(
                    "SELECT v.call_id, v.name, c.op_id, c.deps_id FROM call_values v "
                    "JOIN calls c ON c.call_id = v.call_id WHERE v.role = 'in' "
                    "AND c.status != 'failed' AND v.value_id IN (SELECT value FROM json_each(?))",
                    self.graph.nodes[var]["values"],
                ),
                2,
                3,
            )
            by_op: dict[tuple[str, str], set[str]] = defaultdict(set)
            for call_id, name, op_id, _deps in rows:
                by_op[(op_id, name)].add(call_id)
            for (op_id, param), calls in sorted(by_op.items()):
                consumer = self.add_op(op_id)
                self.add_in_edge(var, consumer, param, element=False)
                added[consumer] |= self.add_calls(consumer, calls)
                self.add_output_var(consumer)
        for (op, op_id, param, element, path), (group, _paths) in self._links_by_node(
            frontier, back=False
        ):
            target = self._consumer_for(op, op_id, param, element, path, targets, group)
            if target is None:
                continue
            var, consumer = target
            self.add_out_edge(op, var, path)
            added[consumer] |= self.add_calls(consumer, group)
        return {op: calls for op, calls in added.items() if calls}

    def _links_by_node(
        self, frontier: dict[str, set[str]], *, back: bool
    ) -> list[tuple[tuple[Any, ...], tuple[set[str], set[str]]]]:
        """The links into (``back``) or out of the frontier's calls, grouped by
        ``(node, param, is element, producing op)`` going back, or by ``(node,
        consuming op, param, is element, source path)`` going forward, each with
        the calls at the other end and the source paths. Producers that failed are
        left out; going forward, so are consumers that are not current (unless the
        frame holds all versions)."""
        everything: set[str] = set().union(*frontier.values()) if frontier else set()
        if not everything:
            return []
        index = (
            self.reader.links_into(everything)
            if back
            else self.reader.links_from(everything)
        )
        if not self.reader.complete_calls:
            self.reader.calls(
                {link[0] for c in everything for link in index.get(c, ())}
            )
        info = self.reader.info
        current = None if back or self.all_versions else self.store._currency().current
        # The op of each call at the other end that may be linked ("" when it may
        # not: it failed, or, going forward, it is not current), once per call.
        usable = self._usable_back if back else self._usable_forward
        groups: dict[tuple[Any, ...], tuple[set[str], set[str]]] = {}
        for node, calls in frontier.items():
            for call_id in calls:
                for other, name, path, source_path in index.get(call_id, ()):
                    op_id = usable.get(other)
                    if op_id is None:
                        found = info.get(other)
                        if (
                            found is None
                            or found[2] == "failed"
                            or (
                                current is not None
                                and (found[0], found[1]) not in current
                            )
                        ):
                            op_id = ""
                        else:
                            op_id = found[0]
                        usable[other] = op_id
                    if not op_id:
                        continue
                    key = (
                        (node, name, path != "", op_id)
                        if back
                        else (node, op_id, name, path != "", source_path)
                    )
                    group = groups.get(key)
                    if group is None:
                        group = groups[key] = (set(), set())
                    group[0].add(other)
                    group[1].add(source_path)
        return sorted(groups.items(), key=lambda item: item[0])

    def _outputs(self, op: str, path: str) -> list[str]:
        return [
            str(var)
            for _, var, data in self.graph.out_edges(op, data=True)
            if data["path"] in (path, _ANY_PATH)
        ]

    def _consumer_for(
        self,
        op: str,
        op_id: str,
        param: str,
        element: bool,
        path: str,
        targets: set[str] | None,
        calls: set[str],
    ) -> tuple[str, str] | None:
        """``(variable, consumer node)`` for ``calls`` of ``op_id``, whose ``param``
        took ``op``'s output at ``path`` (or elements of it when ``element``)."""
        outputs = self._outputs(op, path)
        if targets is not None and not any(var in targets for var in outputs):
            return None
        # 1. the variable already feeds a node of that op through that parameter
        for var in outputs:
            for _, consumer, data in self.graph.out_edges(var, data=True):
                if (
                    self.graph.nodes[consumer]["op_id"] == op_id
                    and data["param"] == param
                    and data["element"] == element
                ):
                    return var, consumer
        # 2. a node of that op holds some of these calls: join it (a convergent
        #    history); a node holding other calls plays another role
        op_id_here = self.graph.nodes[op]["op_id"]
        for consumer in self.op_nodes(op_id):
            if not self.graph.nodes[consumer]["calls"] & calls:
                continue
            if consumer == op or nx.has_path(self.graph, consumer, op):
                continue
            if element:
                var = self.add_var(f"{op}_output{_path_suffix(path)}")
                self.add_in_edge(var, consumer, param, element=True)
                return var, consumer
            existing = self.whole_var(consumer, param)
            if existing is None:
                var = self.add_var(
                    param if param not in self.graph else f"{consumer}_{param}"
                )
                self.add_in_edge(var, consumer, param, element=False)
                return var, consumer
            var = existing
            rivals = [
                p
                for p in self.producers(var)
                if p != op and self.graph.nodes[p]["op_id"] == op_id_here
            ]
            if not rivals and not nx.has_path(self.graph, var, op):
                return self.converge(var, op, path), consumer
        # 3. a new node
        consumer = self.add_op(op_id)
        exact = [
            str(var)
            for _, var, data in self.graph.out_edges(op, data=True)
            if data["path"] == path
        ]
        var = exact[0] if exact else self.add_var(f"{op}_output{_path_suffix(path)}")
        self.add_in_edge(var, consumer, param, element=element)
        self.add_output_var(consumer)
        return var, consumer


def _refresh_values(graph: nx.DiGraph, data: _Data) -> None:
    """Recompute every connected variable's values from the calls of the ops
    (variables without edges keep the values they were given)."""
    for var, attrs in graph.nodes(data=True):
        if attrs["kind"] != "var" or graph.degree(var) == 0:
            continue
        found: set[str] = set()
        producers = list(graph.predecessors(var))
        for _, consumer, edge in graph.out_edges(var, data=True):
            calls = graph.nodes[consumer]["calls"]
            if not edge["element"]:
                per_call = data.inputs.get(edge["param"], {})
                found.update(per_call[c] for c in calls if c in per_call)
                continue
            sources: set[str] = set()
            for producer in producers:
                sources |= graph.nodes[producer]["calls"]
            for call_id, source, path in data.links.get((edge["param"], True), ()):
                if call_id in calls and source in sources:
                    ref = data.ref(source, path)
                    if ref is not None:
                        found.add(ref)
        for producer in producers:
            path = graph.edges[producer, var]["path"]
            for call_id in graph.nodes[producer]["calls"]:
                ref = data.ref(call_id, path)
                if ref is not None:
                    found.add(ref)
        attrs["values"] = frozenset(found)


# -- the frame ------------------------------------------------------------------------------


class ComputationFrame:
    """Stored calls as a graph: op nodes hold calls, variable nodes hold values.

    Build one with ``Store.frame``; grow it with ``expand_back``, ``expand_forward``
    and ``expand_all``; narrow it with ``frame[...]``/``where``; read it with
    ``df()``; draw it with ``draw``. Methods return new frames.

    >>> frame = store.frame("train").expand_all()   # doctest: +SKIP
    >>> frame                                       # doctest: +SKIP
    ComputationFrame: 3 ops (6 calls), 5 variables
      data = generate(seed=seed)                                 # 1 call
      train_output = train(data=data, k=k)                       # 3 calls
      evaluate_output = evaluate(model=train_output, data=data)  # 2 calls
      values: seed 1, data 1, k 3, train_output 3, evaluate_output 2
    """

    def __init__(
        self,
        store: Store,
        graph: nx.DiGraph,
        *,
        all_versions: bool = False,
        reader: _Reader | None = None,
    ) -> None:
        #: The store the frame reads.
        self.store = store
        self._graph = graph
        #: Whether the frame holds calls of every version (``df()`` adds versions).
        self.all_versions = all_versions
        self._reader = reader
        # What the frame's calls read from the store, loaded on first need; variable
        # values are computed from it when the graph is read (expansions leave them
        # stale, and df() does not need them).
        self._data: _Data | None = None
        self._values_fresh = False

    @property
    def graph(self) -> nx.DiGraph:
        """The networkx graph; nodes and edges carry the attributes described in
        the module docstring (variable values up to date)."""
        if not self._values_fresh:
            _refresh_values(self._graph, self._prepare())
            self._values_fresh = True
        return self._graph

    def _prepare(self) -> _Data:
        """Read what the frame's calls need from the store (once per frame)."""
        if self._data is None:
            with self.store.snapshot():
                reader = self._reader.fresh() if self._reader else _Reader(self.store)
                self._reader = reader
                self._data = _Data(reader, self._graph)
        return self._data

    # construction

    @classmethod
    def from_op(
        cls, store: Store, op_id: str, *, all_versions: bool = False
    ) -> ComputationFrame:
        """A frame with one op node holding the op's (current) calls."""
        builder = _Builder(store, nx.DiGraph(), all_versions)
        with store.snapshot():
            rows = builder.keep_current(
                store._execute(
                    f"SELECT {_CALL_COLUMNS} FROM calls "
                    "WHERE op_id = ? AND status != 'failed'",
                    (op_id,),
                ),
                1,
                2,
            )
            builder.reader.add_calls(rows)
            op = builder.add_op(op_id)
            builder.add_calls(op, (row[0] for row in rows))
            builder.add_output_var(op)
        return cls(
            store, builder.graph, all_versions=all_versions, reader=builder.reader
        )

    @classmethod
    def from_value(
        cls, store: Store, value_id: str, *, all_versions: bool = False
    ) -> ComputationFrame:
        """A frame with one variable node, ``value``, holding one stored value."""
        builder = _Builder(store, nx.DiGraph(), all_versions)
        builder.add_var("value", [value_id])
        return cls(store, builder.graph, all_versions=all_versions)

    def _builder(self) -> _Builder:
        return _Builder(self.store, self._graph.copy(), self.all_versions, self._reader)

    def _new(
        self,
        graph: nx.DiGraph,
        all_versions: bool | None = None,
        reader: _Reader | None = None,
    ) -> ComputationFrame:
        return ComputationFrame(
            self.store,
            graph,
            all_versions=self.all_versions if all_versions is None else all_versions,
            reader=reader or self._reader,
        )

    # inspection

    @property
    def ops(self) -> list[str]:
        """Op node names, in topological order."""
        return self._op_order()

    @property
    def variables(self) -> list[str]:
        """Variable node names, in column order."""
        return [
            n for n in self._column_order() if self._graph.nodes[n]["kind"] == "var"
        ]

    def call_ids(self, op: str) -> frozenset[str]:
        """The call ids an op node holds.

        :raises QueryError: no op node of that name.
        """
        return frozenset(self._graph.nodes[self._node(op, "op")]["calls"])

    def value_ids(self, var: str) -> frozenset[str]:
        """The value references a variable node holds.

        :raises QueryError: no variable node of that name.
        """
        return frozenset(self.graph.nodes[self._node(var, "var")]["values"])

    def values(self, var: str) -> list[object]:
        """The values a variable node holds, loaded from the store.

        >>> store.frame("train").values("k")   # doctest: +SKIP
        [1, 2, 3]
        """
        refs = sorted(self.value_ids(var))
        loaded = self.store.load_values(refs)
        return [loaded[ref] for ref in refs]

    def _node(self, name: str, kind: str | None = None) -> str:
        if name in self._graph and (
            kind is None or self._graph.nodes[name]["kind"] == kind
        ):
            return name
        what = {"op": "op node", "var": "variable"}.get(kind or "", "node")
        names = [
            n
            for n in self._column_order()
            if kind is None or self._graph.nodes[n]["kind"] == kind
        ]
        msg = f"the frame has no {what} named {name!r}; its {what}s: {', '.join(names) or 'none'}."
        raise QueryError(msg)

    # expansion

    def _start(
        self, nodes: str | Sequence[str] | None, direction: str
    ) -> tuple[dict[str, set[str]], set[str] | None]:
        graph = self._graph
        if nodes is None:
            frontier = {
                n: set(d["calls"])
                for n, d in graph.nodes(data=True)
                if d["kind"] == "op"
            }
            return frontier, None
        names = [nodes] if isinstance(nodes, str) else list(nodes)
        frontier: dict[str, set[str]] = {}  # type: ignore[no-redef]
        targets: set[str] = set()
        for name in names:
            node = self._node(name)
            if graph.nodes[node]["kind"] == "op":
                frontier[node] = set(graph.nodes[node]["calls"])
                edges = (
                    graph.in_edges(node)
                    if direction == "back"
                    else graph.out_edges(node)
                )
                targets.update(v for edge in edges for v in edge if v != node)
            else:
                targets.add(node)
                ops = (
                    graph.successors(node)
                    if direction == "back"
                    else graph.predecessors(node)
                )
                for op in ops:
                    frontier[op] = set(graph.nodes[op]["calls"])
        return frontier, targets

    def _expand(
        self, nodes: str | Sequence[str] | None, depth: int | None, direction: str
    ) -> ComputationFrame:
        if depth is not None and depth < 0:
            msg = f"depth must be a positive number of steps or None (no limit), not {depth}."
            raise QueryError(msg)
        builder = self._builder()
        frontier, targets = self._start(nodes, direction)
        step = builder.back_step if direction == "back" else builder.forward_step
        steps = 0
        with self.store.snapshot():
            while depth is None or steps < depth:
                frontier = step(frontier, targets, builder.free_vars(targets))
                targets = None
                steps += 1
                if not frontier:
                    break
            return self._new(builder.graph, reader=builder.reader)

    def expand_back(
        self, nodes: str | Sequence[str] | None = None, *, depth: int | None = None
    ) -> ComputationFrame:
        """Add the calls that produced the inputs of the frame's calls, recursively.

        :param nodes: expand only from these nodes (variables, or ops for all their
            inputs); default: everything.
        :param depth: number of steps (one step adds one layer of producers);
            default: until nothing new is found.
        :raises QueryError: a name in ``nodes`` is not a node of the frame.

        >>> store.frame("evaluate").expand_back(depth=1)   # doctest: +SKIP
        """
        return self._expand(nodes, depth, "back")

    def expand_forward(
        self, nodes: str | Sequence[str] | None = None, *, depth: int | None = None
    ) -> ComputationFrame:
        """Add the calls that took the outputs of the frame's calls as inputs,
        recursively (current versions unless the frame holds all versions).

        :param nodes: expand only from these nodes; default: everything.
        :param depth: number of steps; default: until nothing new is found.

        >>> store.frame("train").expand_forward()   # doctest: +SKIP
        """
        return self._expand(nodes, depth, "forward")

    def expand_all(self, *, depth: int | None = None) -> ComputationFrame:
        """Expand back and forward in turn until nothing new is found: everything
        linked to the frame's calls.

        :param depth: number of back-and-forward rounds; default: no limit.

        >>> store.frame("train").expand_all().df()   # doctest: +SKIP
        """
        if depth is not None and depth < 0:
            msg = f"depth must be a positive number of steps or None (no limit), not {depth}."
            raise QueryError(msg)
        builder = self._builder()
        frontier, _ = self._start(None, "back")
        back, forward = frontier, {op: set(calls) for op, calls in frontier.items()}
        steps = 0
        with self.store.snapshot():
            while depth is None or steps < depth:
                free = builder.free_vars(None)
                new_back = builder.back_step(back, None, free)
                new_forward = builder.forward_step(forward, None, free)
                steps += 1
                merged: dict[str, set[str]] = defaultdict(set)
                for part in (new_back, new_forward):
                    for op, calls in part.items():
                        merged[op] |= calls
                if not merged:
                    break
                back, forward = dict(merged), {op: set(c) for op, c in merged.items()}
            return self._new(builder.graph, reader=builder.reader)

    # selection and filtering

    def select(self, nodes: str | Sequence[str]) -> ComputationFrame:
        """The frame restricted to these nodes (and the edges between them).

        :raises QueryError: a name is not a node of the frame.

        >>> frame.select(["k", "train", "train_output"])   # doctest: +SKIP
        """
        names = [nodes] if isinstance(nodes, str) else list(nodes)
        kept = [self._node(name) for name in names]
        graph = self._graph.subgraph(kept).copy()
        graph.graph.update(self._graph.graph)
        return self._new(graph)

    def __getitem__(self, key: object) -> ComputationFrame:
        """``frame["k"]``/``frame[["k", "train"]]`` select nodes;
        ``frame[mask]`` keeps the traces (rows of ``df()``) where ``mask`` is true.

        >>> df = frame.df()                              # doctest: +SKIP
        >>> frame[df["k"] < 3]                           # doctest: +SKIP
        """
        if isinstance(key, str) or (
            isinstance(key, (list, tuple))
            and key
            and all(isinstance(k, str) for k in key)
        ):
            return self.select(key)
        return self._keep_rows(key)

    def where(self, expr: str) -> ComputationFrame:
        """Keep the traces for which ``expr`` holds, an expression over the frame's
        node names (values for variables, call ids for ops), e.g. ``"k < 3"``.

        :raises QueryError: the expression is not valid (see ``Store.forget``).

        >>> frame.where("k >= 2 and evaluate_output < 0.1")   # doctest: +SKIP
        """
        with self.store.snapshot():
            ids = self._id_table()
            loaded = self._load(ids.copy())
        keep = compile_where(expr, [str(c) for c in loaded.columns], what="frame")
        mask = [keep(row) for row in loaded.to_dict("records")]
        return self._keep_rows(mask, ids)

    def _keep_rows(
        self, mask: object, table: pd.DataFrame | None = None
    ) -> ComputationFrame:
        with self.store.snapshot():
            table = self._id_table() if table is None else table
            flags = mask.tolist() if hasattr(mask, "tolist") else list(mask)  # type: ignore[call-overload]
            if len(flags) != len(table) or not all(
                isinstance(f, (bool, int)) for f in flags
            ):
                msg = (
                    "a row mask must hold one True/False per row of df() "
                    f"({len(table)} rows), not {len(flags)} entries."
                )
                raise QueryError(msg)
            kept = table[[bool(f) for f in flags]]
            builder = self._builder()
            graph = builder.graph
            for node, attrs in graph.nodes(data=True):
                if node not in kept.columns:
                    continue
                cells = _collect(kept[node].tolist())
                found = (
                    set(cells)
                    if isinstance(cells, Values)
                    else {cells}
                    if cells
                    else set()
                )
                if attrs["kind"] == "op":
                    attrs["calls"] = frozenset(attrs["calls"] & found)
                elif graph.degree(node) == 0:
                    attrs["values"] = frozenset(attrs["values"] & found)
            return self._new(graph)

    # combination

    def _check_same_store(self, other: object) -> ComputationFrame:
        if not isinstance(other, ComputationFrame):
            msg = f"can only combine a ComputationFrame with another, not {type(other).__name__}."
            raise QueryError(msg)
        if other.store.path != self.store.path:
            msg = (
                f"frames of different stores ({self.store.path}, {other.store.path}) "
                "cannot be combined; build both from one Store."
            )
            raise QueryError(msg)
        for node in set(self._graph) & set(other._graph):
            mine, theirs = self._graph.nodes[node], other._graph.nodes[node]
            if mine["kind"] != theirs["kind"] or mine.get("op_id") != theirs.get(
                "op_id"
            ):
                msg = (
                    f"node {node!r} means different things in the two frames; "
                    "select other nodes first."
                )
                raise QueryError(msg)
        return other

    def union(self, other: ComputationFrame) -> ComputationFrame:
        """Nodes, edges, calls and values of both frames (nodes matched by name).

        >>> frame.where("k == 1") | frame.where("k == 3")   # doctest: +SKIP
        """
        other = self._check_same_store(other)
        graph = nx.compose(self._graph, other._graph)
        for node in set(self._graph) & set(other._graph):
            key = "calls" if graph.nodes[node]["kind"] == "op" else "values"
            graph.nodes[node][key] = (
                self._graph.nodes[node][key] | other._graph.nodes[node][key]
            )
        for edge in set(self._graph.edges) & set(other._graph.edges):
            mine, theirs = self._graph.edges[edge], other._graph.edges[edge]
            if mine["kind"] == "out" and mine["path"] != theirs["path"]:
                graph.edges[edge].update(path=_ANY_PATH, label=f"output{_ANY_PATH}")
        graph.graph["next_order"] = max(
            self._graph.graph.get("next_order", 0),
            other._graph.graph.get("next_order", 0),
        )
        return self._new(graph, self.all_versions or other.all_versions)

    def intersection(self, other: ComputationFrame) -> ComputationFrame:
        """Nodes and edges in both frames, with the calls and values both hold.

        >>> frame.where("k < 3") & frame.where("k > 1")   # doctest: +SKIP
        """
        other = self._check_same_store(other)
        graph = nx.DiGraph()
        graph.graph.update(self._graph.graph)
        for node, attrs in self._graph.nodes(data=True):
            if node in other._graph:
                key = "calls" if attrs["kind"] == "op" else "values"
                graph.add_node(
                    node, **{**attrs, key: attrs[key] & other._graph.nodes[node][key]}
                )
        for source, target, attrs in self._graph.edges(data=True):
            if other._graph.has_edge(source, target):
                graph.add_edge(source, target, **attrs)
        return self._new(graph, self.all_versions and other.all_versions)

    __or__ = union
    __and__ = intersection

    # ordering

    def _op_order(self) -> list[str]:
        graph = self._graph
        ops = nx.DiGraph()
        for node, attrs in graph.nodes(data=True):
            if attrs["kind"] == "op":
                ops.add_node(node)
        for var, attrs in graph.nodes(data=True):
            if attrs["kind"] == "var":
                for producer in graph.predecessors(var):
                    for consumer in graph.successors(var):
                        ops.add_edge(producer, consumer)
        return list(
            nx.lexicographical_topological_sort(
                ops, key=lambda n: graph.nodes[n]["order"]
            )
        )

    def _column_order(self) -> list[str]:
        """Topological: each op preceded by its source variables and followed by the
        variables it produces; variables without edges last."""
        graph = self._graph
        placed: dict[str, None] = {}
        for op in self._op_order():
            for var in graph.predecessors(op):
                if graph.in_degree(var) == 0:
                    placed.setdefault(var)
            placed.setdefault(op)
            for var in graph.successors(op):
                placed.setdefault(var)
        rest = sorted(
            (n for n in graph if n not in placed), key=lambda n: graph.nodes[n]["order"]
        )
        return [*placed, *rest]

    # the dataframe

    def df(self, values: bool = True) -> pd.DataFrame:
        """One row per computation trace; a column per variable and op node.

        A trace ends at a call no other call of the frame took an output of, and
        holds every call and value of the frame it was computed from. Op columns
        hold call ids, variable columns the values (loaded from the store). A cell is
        empty (None) where the trace has no such step, and holds ``Values`` where the
        trace depends on several: e.g. one ``ensemble(models)`` call over three
        ``model`` calls is one row whose ``model`` cell holds three call ids.
        Traces that share calls are joined into one row (a ``train`` call with its
        ``evaluate`` and its ``plot`` call). Frames holding all versions add a
        ``<op>_version`` column after each op.

        :param values: load values (default); ``False`` puts value references (ids)
            in the variable columns.

        >>> store.frame("train").expand_all().df()   # doctest: +SKIP
        """
        with self.store.snapshot():
            table = self._id_table()
            if values:
                table = self._load(table)
        return table

    def _id_table(self) -> pd.DataFrame:
        """``df(values=False)``: ids in every cell, None where empty."""
        import pandas as pd

        columns = self._column_order()
        data = self._prepare()
        with self.store.snapshot():
            table = self._traces(data)
            if table is None:
                table = pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
            table = table.reindex(columns=columns)
            table = self._sort_rows(table, data)
            if self.all_versions:
                table = self._with_versions(table, data)
        table = table.astype(object)
        table = table.where(table.notna(), None)
        return table.reset_index(drop=True)

    def _traces(self, data: _Data) -> pd.DataFrame | None:
        """Ids of the traces, unordered: for each op node (in topological order) a
        table with one row per call holding its upstream calls and values; the
        rows of calls that no call of the frame consumed are the trace ends, and
        the trace ends of all op nodes are joined on the ops they share."""
        import pandas as pd

        graph = self._graph
        order = self._op_order()
        output = data.output
        upstream: dict[str, pd.DataFrame] = {}
        consumed: dict[str, set[str]] = defaultdict(set)
        for op in order:
            mine = graph.nodes[op]["calls"]
            calls = list(mine)
            columns: dict[str, list[object]] = {op: list(calls)}
            for var, _, edge in graph.in_edges(op, data=True):
                if not edge["element"]:
                    per_call = data.inputs.get(edge["param"], {})
                    columns[var] = [per_call.get(c) for c in calls]
            for _, var, edge in graph.out_edges(op, data=True):
                if var not in columns:
                    path = edge["path"]
                    columns[var] = (
                        [output.get(c) for c in calls]
                        if path == ""
                        else [data.ref(c, path) for c in calls]
                    )
            table = pd.DataFrame(columns, dtype=object)
            for var, _, edge in graph.in_edges(op, data=True):
                element = edge["element"]
                links = data.links.get((edge["param"], element), ())
                for producer in graph.predecessors(var):
                    theirs = graph.nodes[producer]["calls"]
                    pairs = [
                        (call_id, source, path)
                        for call_id, source, path in links
                        if call_id in mine and source in theirs
                    ]
                    if not pairs:
                        continue
                    relation_columns: dict[str, list[object]] = {
                        op: [p[0] for p in pairs],
                        producer: [p[1] for p in pairs],
                    }
                    if element:
                        # Several elements of one input: collections in call order.
                        pairs.sort(key=lambda p: (data.started.get(p[1], 0.0), p[1]))
                        relation_columns = {
                            op: [p[0] for p in pairs],
                            producer: [p[1] for p in pairs],
                            var: [data.ref(p[1], p[2]) for p in pairs],
                        }
                    relation = pd.DataFrame(relation_columns, dtype=object)
                    if element:
                        relation = relation.drop_duplicates()
                    consumed[producer].update(relation_columns[producer])  # type: ignore[arg-type]
                    above = upstream[producer]
                    above = above.drop(
                        columns=[c for c in (var, op) if c in above.columns]
                    )
                    joined = relation.merge(above, on=producer, how="left")
                    table = _combine(table, _aggregate(joined, op), op)
            upstream[op] = table
        tables = []
        for op in reversed(order):
            table = upstream[op]
            ends = table[~table[op].isin(consumed[op])] if consumed[op] else table
            tables.append(ends)
        for node, attrs in graph.nodes(data=True):
            if attrs["kind"] == "var" and graph.degree(node) == 0:
                tables.append(
                    pd.DataFrame(
                        {node: pd.Series(sorted(attrs["values"]), dtype=object)}
                    )
                )
        result: pd.DataFrame | None = None
        for table in tables:
            if table.empty:
                continue
            result = (
                table.reset_index(drop=True)
                if result is None
                else self._join(result, table)
            )
        return result

    def _join(self, left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
        """Outer-join two trace tables on their shared op columns (or shared
        variables when they share no op); empty cells never match."""
        import numpy as np
        import pandas as pd

        shared = [c for c in right.columns if c in left.columns]
        keys = [c for c in shared if self._graph.nodes[c]["kind"] == "op"] or shared
        if not keys:
            return pd.concat([left, right], ignore_index=True)
        left, right = left.copy(), right.copy()
        sentinels: set[str] = set()
        for frame, side in ((left, "l"), (right, "r")):
            for key in keys:
                cells = frame[key].to_numpy(dtype=object, copy=True)
                empty = np.flatnonzero(pd.isna(cells))
                if len(empty):
                    marks = [f"{_NULL}{side}{key}{i}" for i in empty]
                    cells[empty] = marks
                    sentinels.update(marks)
                    frame[key] = pd.Series(cells, dtype=object, index=frame.index)
        merged = left.merge(
            right, on=keys, how="outer", suffixes=("", _RIGHT), sort=False
        )
        if sentinels:
            for key in keys:
                merged[key] = merged[key].mask(merged[key].isin(sentinels), None)
        for column in shared:
            if column not in keys:
                merged[column] = _merge_columns(merged[column], merged[column + _RIGHT])
                merged = merged.drop(columns=[column + _RIGHT])
        return merged

    def _sort_rows(self, table: pd.DataFrame, data: _Data) -> pd.DataFrame:
        """Order traces by the start times of their calls, upstream ops first (call
        ids break ties, so the order never depends on hashing)."""
        if table.empty:
            return table
        started = data.started
        inf = math.inf
        columns: list[list[Any]] = []
        for op in self._op_order():
            firsts = [
                c
                if isinstance(c, str)
                else min(c, key=lambda x: (started.get(x, inf), x))
                if isinstance(c, Values)
                else ""
                for c in table[op].tolist()
            ]
            columns.append([started.get(c, inf) if c else inf for c in firsts])
            columns.append(firsts)
        if not columns:
            return table
        keys = list(zip(*columns, strict=True))
        order = sorted(range(len(keys)), key=keys.__getitem__)
        return table.iloc[order]

    def _with_versions(self, table: pd.DataFrame, data: _Data) -> pd.DataFrame:
        for op in reversed(self._op_order()):
            name = f"{op}_version"
            while name in self._graph:
                name += "_"
            cells = [
                _collect(data.version.get(x, "")[:SHORT] for x in c)
                if isinstance(c, Values)
                else (data.version.get(c, "")[:SHORT] if isinstance(c, str) else None)
                for c in table[op]
            ]
            table.insert(table.columns.get_loc(op) + 1, name, cells)
        return table

    def _load(self, table: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        variables = [
            c
            for c in table.columns
            if c in self._graph and self._graph.nodes[c]["kind"] == "var"
        ]
        refs: list[str] = []
        for column in variables:
            for cell in table[column]:
                if isinstance(cell, Values):
                    refs.extend(cell)
                elif isinstance(cell, str):
                    refs.append(cell)
        loaded = self.store.load_values(refs)
        for column in variables:
            table[column] = pd.Series(
                [
                    Values(loaded[x] for x in cell)
                    if isinstance(cell, Values)
                    else loaded[cell]
                    if isinstance(cell, str)
                    else None
                    for cell in table[column]
                ],
                dtype=object,
                index=table.index,
            )
        return table

    # text and pictures

    def __repr__(self) -> str:
        graph = self.graph
        ops = self._op_order()
        calls = sum(len(graph.nodes[op]["calls"]) for op in ops)
        variables = [n for n in self._column_order() if graph.nodes[n]["kind"] == "var"]
        lines = []
        for op in ops:
            outputs = [
                var if data["path"] == "" else f"{var}@{data['label']}"
                for _, var, data in graph.out_edges(op, data=True)
            ]
            arguments = [
                f"{data['label']}={var}"
                for var, _, data in graph.in_edges(op, data=True)
            ]
            text = f"{op}({', '.join(arguments)})"
            if outputs:
                text = f"{', '.join(outputs)} = {text}"
            count = len(graph.nodes[op]["calls"])
            lines.append((text, f"# {count} call{'s' if count != 1 else ''}"))
        width = max((len(text) for text, _ in lines), default=0)
        head = (
            f"ComputationFrame: {_count(len(ops), 'op')} ({_count(calls, 'call')}), "
            f"{_count(len(variables), 'variable')}"
        )
        body = [f"  {text.ljust(width)}  {note}" for text, note in lines]
        if variables:
            counts = ", ".join(
                f"{v} {len(graph.nodes[v]['values'])}" for v in variables
            )
            body.append(f"  values: {counts}")
        return "\n".join([head, *body])

    def to_dot(self) -> str:
        """The graph in Graphviz DOT: ops as boxes, variables as ellipses, with
        counts, edges labelled with parameter and output names."""
        graph = self.graph
        lines = [
            "digraph computation_frame {",
            "  rankdir=LR;",
            '  node [fontname="Helvetica", fontsize=11];',
            '  edge [fontname="Helvetica", fontsize=9, color="#555555"];',
        ]
        for node in self._column_order():
            attrs = graph.nodes[node]
            if attrs["kind"] == "op":
                count = len(attrs["calls"])
                label = f"{_dot_text(node)}\\n{count} call{'s' if count != 1 else ''}"
                lines.append(
                    f'  "{_dot_text(node)}" [shape=box, style="rounded,filled", '
                    f'fillcolor="#dbe7fb", label="{label}"];'
                )
            else:
                count = len(attrs["values"])
                label = f"{_dot_text(node)}\\n{count} value{'s' if count != 1 else ''}"
                lines.append(f'  "{_dot_text(node)}" [shape=ellipse, label="{label}"];')
        for source, target, attrs in graph.edges(data=True):
            lines.append(
                f'  "{_dot_text(source)}" -> "{_dot_text(target)}" '
                f'[label="{_dot_text(attrs["label"])}"];'
            )
        lines.append("}")
        return "\n".join(lines) + "\n"

    def draw(self, path: str | os.PathLike[str]) -> Path:
        """Draw the graph to ``path``: ``.dot`` writes DOT text; other suffixes
        (``.svg``, ``.png``, ``.pdf``) are rendered by Graphviz ``dot`` when it is on
        PATH, else the DOT text is written next to it with the suffix ``.dot``.

        :returns: the file written.
        :raises QueryError: Graphviz failed (for instance an unknown format).

        >>> frame.draw("pipeline.svg")   # doctest: +SKIP
        PosixPath('pipeline.svg')
        """
        target = Path(path)
        text = self.to_dot()
        fmt = target.suffix.lstrip(".").lower()
        exe = shutil.which("dot")
        if fmt in ("", "dot", "gv") or exe is None:
            if fmt not in ("dot", "gv"):
                target = target.with_suffix(".dot")
            target.write_text(text, encoding="utf-8")
            return target
        result = subprocess.run(
            [exe, f"-T{fmt}", "-o", str(target)],
            input=text,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["no message"])[-1]
            msg = (
                f"graphviz could not draw {target} ({detail}); use a format dot knows "
                "(svg, png, pdf) or a .dot file."
            )
            raise QueryError(msg)
        return target


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _path_suffix(path: str) -> str:
    """``[0]`` -> ``_0``, ``['k']`` -> ``_k``: a name suffix for an element path."""
    text = "".join(ch if ch.isalnum() else "_" for ch in path.strip("[]").strip("'\""))
    return f"_{text.strip('_')}" if text.strip("_") else ""


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _aggregate(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """One row per ``key``: rows sharing a key collapse into ``Values`` cells."""
    import pandas as pd

    duplicated = table[key].duplicated(keep=False)
    if not duplicated.any():
        return table
    single = table[~duplicated]
    several = table[duplicated]
    columns = [c for c in table.columns if c != key]
    groups: dict[object, list[int]] = {}
    for position, cell in enumerate(several[key].tolist()):
        groups.setdefault(cell, []).append(position)
    lists = {c: several[c].tolist() for c in columns}
    records: dict[str, list[object]] = {key: list(groups)}
    for column in columns:
        cells = lists[column]
        records[column] = [
            _collect(cells[i] for i in positions) for positions in groups.values()
        ]
    collapsed = pd.DataFrame(
        {c: pd.Series(v, dtype=object) for c, v in records.items()}
    )
    return pd.concat([single, collapsed], ignore_index=True)


def _combine(table: pd.DataFrame, other: pd.DataFrame, key: str) -> pd.DataFrame:
    """``table`` left-joined with ``other`` (unique ``key``); shared columns merged."""
    merged = table.merge(other, on=key, how="left", suffixes=("", _RIGHT))
    for column in other.columns:
        if column != key and column in table.columns:
            merged[column] = _merge_columns(merged[column], merged[column + _RIGHT])
            merged = merged.drop(columns=[column + _RIGHT])
    return merged


def _merge_columns(left: pd.Series, right: pd.Series) -> pd.Series:
    """Cell by cell: the one that is not empty, or both as ``Values`` when they
    differ (vectorized; only differing cells are visited in Python)."""
    import numpy as np
    import pandas as pd

    a = left.to_numpy(dtype=object)
    b = right.to_numpy(dtype=object)
    a_empty, b_empty = pd.isna(a), pd.isna(b)
    result = np.where(a_empty, b, a)
    both = np.flatnonzero(~a_empty & ~b_empty)
    if len(both):
        differ = both[a[both] != b[both]]
        for i in differ:
            result[i] = _collect((a[i], b[i]))
    return pd.Series(result, dtype=object, index=left.index)
