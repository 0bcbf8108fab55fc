"""What the rewritten code of an instrumented module meets: its ``ModuleState``
(bound as ``__autopersist__``), the entries of its functions (``FunctionInfo``),
and its ops: the wrapper that stands for each (one Python frame around the
function) and the op's state (``OpState``). The calls themselves are made by the
process's ``Runtime`` (``_runtime``), whose entry points every wrapper's closure
shares (``call_cells``)."""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import CellType, CodeType, FunctionType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autopersist._runtime import Runtime, _Computing

#: Code flags of a ``*args`` or ``**kwargs`` parameter.
_VARIADIC = inspect.CO_VARARGS | inspect.CO_VARKEYWORDS
_NOTHING_WARNED: frozenset[str] = frozenset()
#: The ``ignore`` of the ops that ignore no parameter (most), shared.
_NO_IGNORE: frozenset[str] = frozenset()
#: What ``Runtime.begin_call`` tells an op wrapper to do. Small ints: a wrapper
#: pickled by value (cloudpickle) compares them equal in any process.
REUSED, PLAIN, COMPUTE = 1, 2, 3
#: The runtime of this process, for op wrappers unpickled here (see ``__reduce__``).
_current: weakref.ref[Runtime] | None = None


def set_current(runtime: Runtime) -> None:
    """Make ``runtime`` the one op wrappers unpickled in this process call."""
    global _current
    _current = weakref.ref(runtime)


@dataclass(eq=False, slots=True)
class FunctionInfo:
    """A tracked function, method or class, as registered by its module."""

    key: str
    func_id: str  # "module:qualname": the identity stored in the store
    module: ModuleState
    qualname: str
    kind: str
    version: str
    parent: FunctionInfo | None
    global_reads: tuple[tuple[str, ...], ...]
    writes_globals: bool
    is_op: bool
    first_line: int
    last_line: int
    #: For ops: the version without parameter defaults, which the op's own calls
    #: record (their inputs hold the defaults). Equal to ``version`` otherwise.
    call_version: str


class ModuleState:
    """Bound as ``__autopersist__`` in one instrumented module.

    The module's entry table (``register``) is kept as the rows the rewriter
    wrote; a row becomes a ``FunctionInfo`` only when something asks for it: an op
    decorator, the end of a call its function ran in, a lookup by identity. A
    module is imported at every run, and most of its functions are not called in a
    given run, or not before much later: one object per row made at import cost
    about 0.1 ms per hundred rows, and more garbage-collector passes during the
    import.
    """

    def __init__(
        self, runtime: Runtime, name: str, namespace: dict[str, Any], path: str
    ):
        self.runtime = runtime
        #: The module's identity in the store: its dotted path under the project
        #: root (``pkg.mod``), the same whether imported or run as ``__main__``.
        self.name = name
        self.namespace = namespace
        self.path = path
        self.prefix = ""
        #: The entry table: ``(qualname, kind, version, parent, global_reads,
        #: writes_globals, is_op, first_line, last_line, call_version)`` per row.
        self.rows: tuple[tuple[Any, ...], ...] = ()
        self._infos: dict[int, FunctionInfo] = {}
        self._by_qualname: dict[str, int] | None = None
        #: The bytes the module's code was made from, when the importer has them,
        #: until its versions are recorded: the source stored with a new version
        #: is then that of the code that ran, however long after the import the
        #: versions are recorded (``Runtime.record_versions``).
        self.source: bytes | None = None
        #: Rows of ops whose decorator was evaluated and not applied yet (``op``).
        self._pending: list[int | tuple[int, tuple[str, ...], bool]] = []
        #: Whether the marks' flags stay raised (``Runtime.bind_marks``).
        self.flags_fixed = False
        self._decorate = self._decorate_op

    def register(self, prefix: str, rows: tuple[tuple[Any, ...], ...]) -> None:
        """Called by the first line the rewriter inserts: the module's entry table.
        Binds the marks' flags and function (``UNSEEN_NAME``, ``MARK_NAME``), before
        any function of the module can run."""
        self.prefix = prefix
        self.rows = rows
        self.runtime.bind_marks(self)
        self.runtime.register_module(self)

    def info(self, index: int) -> FunctionInfo:
        """The entry of row ``index`` (made on first use, then always the same)."""
        found = self._infos.get(index)
        return found if found is not None else self._new_info(index)

    def info_named(self, qualname: str) -> FunctionInfo | None:
        """The entry for ``qualname``; of a name defined twice, the last row."""
        by_qualname = self._by_qualname
        if by_qualname is None:
            by_qualname = {row[0]: index for index, row in enumerate(self.rows)}
            self._by_qualname = by_qualname
        index = by_qualname.get(qualname)
        return None if index is None else self.info(index)

    def _new_info(self, index: int) -> FunctionInfo:
        qualname, kind, version, parent, reads, writes, is_op, first, last, call_v = (
            self.rows[index]
        )
        # Positional (in field order): a dataclass ``__init__`` called with 13
        # keywords costs three times as much, and every op makes one at import.
        made = FunctionInfo(
            f"{self.prefix}:{index}",  # key
            f"{self.name}:{qualname}",  # func_id
            self,  # module
            qualname,
            kind,
            version,
            self.info(parent) if parent >= 0 else None,
            reads,  # global_reads
            writes,  # writes_globals
            is_op,
            first,  # first_line
            last,  # last_line
            call_v,  # call_version
        )
        # Two threads may make the same row at once: both get the first one kept.
        return self._infos.setdefault(index, made)

    def op(
        self, index: int, ignore: tuple[str, ...] = (), always: bool = False
    ) -> Callable[[FunctionType], Callable[..., Any]]:
        """The decorator the rewriter puts innermost on every op.

        Returns the module's one decorator (``_decorate``) and leaves the row for
        it on a stack: a module imports at every run, and a decorator made per op
        (a closure and its five cells) was a third of the cost of making an op.
        The op decorator is the innermost one, so it is the last decorator
        evaluated before the ``def`` and the first applied after it; anything the
        ``def`` evaluates in between (defaults, annotations) that makes ops of
        this module too puts and takes its own row above this one. A row left
        behind by a ``def`` that raised lies below every later one.
        """
        self._pending.append(
            index if not ignore and not always else (index, ignore, always)
        )
        return self._decorate

    def _decorate_op(self, func: FunctionType) -> Callable[..., Any]:
        pending = self._pending.pop()
        if isinstance(pending, int):
            index, ignore, always = pending, _NO_IGNORE, False
        else:
            index, names, always = pending
            ignore = frozenset(names) if names else _NO_IGNORE
        op = _deferred_op_state(self, index, func, ignore, always)
        return _op_wrapper(self.runtime, op, self.namespace)


def _wrapper_template(
    begin: Callable[..., tuple[int, Any]],
    finish: Callable[[Any, Any], Any],
    fail: Callable[[Any, BaseException], None],
    func: FunctionType,
    op: OpState,
) -> Callable[..., Any]:
    """Holds the code of every op wrapper (``_WRAPPER_CODE``); never called."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kind, value = begin(op, args, kwargs)
        if kind == 1:  # REUSED (literals: no closure cells to allocate per op)
            return value
        if kind == 2:  # PLAIN
            return func(*args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            fail(value, exc)
            raise
        return finish(value, result)

    return wrapper


_WRAPPER_CODE: CodeType = next(
    const
    for const in _wrapper_template.__code__.co_consts
    if isinstance(const, CodeType)
)
#: The free variables of the wrapper code, in the order of its closure.
_WRAPPER_CELLS: tuple[str, ...] = _WRAPPER_CODE.co_freevars
_FUNC_CELL = _WRAPPER_CELLS.index("func")
_OP_CELL = _WRAPPER_CELLS.index("op")
#: Whether an op's own cells end the closure (the compiler orders free variables
#: by name), so that it is the shared cells plus those two.
_OWN_CELLS_LAST = _WRAPPER_CELLS[-2:] == ("func", "op")
#: What ``functools.update_wrapper`` copies besides the attributes ``_op_wrapper``
#: copies one by one (``__type_params__`` from Python 3.12 on).
_MORE_ASSIGNMENTS = tuple(
    name
    for name in functools.WRAPPER_ASSIGNMENTS
    if name
    not in {"__module__", "__name__", "__qualname__", "__doc__", "__annotations__"}
)


def call_cells(runtime: Runtime) -> tuple[CellType, ...]:
    """The cells of an op wrapper's closure that every op shares (the runtime's
    call entry points), in closure order without the op's own two."""
    entries = {
        "begin": runtime.begin_call,
        "finish": runtime.finish_call,
        "fail": runtime.fail_call,
    }
    return tuple(CellType(entries[name]) for name in _WRAPPER_CELLS if name in entries)


def _op_wrapper(
    runtime: Runtime, op: OpState, namespace: dict[str, Any]
) -> Callable[..., Any]:
    """The function that stands for an op: one Python frame between its caller and
    the op's own code, so stack depth, ``sys._getframe`` and tracebacks change as
    little as possible. Everything it needs is in its closure; it is made with
    the op's module globals, so code inspecting its caller's frame
    (``sys._getframe(n).f_globals["__name__"]``, as ``typing`` and
    ``collections.namedtuple`` do) finds the user's module, not autopersist.

    Made straight from the wrapper's code object, with the runtime's call entry
    points in cells all ops share (``call_cells``): an op costs two new
    cells and a closure instead of five cells, three bound methods and a throwaway
    function. A module with hundreds of ops makes them at every import, and each
    object kept is also work for the garbage collector.
    """
    func = op.func
    shared = runtime.call_cells
    if _OWN_CELLS_LAST:
        closure = (*shared, CellType(func), CellType(op))
    else:
        cells = list(shared)
        own = sorted([(_FUNC_CELL, CellType(func)), (_OP_CELL, CellType(op))])
        for index, cell in own:  # in closure order, so each lands at its index
            cells.insert(index, cell)
        closure = tuple(cells)
    rebuilt = FunctionType(
        _WRAPPER_CODE, namespace, func.__name__, func.__defaults__, closure
    )
    # What functools.update_wrapper copies (``__name__`` is set above). It also
    # copies ``func.__dict__``: empty here, since this decorator is the
    # innermost and ``func`` comes straight from its ``def``.
    rebuilt.__module__ = func.__module__
    rebuilt.__qualname__ = func.__qualname__
    rebuilt.__doc__ = func.__doc__
    rebuilt.__annotations__ = func.__annotations__
    for name in _MORE_ASSIGNMENTS:
        setattr(rebuilt, name, getattr(func, name))
    rebuilt.__dict__ = {"__wrapped__": func, "__autopersist_op__": op}
    # Read by code that inspects functions (the wrapper's own signature takes
    # ``*args, **kwargs``, so these never apply to its calls); the defaults are
    # given above.
    kwdefaults = func.__kwdefaults__
    if kwdefaults is not None:
        rebuilt.__kwdefaults__ = kwdefaults
    return rebuilt


class OpState:
    """Per-op state: the raw function, how to bind its arguments, warnings given.

    Slots, and nothing allocated until needed: a module with hundreds of ops makes
    one of these per op at every import. Those are made as ``_OpStateToFill``,
    which gets its entry and the fields derived from it on first use: most ops of
    a module are not called in a given run, or only much later.
    """

    __slots__ = (
        "_index",
        "_module",
        "_signature",
        "always",
        "calls",
        "elide",
        "func",
        "ignore",
        "info",
        "overhead",
        "plain",
        "positional_names",
        "warned",
        "work",
    )
    #: The row of the op's entry in ``_module`` (``_OpStateToFill`` only).
    _index: int

    def __init__(
        self,
        info: FunctionInfo,
        func: FunctionType,
        ignore: frozenset[str],
        always: bool,
    ) -> None:
        self._start(func, ignore, always, None)
        self._fill(info)

    def _start(
        self,
        func: FunctionType,
        ignore: frozenset[str],
        always: bool,
        module: ModuleState | None,
    ) -> None:
        """The fields set before the op's entry is known (``_deferred_op_state``)."""
        self.func = func
        self.ignore = ignore
        self.always = always
        #: The hot-op guard (PRODUCT.md §3.9): calls so far, seconds spent in the
        #: function and in memoizing it, and whether it now runs plain.
        self.calls = 0
        self.work = 0.0
        self.overhead = 0.0
        self.plain = False
        #: The module whose entry is still to be filled in (``_OpStateToFill``).
        self._module = module

    def _fill(self, info: FunctionInfo) -> None:
        """The fields made from the op's entry and code; the first op of a process
        to get them has the runtime record its modules' versions first."""
        runtime = info.module.runtime
        if runtime._unrecorded is not None:
            runtime.record_versions()
        self.info = info
        code = self.func.__code__
        simple = not code.co_kwonlyargcount and not code.co_flags & _VARIADIC
        #: Names for the fast path: all arguments given positionally, no defaults used.
        #: (Read from the code object: ``inspect.signature`` is computed only when a
        #: call needs it, which keeps importing a module with many ops cheap.)
        self.positional_names = code.co_varnames[: code.co_argcount] if simple else None
        self.warned: frozenset[str] | set[str] = _NOTHING_WARNED
        self._signature: inspect.Signature | None = None
        #: Accepted new parameters and their default's hash (loaded on first call).
        self.elide: dict[str, str] | None = None

    @property
    def signature(self) -> inspect.Signature:
        found = self._signature
        if found is None:
            found = self._signature = inspect.signature(self.func)
        return found

    def __reduce__(self) -> tuple[Any, ...]:
        # Held in an op wrapper's closure, so pickled with a wrapper sent by value
        # (cloudpickle does so for ops defined in ``__main__``, e.g. to loky
        # workers) and hashed when an op is passed as a value: it stands for the
        # op's identity and version, and becomes the receiving process's own op.
        return (
            _op_state_here,
            (
                self.info.func_id,
                self.info.version,
                self.func,
                tuple(sorted(self.ignore)),
                self.always,
            ),
        )

    @classmethod
    def stand_in(cls, func: FunctionType) -> OpState:
        """An op this process cannot memoize (its module is not registered here):
        its calls run the function plain."""
        state = cls.__new__(cls)
        state.func = func
        state.plain = True
        state._module = None
        return state

    def bind(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> list[tuple[str, Any]]:
        """``[(parameter, value)]`` in signature order, defaults applied.

        :raises TypeError: the arguments do not fit the signature.
        """
        names = self.positional_names
        if names is not None and not kwargs and len(args) == len(names):
            return list(zip(names, args, strict=True))
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return list(bound.arguments.items())


class _OpStateToFill(OpState):
    """An op state made at import (``_deferred_op_state``): ``__getattr__``, reached
    only for a slot not set yet, fills in the fields made from the op's entry,
    then makes it a plain ``OpState``. A class of its own because a class that
    defines ``__getattr__`` loses the interpreter's fast attribute access (a slot
    read costs ~20 ns instead of ~4), and the call path reads an op's state a
    dozen times per call.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        # Two threads may both fill one in: they write the same values (the entry
        # is made once, ``ModuleState.info``), and each reads its answer after.
        if name != "_module":
            module = self._module
            if module is not None:
                self._fill(module.info(self._index))
                self._module = None
                self.__class__ = OpState  # type: ignore[assignment]
        # Set by now, or not a field: AttributeError (without coming back here).
        return object.__getattribute__(self, name)


def _deferred_op_state(
    module: ModuleState,
    index: int,
    func: FunctionType,
    ignore: frozenset[str],
    always: bool,
) -> OpState:
    """The op state the op decorator makes at import: what its wrapper reads
    before anything else (``begin_call``), and its row; the rest is filled in on
    first use (``_OpStateToFill``). Saves the entry and most of the fields (about
    half of what making an op cost) for every op a run does not call."""
    op: OpState = _new_object(_OpStateToFill)
    op._start(func, ignore, always, module)
    op._index = index
    return op


_new_object = object.__new__


class _NoRuntime:
    """Stands for the runtime in a process without one: op calls run plain."""

    def begin_call(
        self, op: OpState, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[int, Any]:
        return PLAIN, None

    def finish_call(self, state: _Computing, result: Any) -> Any:
        return result

    def fail_call(self, state: _Computing, exc: BaseException) -> None:
        return None


def runtime_here() -> Runtime | _NoRuntime:
    runtime = _current() if _current is not None else None
    return runtime if runtime is not None else _NoRuntime()


def _op_state_here(
    func_id: str,
    version: str,
    func: FunctionType,
    ignore: tuple[str, ...],
    always: bool,
) -> OpState:
    """The op state of an unpickled op wrapper: memoized when this process runs
    the same version of the op, else plain."""
    runtime = _current() if _current is not None else None
    info = runtime.function_by_id(func_id) if runtime is not None else None
    if info is None or info.version != version or not info.is_op:
        return OpState.stand_in(func)
    return OpState(info, func, ignore=frozenset(ignore), always=always)
