"""The runtime every instrumented module talks to: memoized op calls and their deps.

One ``Runtime`` per process. Each instrumented module gets a ``ModuleState``
(``_ops``) bound as ``__autopersist__`` (``register`` and ``op`` are what the
rewritten code calls) and a mark (``module_mark``): every tracked function adds
its key to ``Runtime.seen`` when it starts, unless its flag says it did so
already since the current op call began, so when an op call ends, the set holds
exactly the project code that ran during it (per branch actually taken).

An op call (its wrapper calls ``Runtime.begin_call``, then the function, then
``finish_call`` or ``fail_call``):

1. binds the arguments to the signature with defaults applied and hashes each value;
2. looks up stored calls with the same op and inputs, and reuses the first whose
   recorded dependencies (function versions, global values) all match the running
   program; the result is unpickled anew, so it is equal and independent;
3. otherwise runs the function with an empty ``seen`` set, turns the keys that ran
   into dependencies (``"f:module:qualname" -> version``,
   ``"g:module:NAME" -> value hash``), stores output and call, and merges the keys
   back into the enclosing call's set.
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import operator
import os
import reprlib
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import CellType, FunctionType, ModuleType, TracebackType
from typing import Any, TypeVar

from autopersist._call_index import SMALL_OUTPUT
from autopersist._codec import dumps, loads
from autopersist._compat import Compatibility
from autopersist._config import Config
from autopersist._hashing import (
    combine,
    combine_encoded,
    content_hash,
    encode_part,
    hash_bytes,
    is_immutable,
    set_function_resolver,
)
from autopersist._names import MARK_NAME, UNSEEN_NAME
from autopersist._ops import (
    COMPUTE,
    PLAIN,
    REUSED,
    FunctionInfo,
    ModuleState,
    OpState,
    call_cells,
    runtime_here,
    set_current,
)
from autopersist._provenance import Provenance
from autopersist._source_lines import python_lines
from autopersist._storage import Storage
from autopersist.errors import (
    AutopersistError,
    HashingError,
    HotOpWarning,
    ImpureCallWarning,
    NoNewCallsError,
    UnhashableArgumentWarning,
)

LOG = logging.getLogger(__name__)

_PACKAGE_DIR = str(Path(__file__).parent) + os.sep
_PREVIEW_CHARS = 200
#: Call counts at which the hot-op guard compares memoizing cost with work.
HOT_CHECKS = frozenset({1_001, 10_001})
#: ... and ignores ops whose memoizing cost so far is below this (seconds).
HOT_MIN_SECONDS = 0.005


def _module_text(state: ModuleState) -> str:
    """The text of a module's source: what its code was made from if the importer
    kept it, else the file as it is now; "" when unreadable."""
    data = state.source
    try:
        if data is not None:
            return data.decode("utf-8")
        return Path(state.path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _module_versions_digest(
    module: str, qualnames: Sequence[str], versions: Sequence[str]
) -> str:
    """What a module's list of functions ``module:qualname`` and their versions is
    recorded under in the store's ``_autopersist_meta``: one hash of one string
    (the count, the func_ids, the versions, joined by NUL), several times cheaper
    than ``combine`` of one string per function, and made without a func_id
    string per function (the module's prefix is joined around the qualnames).
    No module path, qualname or version holds a NUL, so with the count first the
    string stands for one list only. A store whose digest was made otherwise (by
    an older release) compares the versions one by one once, and keeps the new
    digest."""
    prefix = module + ":"
    ids = prefix + f"\0{prefix}".join(qualnames) if qualnames else ""
    text = f"{len(qualnames)}\0" + ids + "\0" + "\0".join(versions)
    return hash_bytes(text.encode("utf-8", "surrogatepass"), b"versions")


#: The qualname and the version of a row of a module's entry table.
_QUALNAME = operator.itemgetter(0)
_VERSION = operator.itemgetter(2)


class _Computing:
    """One op call being computed: what ``finish_call`` / ``fail_call`` need."""

    __slots__ = (
        "bound",
        "children",
        "entered",
        "extra",
        "globals_before",
        "input_hashes",
        "inputs_id",
        "op",
        "outer",
        "started",
        "t0",
    )

    def __init__(
        self,
        op: OpState,
        bound: list[tuple[str, Any]],
        input_hashes: dict[str, str],
        inputs_id: str,
        entered: float,
        outer: set[str],
        globals_before: dict[str, str],
    ) -> None:
        self.op = op
        self.bound = bound
        self.input_hashes = input_hashes
        self.inputs_id = inputs_id
        self.entered = entered
        #: Keys that had run in the enclosing call before this one started.
        self.outer = outer
        self.globals_before = globals_before
        self.started = time.time()
        self.t0 = 0.0
        #: Dependencies of reused nested calls (their code did not run, so no marks).
        self.extra: dict[str, str] = {}
        #: Calls made (computed or reused) while this one computed.
        self.children: list[str] = []


class _ThreadState:
    """Per thread: the op calls being computed, and whether autopersist's own code
    is running (then an op reached from it, say through a ``__reduce__`` that hashing
    calls, runs plain instead of re-entering the runtime)."""

    __slots__ = ("busy", "global_hashes", "stack")

    def __init__(self) -> None:
        self.stack: list[_Computing] = []
        self.busy = False
        #: While ``begin_call`` or ``finish_call`` runs (no user code in between):
        #: the hashes of the mutable global values it has hashed, by ``id``
        #: (``Runtime._global_hash``); None otherwise.
        self.global_hashes: dict[int, tuple[object, str]] | None = None


class _PerThread(threading.local):
    """Holds each thread's ``_ThreadState``: a call reads ``state`` once, then
    uses a plain object (each attribute of a ``threading.local`` is looked up in
    the thread's own dict, ~25 ns, and a call reads or sets four to eight)."""

    def __init__(self) -> None:
        self.state = _ThreadState()


class _SoleThreadGate:
    """Keeps the emptying of ``Runtime.seen`` (when a computed call begins) apart
    from another thread's start of a call or mark: each is a ``step`` run by
    ``run``.

    Until a second thread runs a step, the thread that made the runtime
    (``ident``) runs them without the lock: it announces itself (``busy``), then
    checks that it is still alone; the other thread first ends that (``share``):
    it clears ``ident``, then waits until ``busy`` is down (Dekker's way: under
    the GIL one of the two sees the other's write). From then on every thread
    takes ``lock``.
    """

    __slots__ = ("busy", "ident", "lock")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """The current thread is alone again (a new runtime, or a forked child,
        whose lock the parent's other threads may have held at the fork)."""
        self.ident: int | None = threading.get_ident()
        self.busy = False
        self.lock = threading.Lock()

    def run(self, step: Callable[[_A], _T], arg: _A) -> _T:
        """``step(arg)``, with no other thread's step under way."""
        ident = threading.get_ident()
        if self.ident == ident:
            self.busy = True
            try:
                if self.ident == ident:  # still alone
                    return step(arg)
            finally:
                # (also on KeyboardInterrupt: left up, it would hang the next
                # thread to run a step, in ``share``)
                self.busy = False
        elif self.ident is not None:
            self.share()
        with self.lock:
            return step(arg)

    def share(self) -> None:
        self.ident = None
        while self.busy:
            time.sleep(0)  # (the GIL goes to the other thread)

    def __reduce__(self) -> tuple[Any, ...]:
        # Marks hold their gate, and a function of a ``__main__`` script is pickled
        # by value (cloudpickle) with its marks: a copy there guards copied flags.
        return (_SoleThreadGate, ())


@dataclass
class Counters:
    calls: int = 0
    reused: int = 0
    computed: int = 0
    failed: int = 0
    unmemoized: int = 0


_A = TypeVar("_A")
_T = TypeVar("_T")

_MISSING = object()
#: Values whose meaning as a dependency depends on their identity only.
_FIXED_KINDS = (FunctionType, type, ModuleType)


class Runtime:
    """Process-wide state: registered modules and functions, the store, counters."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Held in every op wrapper's closure; carries no content of its own and
        # becomes the runtime of the process that unpickles it.
        return (runtime_here, ())

    def __init__(self, config: Config, storage: Storage, run_id: str) -> None:
        set_current(self)
        self.config = config
        self.storage = storage
        self.run_id = run_id
        self.seen: set[str] = set()
        #: ``(flags, index)`` of each mark since ``seen`` was last emptied: the
        #: flags to raise again when it is (``_rearm_marks``).
        self._marked: list[tuple[list[bool], int]] = []
        #: One item per computed call in progress on any thread (``_open_span``):
        #: a list, whose ``append`` and ``pop`` are atomic, as counter.
        self._open: list[None] = []
        #: Entries by key and by func_id, filled as they are asked for (see
        #: ``ModuleState``): ``function_at`` and ``function_by_id`` answer a miss.
        self.functions: dict[str, FunctionInfo] = {}
        self.by_func_id: dict[str, FunctionInfo] = {}
        self.modules: dict[str, ModuleState] = {}  # by identity
        #: Registered modules whose entries answer lookups, by identity and by
        #: the prefix of their keys.
        self._tables: dict[str, ModuleState] = {}
        self._by_prefix: dict[str, ModuleState] = {}
        self._by_namespace: dict[int, ModuleState] = {}
        self._by_import_name: dict[str, ModuleState] = {}
        self.counters = Counters()
        self._threads = _PerThread()
        self._gate = _SoleThreadGate()
        self._immutable_hashes: dict[int, tuple[object, str]] = {}
        self._file_versions: dict[str, tuple[float, dict[str, str]]] = {}
        self._compatibility: Compatibility | None = None
        self._decisions: dict[tuple[str, str, str], bool] = {}
        #: ``(id(module), name) -> (value, dependency)`` for values that cannot change.
        self._global_deps: dict[
            tuple[int, str], tuple[object, tuple[str, str] | None]
        ] = {}
        #: ``(op, deps_id)`` found to hold, with function dependencies only.
        self._holding: set[tuple[str, str]] = set()
        self._deps_records: dict[tuple[tuple[str, str], ...], tuple[str, str]] = {}
        #: The last dependency set recorded and its record (``_deps_record``).
        self._last_deps: tuple[dict[str, str], tuple[str, str]] | None = None
        #: ``key -> (entry, dependencies, globals read with their objects)``
        #: of tracked functions whose dependencies hold while those globals are
        #: bound to the same objects (``_function_deps``).
        self._ran_deps: dict[
            str,
            tuple[FunctionInfo, dict[str, str], tuple[tuple[str, object], ...]],
        ] = {}
        #: ``encode_part`` of op ids and parameter names: the same in every call's
        #: inputs_id and call_id, so each is encoded once.
        self._encoded: dict[str, bytes] = {}
        self.provenance = Provenance()
        #: The cells of ``begin_call``, ``finish_call`` and ``fail_call`` that
        #: every op wrapper's closure shares (``_op_wrapper``).
        self.call_cells: tuple[CellType, ...] = call_cells(self)
        #: Modules whose versions are still to be recorded, with the time they
        #: were registered; None once the first op is used (``record_versions``).
        self._unrecorded: list[tuple[ModuleState, float]] | None = []
        self._versions_lock = threading.Lock()
        set_function_resolver(self._function_version)

    @property
    def _local(self) -> _ThreadState:
        """This thread's op stack and ``busy`` flag (the call path reads
        ``_threads.state`` itself, once per call)."""
        return self._threads.state

    # -- modules ---------------------------------------------------------------

    def new_module(
        self, name: str, namespace: dict[str, Any], path: str
    ) -> ModuleState:
        """The ``__autopersist__`` object for a module about to execute."""
        state = ModuleState(self, name, namespace, path)
        namespace["__autopersist__"] = state
        return state

    def bind_marks(self, state: ModuleState) -> None:
        """Bind the marks' flags and function (``UNSEEN_NAME``, ``MARK_NAME``) in
        the namespace of ``state``, which is registering."""
        namespace = state.namespace
        earlier = self._by_namespace.get(id(namespace))
        if (
            earlier is not None
            and earlier.namespace is namespace
            and (earlier.prefix != state.prefix or earlier.flags_fixed)
        ):
            # The namespace runs another version of its module (a reload of
            # edited code): the earlier version's functions would read this
            # version's flags at their own indexes. Every flag stays raised and
            # every call marks, as before flags existed.
            old = namespace.get(UNSEEN_NAME)
            size = max(len(state.rows), len(old) if isinstance(old, list) else 0)
            state.flags_fixed = True
            namespace[UNSEEN_NAME] = [True] * size
            namespace[MARK_NAME] = self.seen.add
            return
        unseen = [True] * len(state.rows)
        namespace[UNSEEN_NAME] = unseen
        namespace[MARK_NAME] = self._module_mark(state.prefix, unseen)

    def _module_mark(self, prefix: str, unseen: list[bool]) -> Callable[[str], None]:
        """The mark of one module: the code of entry ``prefix:index`` runs.

        Its rewritten code calls it only while ``unseen[index]`` is true. The flag
        is lowered here, recorded in ``_marked`` and its key added to ``seen``;
        whenever ``seen`` is emptied (``_open_span_now``) every recorded flag is
        raised again, so a flag that is down always means the key is in ``seen``.
        Those three steps and the emptying exclude each other (``_SoleThreadGate``),
        as the start of a computed call does (``_open_span``). Without it, an
        emptying between the record and the lowering left a flag down with no
        record: that function never reported again in the process, and the op
        calls that ran it later lacked it as a dependency.
        """
        record = self._marked.append
        add = self.seen.add
        head = prefix + ":"
        start = len(head)
        index_of: dict[str, int] = {}
        run = self._gate.run

        def lower(key: str) -> None:
            index = index_of[key]
            unseen[index] = False
            record((unseen, index))
            add(key)

        def mark(key: str) -> None:
            if key not in index_of:
                if not key.startswith(head):
                    # Code of another module run with these globals: its flag
                    # is not here (it is seen whenever its flag's place is up).
                    add(key)
                    return
                index_of[key] = int(key[start:])
            run(lower, key)

        return mark

    def _open_span(self, local: _ThreadState) -> set[str]:
        """A computed call begins on this thread: returns the keys recorded so
        far, for the enclosing call. ``seen`` is emptied for the new call only
        while no other thread is inside a computed call: emptying it would drop
        keys that call recorded, and it would store fewer dependencies than its
        code used. Otherwise the new call starts with those keys too (it may
        then record more dependencies, never fewer).

        Another thread's call or mark must not come between the check and the
        emptying: a lock ensures it, once a second thread has begun calls or
        marked; until then the thread that made the runtime goes without (the
        lock costs ~0.5 us in a call's path; ``_SoleThreadGate``).
        ``_end_computing`` needs no lock: it reads ``seen`` before its call
        stops counting as open.
        """
        return self._gate.run(self._open_span_now, len(local.stack))

    def _open_span_now(self, own: int) -> set[str]:
        """``_open_span`` once no other thread can begin a call meanwhile; this
        thread has ``own`` calls open."""
        seen = self.seen
        outer = set(seen)
        if len(self._open) == own:  # the open calls are all this thread's
            seen.clear()
            self._rearm_marks()
        self._open.append(None)
        return outer

    def _rearm_marks(self) -> None:
        """``seen`` was just emptied: every function must report again."""
        marked = self._marked
        while marked:
            unseen, index = marked.pop()
            unseen[index] = True

    def register_module(self, state: ModuleState) -> None:
        self.modules[state.name] = state
        self._by_namespace[id(state.namespace)] = state
        import_name = state.namespace.get("__name__")
        if isinstance(import_name, str):
            self._by_import_name[import_name] = state
        now = time.time()
        unrecorded = None
        if state.source is not None:
            with self._versions_lock:
                unrecorded = self._unrecorded
                if unrecorded is not None:
                    unrecorded.append((state, now))
        if unrecorded is None:
            # Also at once without the bytes the code was made from (a script
            # run as __main__): a new version's source is then read from the
            # file, and the sooner the likelier it is still the one that runs.
            self._record_versions(state, now)
        self._add_entries(state)

    def record_versions(self) -> None:
        """Record the versions of the modules registered so far; from now on each
        module records its own when it registers (as one without ``source``
        always does).

        Deferred from import to the first use of an op (``OpState._fill``, which
        every op call reaches before it stores or reuses anything, so no call is
        committed before the versions it depends on) or the end of the session,
        whichever comes first: on the path of every import, the query and rows
        cost ~0.1 ms for a 3,000-line module. Threads that get here together
        wait for the first to have buffered every row.
        """
        with self._versions_lock:
            unrecorded = self._unrecorded
            if unrecorded is None:
                return
            for state, registered in unrecorded:
                self._record_versions(state, registered)
            self._unrecorded = None

    def versions_after_fork(self) -> None:
        """In a forked child: the lock may have been held by a thread of the
        parent. (What is unrecorded stays so: the child records it too when it
        uses an op, the rows are the same.)"""
        self._versions_lock = threading.Lock()

    def _add_entries(self, state: ModuleState) -> None:
        """Let the module's entries answer lookups (``functions``, ``by_func_id``),
        each made when first looked up."""
        previous = self._tables.get(state.name) or self._by_prefix.get(state.prefix)
        self._tables[state.name] = state
        self._by_prefix[state.prefix] = state
        if previous is not None:
            # The same module registered again (a script run as __main__ that
            # imports itself, a reload): lookups answer as when every module put
            # all its entries in the tables at import, the last one over the
            # earlier one's.
            self._fill_tables(previous)
            self._fill_tables(state)

    def _fill_tables(self, state: ModuleState) -> None:
        for index in range(len(state.rows)):
            info = state.info(index)
            self.functions[info.key] = info
            self.by_func_id[info.func_id] = info

    def function_at(self, key: str) -> FunctionInfo | None:
        """The registered function, method or class whose mark is ``key``, if any."""
        info = self.functions.get(key)
        if info is None:
            prefix, _, index = key.rpartition(":")
            state = self._by_prefix.get(prefix)
            if state is None or not index.isdigit() or int(index) >= len(state.rows):
                return None
            info = self.functions[key] = state.info(int(index))
        return info

    def function_by_id(self, func_id: str) -> FunctionInfo | None:
        """The registered function, method or class ``func_id`` names, if any."""
        info = self.by_func_id.get(func_id)
        if info is None:
            module_name, _, qualname = func_id.rpartition(":")
            state = self._tables.get(module_name)
            info = state.info_named(qualname) if state is not None else None
            if info is not None:
                self.by_func_id[func_id] = info
        return info

    def _record_versions(self, state: ModuleState, now: float) -> None:
        """Store each function's identity and current version (with its source), and
        mark the versions as seen by this run.

        A version already stored costs one shared ``UPDATE`` of ``last_seen``; the
        file is read (for the source) only when some version is new, so importing a
        module that did not change writes almost nothing. The store keeps a digest
        of each module's (function, version) list: when it matches, not even the
        stored versions are read (the common case, on the path of every import).
        Read from the entry table's rows (``ModuleState``): no entry is made here.

        :param now: when the module was registered (its versions were seen then).
        """
        rows = state.rows
        name = state.name
        qualnames = list(map(_QUALNAME, rows))
        versions = list(map(_VERSION, rows))
        digest = _module_versions_digest(name, qualnames, versions)
        key = f"versions:{name}"
        if self.storage.meta_value(key) == digest:
            self.storage.mark_versions_seen(name, qualnames, versions, now, self.run_id)
            state.source = None
            return
        known = self.storage.known_versions(name)
        seen_names: list[str] = []
        seen_versions: list[str] = []
        lines: list[str] | None = None
        prefix = name + ":"
        for row in rows:
            qualname, kind, version, _, _, _, is_op, first, last, call_version = row
            func_id = prefix + qualname
            if (func_id, version) in known:
                seen_names.append(qualname)
                seen_versions.append(version)
                continue
            if lines is None:
                lines = python_lines(_module_text(state))
            source = "\n".join(lines[first - 1 : last])
            self.storage.add_row(
                "INSERT OR IGNORE INTO functions VALUES (?, ?, ?, ?, ?)",
                (func_id, state.name, qualname, kind, int(is_op)),
            )
            self.storage.add_row(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (func_id, version_id) DO UPDATE SET "
                "last_seen = excluded.last_seen, last_run_id = excluded.last_run_id",
                (
                    func_id,
                    version,
                    source,
                    now,
                    self.run_id,
                    now,
                    self.run_id,
                    call_version,
                ),
            )
        self.storage.mark_versions_seen(
            name, seen_names, seen_versions, now, self.run_id
        )
        # In the same commit as the rows it stands for.
        self.storage.add_meta(key, digest)
        state.source = None

    # -- op calls ------------------------------------------------------------------

    def begin_call(
        self, op: OpState, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[int, Any]:
        """The first half of an op call: ``(REUSED, result)``, ``(PLAIN, None)``
        (run the function unmemoized) or ``(COMPUTE, state)`` (run it, then hand
        ``state`` and the result to ``finish_call``, or the exception to
        ``fail_call``)."""
        local = self._threads.state
        if op.plain or local.busy:
            return PLAIN, None
        local.busy = True
        try:
            entered = time.perf_counter()
            self.counters.calls += 1
            op.calls += 1
            if op.calls in HOT_CHECKS and not op.always and self._is_hot(op):
                return PLAIN, None
            try:
                bound = op.bind(args, kwargs)
            except TypeError:
                return PLAIN, None  # let Python report the bad call itself
            info = op.info
            try:
                input_hashes = {
                    name: content_hash(value)
                    for name, value in bound
                    if name not in op.ignore
                }
            except HashingError as exc:
                self._warn_unhashable(op, bound, exc)
                self.counters.unmemoized += 1
                return PLAIN, None
            elide = op.elide
            if elide is None:
                elide = op.elide = self._elidable_defaults(op)
            inputs_id = self._inputs_id(info.func_id, input_hashes, elide)

            hit = self._lookup(info, inputs_id)
            if hit is not None:
                result = self._reuse(op, hit, local.stack, entered)
                if result is not _MISSING:
                    return REUSED, result
            if self.config.no_new_calls:
                shown = ", ".join(f"{n}={_preview(v, 40)}" for n, v in bound)
                msg = (
                    f"run --no-new-calls: {info.func_id}({shown}) is not stored and "
                    "would be computed; run without --no-new-calls to compute it."
                )
                raise NoNewCallsError(msg)
            state = _Computing(
                op,
                bound,
                input_hashes,
                inputs_id,
                entered,
                self._open_span(local),
                self._own_mutable_globals(info),
            )
            local.stack.append(state)
            state.t0 = time.perf_counter()
            return COMPUTE, state
        finally:
            local.busy = False
            local.global_hashes = None

    def _inputs_id(
        self, func_id: str, input_hashes: dict[str, str], elide: dict[str, str]
    ) -> str:
        """``combine(func_id, name1, value_id1, ...)`` over the hashed inputs but
        the accepted new parameters left at their default (``elide``)."""
        encoded = self._encoded
        pieces = [encoded.get(func_id) or self._encode(func_id)]
        for name, value_id in input_hashes.items():
            if elide and elide.get(name) == value_id:
                continue
            pieces.append(encoded.get(name) or self._encode(name))
            pieces.append(encode_part(value_id))
        return combine_encoded(len(pieces), b"".join(pieces))

    def _encode(self, text: str) -> bytes:
        """``encode_part(text)``, kept for the next call (see ``_encoded``)."""
        if len(self._encoded) > 10_000:  # bounded memory in long runs
            self._encoded.clear()
        found = self._encoded[text] = encode_part(text)
        return found

    def _reuse(
        self,
        op: OpState,
        hit: tuple[str, dict[str, str], str, bytes | None],
        stack: list[_Computing],
        entered: float,
    ) -> Any:
        """The stored result of a valid call, unpickled anew (``_MISSING`` when its
        value cannot be read: the call is then computed)."""
        call_id, stored_deps, output_id, data = hit
        try:
            result = loads(
                data if data is not None else self.storage.value_bytes(output_id)
            )
        except Exception as exc:  # a damaged value: compute instead
            LOG.warning("stored value %s unreadable (%s); recomputing", output_id, exc)
            return _MISSING
        self.counters.reused += 1
        if stack:
            # The enclosing call depends on this op's full version (defaults too).
            extra = stack[-1].extra
            extra.update(stored_deps)
            extra["f:" + op.info.func_id] = op.info.version
            stack[-1].children.append(call_id)
        self.storage.add_use(self.run_id, call_id)
        self.provenance.produced(call_id, result, output_id)
        op.overhead += time.perf_counter() - entered
        return result

    def _end_computing(
        self, state: _Computing, stack: list[_Computing]
    ) -> tuple[float, set[str]]:
        """Pop ``state`` off this thread's ``stack``; the keys of code that ran
        during it are merged back into the enclosing call's. Returns the call's
        duration and those keys."""
        duration = time.perf_counter() - state.t0
        seen = self.seen
        # Read before the call stops counting as open: from then on another
        # thread may empty ``seen`` (``_open_span``).
        ran = set(seen)
        seen.update(state.outer)
        if stack and stack[-1] is state:
            stack.pop()
            # (Not counted when the call began before a fork: this is the child.)
            self._open.pop()
        if stack and state.extra:
            stack[-1].extra.update(state.extra)
        return duration, ran

    def fail_call(self, state: _Computing, exc: BaseException) -> None:
        """The op raised ``exc``: record the failed call (it is never reused)."""
        local = self._threads.state
        local.busy = True
        try:
            duration, _ran = self._end_computing(state, local.stack)
            self.counters.failed += 1
            self._record_failure(
                state.op.info,
                state.inputs_id,
                state.started,
                duration,
                exc,
                state.children,
            )
        finally:
            local.busy = False
            local.global_hashes = None

    def finish_call(self, state: _Computing, result: Any) -> Any:
        """The op returned ``result``: store the call, return ``result``."""
        local = self._threads.state
        local.busy = True
        try:
            duration, ran = self._end_computing(state, local.stack)
            op = state.op
            info = op.info
            self.counters.computed += 1
            deps, writer = self._dependencies(ran, info)
            deps.update(state.extra)
            impure = self._impurity(
                op, writer, state.bound, state.input_hashes, state.globals_before
            )
            storage = self.storage
            try:
                output_id = content_hash(result)
                # A value stored already need not be pickled again, unless it is
                # small and immutable: then its bytes go into the call row.
                output_bytes = (
                    dumps(result)
                    if not storage.knows_value(output_id) or is_immutable(result)
                    else None
                )
            except HashingError as exc:
                self._warn(
                    op,
                    "output",
                    f"{info.func_id} returned a {type(result).__name__} that cannot "
                    f"be stored ({exc}); its calls run unmemoized.",
                    UnhashableArgumentWarning,
                )
                return result
            call_id = self._store_call(
                state,
                deps,
                output_id,
                output_bytes,
                result,
                status="impure" if impure else "ok",
                duration=duration,
            )
            stack = local.stack
            if stack:
                stack[-1].children.append(call_id)
            self.provenance.produced(call_id, result, output_id)
            op.work += duration
            op.overhead += time.perf_counter() - state.entered - duration
            return result
        finally:
            local.busy = False
            local.global_hashes = None

    # -- dependencies --------------------------------------------------------------

    def after_fork_in_child(self) -> None:
        """A forked child starts with its own counters, op stack and provenance;
        the parent's belong to the parent."""
        self.counters = Counters()
        self._threads = _PerThread()
        self.provenance = Provenance()
        self.seen.clear()
        self._rearm_marks()
        self._open = []  # the parent's other threads do not run here
        # Reset in place: the marks hold this gate.
        self._gate.reset()

    def _is_hot(self, op: OpState) -> bool:
        """Switch ``op`` to plain execution for the rest of the run when memoizing
        it costs more than computing it (checked after 1,000 and 10,000 calls)."""
        if op.overhead <= op.work or op.overhead < HOT_MIN_SECONDS:
            return False
        op.plain = True
        # Callers in the op's own module look it up as a global: give them the plain
        # function, which still reports that it ran, so it stays a dependency.
        namespace = op.info.module.namespace
        name = op.info.qualname
        wrapper = namespace.get(name)
        if getattr(wrapper, "__autopersist_op__", None) is op:
            namespace[name] = op.func
        per_call = op.overhead / max(op.calls - 1, 1) * 1e6
        work = op.work / max(op.calls - 1, 1) * 1e6
        self._warn(
            op,
            "hot",
            f"{op.info.func_id} runs unmemoized for the rest of this run: after "
            f"{op.calls - 1} calls, memoizing cost {per_call:.1f} us per call and "
            f"computing {work:.1f} us. Add '# persist: always' to its def line to "
            "keep it memoized, or '# persist: skip' to never memoize it.",
            HotOpWarning,
        )
        return True

    def _dependencies(
        self, keys: set[str], own: FunctionInfo
    ) -> tuple[dict[str, str], FunctionInfo | None]:
        """Turn the keys of code that ran into ``{dep name: version or value hash}``,
        and name the first function among them that assigns a module global (then
        the call is impure): one lookup of each key's entry serves both.

        The op itself is recorded with its ``call_version``: the call's inputs already
        hold the parameter defaults.
        """
        deps: dict[str, str] = {}
        writer = None
        functions = self.functions
        known = self._ran_deps
        for key in keys:
            info = functions.get(key) or self.function_at(key)
            if info is None:
                continue
            if writer is None and info.writes_globals:
                writer = info
            found = known.get(key)
            if (
                found is not None
                and found[0] is info
                and _same_objects(info.module.namespace, found[2])
            ):
                deps.update(found[1])
            else:
                deps.update(self._function_deps(key, info))
        deps["f:" + own.func_id] = own.call_version
        return deps, writer

    def _function_deps(self, key: str, info: FunctionInfo) -> dict[str, str]:
        """The dependencies that running ``info``'s code stands for: its version,
        its enclosing classes' versions, and the globals it reads.

        Kept (``_ran_deps``) when each global it reads is answered by identity
        (``_global_dep``: absent names, functions, classes, modules, immutable
        values): the same objects then stand for the same dependencies, and a
        helper called in a loop is not resolved again at every call.
        """
        deps = {"f:" + info.func_id: info.version}
        parent = info.parent
        while parent is not None:
            deps["f:" + parent.func_id] = parent.version
            parent = parent.parent
        namespace = info.module.namespace
        read: list[tuple[str, object]] | None = []
        for chain in info.global_reads:
            value = namespace.get(chain[0], _MISSING)
            found = self._global_dep(info.module, chain)
            if found is not None:
                deps[found[0]] = found[1]
            if read is not None and _answered_by_identity(chain, value, namespace):
                read.append((chain[0], value))
            else:
                read = None
        if read is not None:
            if len(self._ran_deps) > 10_000:  # bounded memory in long runs
                self._ran_deps.clear()
            self._ran_deps[key] = (info, deps, tuple(read))
        return deps

    def _global_dep(
        self, module: ModuleState, chain: tuple[str, ...]
    ) -> tuple[str, str] | None:
        """The dependency a read of ``chain`` in ``module`` stands for, if any.

        Project functions are left out (they are dependencies when they run);
        project classes stand for their version; library modules, functions and
        classes are not dependencies; any other value stands for its content hash.
        """
        value = module.namespace.get(chain[0], _MISSING)
        if value is _MISSING:
            return None  # a builtin, or a name defined later
        if len(chain) > 1:
            return self._resolve_global_dep(module, chain, value)
        # Read at the end of every call that ran the reading code: the answer for
        # the same object stays valid when it cannot change (immutable values,
        # functions, classes, modules), so it is kept per (module, name).
        key = (id(module), chain[0])
        cached = self._global_deps.get(key)
        if cached is not None and cached[0] is value:
            return cached[1]
        found = self._resolve_global_dep(module, chain, value)
        if isinstance(value, _FIXED_KINDS) or is_immutable(value):
            self._global_deps[key] = (value, found)
        return found

    def _resolve_global_dep(
        self, module: ModuleState, chain: tuple[str, ...], value: object
    ) -> tuple[str, str] | None:
        home, name = module, chain[0]
        for attr in chain[1:]:
            if not isinstance(value, ModuleType):
                break
            target = self._by_namespace.get(id(value.__dict__))
            if target is None:
                return None  # a library module
            value = target.namespace.get(attr, _MISSING)
            if value is _MISSING:
                return None
            home, name = target, attr
        if isinstance(value, ModuleType):
            return None
        if isinstance(value, (FunctionType, type)):
            info = self._info_of(value)
            if info is not None:
                if isinstance(value, type):
                    return "f:" + info.func_id, info.version
                return None
            if isinstance(value, type) or self._is_library(value):
                return None
        try:
            value_hash = self._global_hash(value)
        except HashingError:
            LOG.debug("global %s.%s is not hashable; not a dependency", home.name, name)
            return None
        return f"g:{home.name}:{name}", value_hash

    def _info_of(self, obj: Any) -> FunctionInfo | None:
        """The registered entry a function, op wrapper or class object belongs to."""
        state = self._by_import_name.get(getattr(obj, "__module__", None) or "")
        if state is None:
            return None
        qualname = getattr(obj, "__qualname__", "")
        return self.function_by_id(f"{state.name}:{qualname}")

    def _is_library(self, func: Any) -> bool:
        code = getattr(func, "__code__", None)
        if code is None:
            return True
        return self._by_import_name.get(getattr(func, "__module__", "") or "") is None

    def _function_version(self, func: FunctionType) -> str | None:
        """Code version of a project function, for hashing functions as values."""
        op = getattr(func, "__autopersist_op__", None)
        if op is not None:
            return str(op.info.version)
        info = self._info_of(func)
        return info.version if info is not None else None

    def _global_hash(self, value: object) -> str:
        """Content hash of a global's value; immutable values are hashed once.

        A mutable value can change whenever user code runs, so it is hashed again
        at each start and end of a call that reads it, but once per start or end:
        the lookup's validity checks and the purity check's "before" share one
        hash, and the dependencies of every function that read it and the purity
        check's "after" another (``_ThreadState.global_hashes``). A large array
        read as a global costs two hashes per computed call, not one per reader
        plus two.
        """
        if is_immutable(value):
            hashes = self._immutable_hashes
        else:
            local = self._threads.state
            if not local.busy:
                return content_hash(value)  # not inside a call's start or end
            memo = local.global_hashes
            if memo is None:
                memo = local.global_hashes = {}
            hashes = memo
        found = hashes.get(id(value))
        if found is not None and found[0] is value:
            return found[1]
        value_hash = content_hash(value)
        if len(hashes) > 50_000:  # bounded memory in long runs
            hashes.clear()
        hashes[id(value)] = (value, value_hash)
        return value_hash

    # -- validity of stored calls -----------------------------------------------------

    def _lookup(
        self, info: FunctionInfo, inputs_id: str
    ) -> tuple[str, dict[str, str], str, bytes | None] | None:
        storage = self.storage
        found = storage.candidates(info.func_id, inputs_id)
        if not found:
            return None
        holding = self._holding
        for call_id, deps_id, output_id, data in found:
            deps = storage.deps(deps_id)
            if (info.func_id, deps_id) in holding:
                return call_id, deps, output_id, data
            if self._deps_hold(deps, info):
                # Function versions cannot change during a run (global values
                # can): a set of function dependencies that holds keeps holding.
                if all(name.startswith("f:") for name in deps):
                    if len(holding) > 10_000:  # bounded memory in long runs
                        holding.clear()
                    holding.add((info.func_id, deps_id))
                return call_id, deps, output_id, data
        if self.config.interactive:
            candidates = [
                (call_id, storage.deps(deps_id), output_id, data)
                for call_id, deps_id, output_id, data in found
            ]
            # Ask only when no stored call is valid as it is, newest first.
            for candidate in reversed(candidates):
                if self._ask_about_changes(candidate[1], info):
                    return candidate
        return None

    def _ask_about_changes(self, deps: dict[str, str], own: FunctionInfo) -> bool:
        """``run --interactive``: when only changed functions stand between a stored
        call and its reuse, ask about each (once per run); True if all are declared
        not to need recomputation (they are then accepted, as with ``accept``)."""
        changed: list[tuple[str, str, str]] = []
        for name, recorded in deps.items():
            kind, _, func_id = name.partition(":")
            if kind != "f":
                if not self._deps_hold({name: recorded}, own):
                    return False  # a changed global: nothing to ask
                continue
            current = (
                own.call_version
                if func_id == own.func_id
                else self.current_version(func_id)
            )
            if current is None:
                return False
            if current != recorded and not self._is_accepted(
                func_id, recorded, current
            ):
                changed.append((func_id, recorded, current))
        if not changed:
            return False
        for func_id, old, new in changed:
            if not self._decide(func_id, old, new):
                return False
        return True

    def _decide(self, func_id: str, old: str, new: str) -> bool:
        key = (func_id, old, new)
        if key in self._decisions:
            return self._decisions[key]
        self.storage.flush()  # this run's versions (and their source) are buffered
        old_source = self.storage.version_source(func_id, old) or "(source not stored)"
        info = self.function_by_id(func_id)
        new_source = (
            self.storage.version_source(func_id, info.version) if info else None
        )
        diff = "\n".join(
            difflib.unified_diff(
                old_source.splitlines(),
                (new_source or "(source not stored)").splitlines(),
                fromfile=f"{func_id} (stored calls)",
                tofile=f"{func_id} (now)",
                lineterm="",
            )
        )
        sys.stderr.write(
            f"autopersist: {func_id} changed since stored calls used it:\n{diff}\n"
            "Does this change require recomputation? [y]es / [n]o, reuse / [a]bort: "
        )
        sys.stderr.flush()
        answer = (sys.stdin.readline() or "y").strip().lower()[:1]
        if answer == "a":
            msg = f"run aborted at the --interactive question about {func_id}."
            raise AutopersistError(msg)
        reuse = answer == "n"
        self._decisions[key] = reuse
        if reuse:
            self.storage.execute_now(
                "INSERT OR REPLACE INTO accepted VALUES (?, ?, ?, ?, ?)",
                (func_id, old, new, time.time(), None),
            )
            self._compatibility = None
        return reuse

    def _deps_hold(self, deps: dict[str, str], own: FunctionInfo) -> bool:
        own_name = "f:" + own.func_id
        for name, recorded in deps.items():
            kind, _, rest = name.partition(":")
            if kind == "f":
                current = (
                    own.call_version if name == own_name else self.current_version(rest)
                )
                if current != recorded and not self._is_accepted(
                    rest, recorded, current
                ):
                    return False
            elif kind == "g":
                module_name, _, global_name = rest.rpartition(":")
                state = self.modules.get(module_name)
                if state is None:
                    return False
                found = self._global_dep(state, (global_name,))
                if found is None or found[1] != recorded:
                    return False
            else:
                return False
        return True

    def _is_accepted(self, func_id: str, old: str, new: str | None) -> bool:
        """Was ``new`` declared compatible with ``old`` (``autopersist accept``)?"""
        return self.compatibility.same(func_id, old, new)

    @property
    def compatibility(self) -> Compatibility:
        """Versions declared compatible, read from the store once per run."""
        if self._compatibility is None:
            self._compatibility = Compatibility(self.storage.accepted_rows())
        return self._compatibility

    def _elidable_defaults(self, op: OpState) -> dict[str, str]:
        """``{parameter: hash of its default}`` for accepted new parameters."""
        names = self.added_params(op.info)
        found: dict[str, str] = {}
        for name in names:
            param = op.signature.parameters.get(name)
            if param is None or param.default is inspect.Parameter.empty:
                continue
            try:
                found[name] = content_hash(param.default)
            except HashingError:
                continue
        return found

    def added_params(self, info: FunctionInfo) -> frozenset[str]:
        """Parameters an accepted change added to this op with a default: a call
        passing that default has the identity of the old calls without it."""
        return self.compatibility.added_params(info.func_id, info.call_version)

    def current_version(self, func_id: str) -> str | None:
        """The running version of a project function; parsed from its file when its
        module was not imported in this process; None when it no longer exists."""
        info = self.function_by_id(func_id)
        if info is not None:
            return info.version
        module_name, _, qualname = func_id.rpartition(":")
        if module_name in self.modules:
            return None  # the module is loaded and has no such function any more
        path = self._module_file(module_name)
        if path is None:
            return None
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return None
        cached = self._file_versions.get(path)
        if cached is None or cached[0] != mtime:
            from autopersist._transform import versions_of_module

            try:
                source = Path(path).read_text(encoding="utf-8")
                cached = (mtime, versions_of_module(source))
            except Exception:  # unparsable now: its functions have no current version
                cached = (mtime, {})
            self._file_versions[path] = cached
        return cached[1].get(qualname)

    def _module_file(self, module_name: str) -> str | None:
        base = self.config.project_root.joinpath(*module_name.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return str(candidate)
        return None

    # -- purity ----------------------------------------------------------------------

    def _own_mutable_globals(self, info: FunctionInfo) -> dict[str, str]:
        """Hashes of the mutable globals the op's own code reads, before it runs."""
        before: dict[str, str] = {}
        namespace = info.module.namespace
        for chain in info.global_reads:
            value = namespace.get(chain[0], _MISSING)
            if value is _MISSING or len(chain) > 1 or is_immutable(value):
                continue
            if isinstance(value, (ModuleType, FunctionType, type)):
                continue
            try:
                before[chain[0]] = self._global_hash(value)
            except HashingError:
                continue
        return before

    def _impurity(
        self,
        op: OpState,
        writer: FunctionInfo | None,
        bound: list[tuple[str, Any]],
        hashes: dict[str, str],
        globals_before: dict[str, str],
    ) -> str:
        """Why this call must never be reused ("" when it can be); ``writer`` is
        the function that ran and assigns a module global, if any."""
        cause = ""
        if writer is not None:
            cause = f"it assigns a module global (in {writer.qualname})"
        if not cause:
            for name, value in bound:
                if name in hashes and not is_immutable(value):
                    try:
                        changed = content_hash(value) != hashes[name]
                    except HashingError:
                        changed = False
                    if changed:
                        cause = f"it changed its argument {name!r} in place"
                        break
        if not cause and globals_before:
            namespace = op.info.module.namespace
            for name, before in globals_before.items():
                try:
                    changed = self._global_hash(namespace.get(name)) != before
                except HashingError:
                    changed = False
                if changed:
                    cause = f"it changed the module global {name!r} in place"
                    break
        if cause:
            self._warn(
                op,
                "impure",
                f"{op.info.func_id} will not be reused: {cause}, and reusing the call "
                "could not repeat that.",
                ImpureCallWarning,
            )
        return cause

    # -- recording -------------------------------------------------------------------

    def _store_call(
        self,
        state: _Computing,
        deps: dict[str, str],
        output_id: str,
        output_bytes: bytes | None,
        result: object,
        *,
        status: str,
        duration: float,
    ) -> str:
        """Buffer a computed call with its values, dependency set and links;
        ``output_bytes`` is None when the output value is stored already."""
        storage = self.storage
        info = state.op.info
        deps_id, deps_json = self._deps_record(deps)
        storage.add_deps(deps_id, deps_json)
        if output_bytes is not None and not storage.knows_value(output_id):
            storage.add_value(
                output_id, output_bytes, _type_name(result), _preview(result)
            )
        hashes = state.input_hashes
        # A reusable call's id is derived from what makes it reusable, so two
        # processes computing the same call store it once.
        call_id = (
            self._call_id(info.func_id, state.inputs_id, deps_id)
            if status == "ok"
            else uuid.uuid4().hex
        )
        edges: list[tuple[str, str, str, str]] = []
        for name, value in state.bound:
            value_id = hashes.get(name)
            if value_id is None:
                continue  # an ignored parameter
            if not storage.knows_value(value_id):
                try:
                    data = dumps(value)
                except HashingError:
                    continue
                storage.add_value(value_id, data, _type_name(value), _preview(value))
            edges.append((call_id, "in", name, value_id))
        links = self.provenance.links(call_id, state.bound, hashes)
        storage.add_call(
            (
                call_id,
                info.func_id,
                info.version,
                state.inputs_id,
                deps_id,
                output_id,
                status,
                self.run_id,
                state.started,
                duration,
                None,
                output_bytes
                if output_bytes is not None and len(output_bytes) <= SMALL_OUTPUT
                else None,
            ),
            edges,
            links,
            state.children,
            output=output_bytes,
        )
        return call_id

    def _call_id(self, func_id: str, inputs_id: str, deps_id: str) -> str:
        """``combine(func_id, inputs_id, deps_id)``, the op id encoded once."""
        # An op's calls mostly share one dependency set: its id is kept encoded too.
        encoded = self._encoded
        head = encoded.get(func_id) or self._encode(func_id)
        tail = encoded.get(deps_id) or self._encode(deps_id)
        return combine_encoded(3, head + encode_part(inputs_id) + tail)

    def _deps_record(self, deps: dict[str, str]) -> tuple[str, str]:
        """``(deps_id, JSON)`` of a dependency set; calls of one op in a loop mostly
        share one, so both are computed once per distinct set."""
        last = self._last_deps
        if last is not None and last[0] == deps:
            return last[1]  # the previous call's set: no sorting, no lookup
        items = tuple(sorted(deps.items()))
        found = self._deps_records.get(items)
        if found is None:
            deps_json = json.dumps(items, separators=(",", ":"))
            found = (combine(*(part for item in items for part in item)), deps_json)
            if len(self._deps_records) > 10_000:  # bounded memory in long runs
                self._deps_records.clear()
            self._deps_records[items] = found
        self._last_deps = (deps, found)
        return found

    def _record_failure(
        self,
        info: FunctionInfo,
        inputs_id: str,
        started: float,
        duration: float,
        exc: BaseException,
        children: list[str],
    ) -> None:
        try:
            error = _storable(f"{type(exc).__name__}: {exc}"[:1000])
        except Exception:  # a __str__ that raises
            error = type(exc).__name__
        self.storage.add_call(
            (
                uuid.uuid4().hex,
                info.func_id,
                info.version,
                inputs_id,
                None,
                None,
                "failed",
                self.run_id,
                started,
                duration,
                error,
                None,
            ),
            [],
            children=children,
        )

    # -- warnings --------------------------------------------------------------------

    def _warn(
        self, op: OpState, kind: str, message: str, category: type[Warning]
    ) -> None:
        if kind in op.warned:
            return
        op.warned = {*op.warned, kind}
        warnings.warn(message, category, stacklevel=_user_stacklevel())

    def _warn_unhashable(
        self, op: OpState, bound: list[tuple[str, Any]], exc: HashingError
    ) -> None:
        name = next(
            (n for n, v in bound if n not in op.ignore and not _hashable(v)), "?"
        )
        value = dict(bound).get(name)
        self._warn(
            op,
            "unhashable",
            f"{op.info.func_id} runs unmemoized: argument {name!r} is a "
            f"{type(value).__name__} that cannot be hashed ({exc}). Add "
            f"'# persist: ignore={name}' to the def line if it does not affect the "
            "result.",
            UnhashableArgumentWarning,
        )


def _same_objects(
    namespace: dict[str, Any], read: tuple[tuple[str, object], ...]
) -> bool:
    """True when each name in ``read`` is still bound to the same object (or
    still absent)."""
    for name, value in read:
        if namespace.get(name, _MISSING) is not value:
            return False
    return True


def _answered_by_identity(
    chain: tuple[str, ...], value: object, namespace: dict[str, Any]
) -> bool:
    """True when the dependency of a read of ``chain`` depends only on the
    identity of ``value`` (read before it was resolved, and still bound)."""
    if len(chain) > 1 or namespace.get(chain[0], _MISSING) is not value:
        return False
    return value is _MISSING or isinstance(value, _FIXED_KINDS) or is_immutable(value)


def _hashable(value: object) -> bool:
    try:
        content_hash(value)
    except HashingError:
        return False
    return True


def _type_name(value: object) -> str:
    cls = type(value)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


_CONTAINERS = frozenset({list, tuple, dict, set, frozenset})
_PREVIEW_ITEMS = 50
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlist = _SHORT_REPR.maxtuple = _SHORT_REPR.maxdict = _PREVIEW_ITEMS
_SHORT_REPR.maxset = _SHORT_REPR.maxfrozenset = _PREVIEW_ITEMS
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = _PREVIEW_CHARS


def _preview(value: object, limit: int = _PREVIEW_CHARS) -> str:
    try:
        if type(value) in _CONTAINERS and len(value) > _PREVIEW_ITEMS:  # type: ignore[arg-type]
            # repr of a big container costs time in proportion to its size, all
            # but the first few hundred characters thrown away.
            text = _SHORT_REPR.repr(value)
        else:
            text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return _storable(text)


def _storable(text: str) -> str:
    """``text`` with lone surrogates (say from a filename) escaped: SQLite needs
    UTF-8, which has no form for them."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _user_stacklevel() -> int:
    """Stack level of the first frame outside autopersist, for warnings."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def strip_own_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback without autopersist's frames, so the user sees only their code."""
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    head = tb
    while tb is not None and tb.tb_next is not None:
        if tb.tb_next.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            tb.tb_next = tb.tb_next.tb_next
        else:
            tb = tb.tb_next
    return head
