"""What importing an instrumented module costs the runtime, and that the cheaper
way keeps every answer: entries made when asked for, op wrappers made from one
code object, versions recorded as before (issue #6)."""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import FunctionType
from typing import Any

import pytest

from autopersist import _ops, _runtime
from autopersist._config import load_config
from autopersist._hashing import hash_bytes
from autopersist._ops import ModuleState
from autopersist._runtime import Runtime
from autopersist._storage import Storage

V1, V2, V3, V4 = ("1" * 32, "2" * 32, "3" * 32, "4" * 32)

#: (qualname, kind, version, parent, global_reads, writes_globals, is_op,
#: first_line, last_line, call_version), as the rewriter writes them.
ROWS: tuple[tuple[Any, ...], ...] = (
    ("op", "function", V1, -1, (("helper",),), False, True, 2, 3, V2),
    ("helper", "function", V2, -1, (("LIMIT",),), True, False, 5, 6, V2),
    ("Model", "class", V3, -1, (), False, False, 8, 11, V3),
    ("Model.fit", "method", V4, 2, (), False, False, 10, 11, V4),
)
SOURCE = "\n".join(f"line {n}" for n in range(1, 12)) + "\n"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    made = Runtime(load_config(tmp_path / "store"), Storage(tmp_path / "store"), "r1")
    yield made
    made.storage.close()


def module(runtime: Runtime, tmp_path: Path, name: str = "mod") -> ModuleState:
    path = tmp_path / f"{name}.py"
    path.write_text(SOURCE, encoding="utf-8")
    return runtime.new_module(name, {"__name__": name}, str(path))


def versions_rows(store: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(store / "store.db") as conn:
        return conn.execute(
            "SELECT func_id, version_id, source, first_seen, last_seen, "
            "last_run_id, call_version FROM versions ORDER BY func_id"
        ).fetchall()


# -- entries ------------------------------------------------------------------------


def test_registering_makes_no_entry_until_one_is_asked_for(runtime, tmp_path):
    state = module(runtime, tmp_path)
    state.register("P", ROWS)
    assert runtime.functions == {} and runtime.by_func_id == {}

    fit = runtime.function_by_id("mod:Model.fit")
    assert fit is not None
    assert (fit.key, fit.func_id, fit.qualname, fit.kind, fit.version) == (
        "P:3",
        "mod:Model.fit",
        "Model.fit",
        "method",
        V4,
    )
    assert fit.parent is runtime.function_by_id("mod:Model")
    assert fit.module is state and fit.call_version == V4
    assert (fit.first_line, fit.last_line, fit.is_op) == (10, 11, False)
    # One object per row, whichever way it is asked for.
    assert runtime.function_at("P:3") is fit is state.info(3)
    helper = runtime.function_at("P:1")
    assert helper is runtime.function_by_id("mod:helper")
    assert helper.global_reads == (("LIMIT",),) and helper.writes_globals

    assert runtime.function_by_id("mod:missing") is None
    assert runtime.function_by_id("other:helper") is None
    assert runtime.function_at("P:4") is None
    assert runtime.function_at("Q:0") is None
    assert runtime.current_version("mod:helper") == V2
    assert runtime.current_version("mod:missing") is None


def test_op_decorator_uses_the_entry_lookups_find(runtime, tmp_path):
    state = module(runtime, tmp_path)
    state.register("P", ROWS)

    def op(x):
        return x

    wrapper = state.op(0)(op)
    info = wrapper.__autopersist_op__.info
    assert info is runtime.function_by_id("mod:op") is runtime.function_at("P:0")
    assert info.is_op and info.call_version == V2


def test_name_defined_twice_answers_with_its_last_row(runtime, tmp_path):
    rows = (*ROWS, ("helper", "function", V3, -1, (), False, False, 8, 9, V3))
    state = module(runtime, tmp_path)
    state.register("P", rows)
    assert runtime.function_by_id("mod:helper") is state.info(4)
    assert runtime.function_at("P:1") is state.info(1)


def test_module_registered_again_answers_as_when_all_entries_were_made(
    runtime, tmp_path
):
    """A module registered a second time (a reload, a script that imports itself):
    the later registration's entries win, the earlier one's fill the gaps."""
    first = module(runtime, tmp_path)
    first.register("P", ROWS)
    early = runtime.function_at("P:1")
    second = module(runtime, tmp_path)
    second.register("P", ROWS[:2])
    assert runtime.function_at("P:1") is second.info(1) is not early
    assert runtime.function_by_id("mod:helper") is second.info(1)
    assert runtime.function_by_id("mod:Model.fit") is first.info(3)
    assert runtime.function_at("P:3") is first.info(3)


# -- op wrappers --------------------------------------------------------------------


def annotated(values: list[int], k: int = 2, *, scale: float = 1.0) -> float:
    """An op with annotations and defaults."""
    return sum(values) * k * scale


@pytest.mark.parametrize("make", [lambda: annotated, lambda: lambda x, y=3: x + y])
def test_op_wrapper_carries_what_update_wrapper_copies(runtime, tmp_path, make):
    state = module(runtime, tmp_path)
    state.register("P", ROWS)
    func = make()
    reference = functools.update_wrapper(lambda *a, **k: None, make())

    wrapper = state.op(0)(func)

    for name in functools.WRAPPER_ASSIGNMENTS:
        assert getattr(wrapper, name) == getattr(reference, name), name
    assert wrapper.__annotations__ is func.__annotations__
    assert wrapper.__wrapped__ is func
    assert list(vars(wrapper)) == ["__wrapped__", "__autopersist_op__"]
    assert wrapper.__defaults__ == func.__defaults__
    assert wrapper.__kwdefaults__ == func.__kwdefaults__
    assert inspect.signature(wrapper) == inspect.signature(func)
    assert wrapper.__globals__ is state.namespace
    assert isinstance(wrapper, FunctionType)


def test_op_wrappers_share_the_runtime_cells_and_call_their_own_function(
    runtime, tmp_path
):
    state = module(runtime, tmp_path)
    state.register("P", ROWS)
    first = state.op(0)(lambda x: ("first", x))
    second = state.op(1)(lambda x: ("second", x))
    cells = dict(zip(first.__code__.co_freevars, first.__closure__, strict=True))
    other = dict(zip(second.__code__.co_freevars, second.__closure__, strict=True))
    for name in ("begin", "finish", "fail"):
        assert cells[name] is other[name]
    assert cells["op"].cell_contents is first.__autopersist_op__
    assert cells["func"].cell_contents is first.__wrapped__
    assert cells["op"] is not other["op"] and cells["func"] is not other["func"]
    # Ops that cannot be memoized (a runtime that is not running a call of them
    # still runs them): the wrapper reaches its own function.
    runtime._local.busy = True
    try:
        assert first(1) == ("first", 1)
        assert second(2) == ("second", 2)
    finally:
        runtime._local.busy = False


def test_ops_without_ignore_share_one_empty_set(runtime, tmp_path):
    state = module(runtime, tmp_path)
    state.register("P", ROWS)
    plain = state.op(0)(lambda x: x).__autopersist_op__
    other = state.op(1)(lambda x: x).__autopersist_op__
    ignoring = state.op(1, ignore=("x",))(lambda x: x).__autopersist_op__
    assert plain.ignore == frozenset() and plain.ignore is other.ignore
    assert ignoring.ignore == frozenset({"x"})


# -- versions -----------------------------------------------------------------------


def test_versions_are_recorded_then_only_marked_seen(tmp_path, monkeypatch):
    store = tmp_path / "store"
    first = Runtime(load_config(store), Storage(store), "run-1")
    module(first, tmp_path).register("P", ROWS)
    first.record_versions()
    first.storage.flush()
    recorded = versions_rows(store)
    assert [row[:3] for row in recorded] == [
        ("mod:Model", V3, "line 8\nline 9\nline 10\nline 11"),
        ("mod:Model.fit", V4, "line 10\nline 11"),
        ("mod:helper", V2, "line 5\nline 6"),
        ("mod:op", V1, "line 2\nline 3"),
    ]
    assert {row[5] for row in recorded} == {"run-1"}
    assert [row[6] for row in recorded] == [V3, V4, V2, V2]
    first.storage.close()

    # The next run of the same module: the digest matches, no version is read.
    second = Runtime(load_config(store), Storage(store), "run-2")

    def no_read(module: str) -> set[tuple[str, str]]:
        raise AssertionError("known_versions read although the digest matched")

    monkeypatch.setattr(second.storage, "known_versions", no_read)
    module(second, tmp_path).register("P", ROWS)
    second.record_versions()
    second.storage.flush()
    again = versions_rows(store)
    assert [row[:4] + row[6:] for row in again] == [
        row[:4] + row[6:] for row in recorded
    ]
    assert {row[5] for row in again} == {"run-2"}
    second.storage.close()


def test_a_changed_module_records_its_new_versions(tmp_path):
    store = tmp_path / "store"
    first = Runtime(load_config(store), Storage(store), "run-1")
    module(first, tmp_path).register("P", ROWS)
    first.record_versions()
    first.storage.close()

    changed = (ROWS[0], ("helper", "function", V1, -1, (), False, False, 5, 6, V1))
    second = Runtime(load_config(store), Storage(store), "run-2")
    module(second, tmp_path).register("Q", changed)
    second.record_versions()
    second.storage.close()
    rows = {(row[0], row[1]): row[5] for row in versions_rows(store)}
    assert rows[("mod:helper", V1)] == "run-2"  # new
    assert rows[("mod:helper", V2)] == "run-1"  # not seen by run-2
    assert rows[("mod:op", V1)] == "run-2"  # seen again
    assert rows[("mod:Model", V3)] == "run-1"


def test_a_digest_of_another_form_costs_one_comparison(tmp_path):
    """A store whose digest an older release wrote: the versions are compared one
    by one (nothing new is recorded), and the digest is replaced."""
    store = tmp_path / "store"
    first = Runtime(load_config(store), Storage(store), "run-1")
    module(first, tmp_path).register("P", ROWS)
    first.record_versions()
    first.storage.close()
    with sqlite3.connect(store / "store.db") as conn:
        conn.execute(
            "UPDATE _autopersist_meta SET value = 'older' WHERE key = 'versions:mod'"
        )
    before = versions_rows(store)

    second = Runtime(load_config(store), Storage(store), "run-2")
    module(second, tmp_path).register("P", ROWS)
    second.record_versions()
    second.storage.close()
    after = versions_rows(store)
    assert [row[:4] for row in after] == [row[:4] for row in before]
    assert {row[5] for row in after} == {"run-2"}
    digest = _digest_of_func_ids(
        [f"mod:{row[0]}" for row in ROWS], [row[2] for row in ROWS]
    )
    with sqlite3.connect(store / "store.db") as conn:
        stored = conn.execute(
            "SELECT value FROM _autopersist_meta WHERE key = 'versions:mod'"
        ).fetchall()
    assert stored == [(digest,)]


def _digest_of_func_ids(func_ids, versions) -> str:
    """The module versions digest stores hold (``_autopersist_meta``), made from
    whole func_ids: ``_module_versions_digest`` must give the same value, so
    existing stores keep theirs."""
    text = f"{len(func_ids)}\0" + "\0".join(func_ids) + "\0" + "\0".join(versions)
    return hash_bytes(text.encode("utf-8", "surrogatepass"), b"versions")


def test_versions_digest_tells_lists_apart():
    digest = functools.partial(_runtime._module_versions_digest, "m")
    assert digest(["a", "b"], [V1, V2]) != digest(["b", "a"], [V1, V2])
    assert digest(["a", "b"], [V1, V2]) != digest(["a", "b"], [V2, V1])
    assert digest(["a"], [V1]) != digest(["a", "a"], [V1, V1])
    assert digest([], []) != digest(["a"], [V1])
    assert digest(["a"], [V1]) == digest(("a",), (V1,))


def test_module_digest_is_the_digest_of_its_func_ids():
    """``_record_versions`` digests the rows without making each func_id: the
    same value as the digest of the func_ids, so stores keep theirs."""
    module_digest = _runtime._module_versions_digest
    for qualnames, versions in (([], []), (["a"], [V1]), (["a", "B.c"], [V1, V2])):
        func_ids = [f"pkg.mod:{name}" for name in qualnames]
        assert module_digest("pkg.mod", qualnames, versions) == (
            _digest_of_func_ids(func_ids, versions)
        )
    assert module_digest("a", ["c"], [V1]) != module_digest("b", ["c"], [V1])


# -- the op decorator's rows ---------------------------------------------------------


def test_op_decorators_evaluated_before_others_are_applied_get_their_own_rows(
    runtime, tmp_path
):
    """``op(index)`` leaves its row for the decorator it returns: a ``def`` whose
    defaults make another op of the module (evaluated after the decorator,
    applied before it) does not take the outer one's row."""
    state = module(runtime, tmp_path)
    state.register("P", ROWS)
    outer = state.op(0, ignore=("x",))
    inner = state.op(1, always=True)(lambda x: x)
    wrapped = outer(lambda x: x)
    assert wrapped.__autopersist_op__.info is state.info(0)
    assert wrapped.__autopersist_op__.ignore == frozenset({"x"})
    assert not wrapped.__autopersist_op__.always
    assert inner.__autopersist_op__.info is state.info(1)
    assert inner.__autopersist_op__.always


def test_a_def_that_raised_leaves_no_row_to_the_next_op(runtime, tmp_path):
    state = module(runtime, tmp_path)
    state.register("P", ROWS)
    state.op(0)  # its def raised while evaluating a default: never applied
    wrapped = state.op(1)(lambda x: x)
    assert wrapped.__autopersist_op__.info is state.info(1)


def test_op_wrapper_without_defaults_or_keyword_defaults(runtime, tmp_path):
    state = module(runtime, tmp_path)
    state.register("P", ROWS)

    def plain(x):
        return x

    def keyword(*, k=1):
        return k

    for func in (plain, keyword):
        wrapper = state.op(0)(func)
        assert wrapper.__defaults__ == func.__defaults__
        assert wrapper.__kwdefaults__ == func.__kwdefaults__
        assert inspect.signature(wrapper) == inspect.signature(func)


def test_an_op_gets_its_entry_when_first_used(runtime, tmp_path):
    """The op decorator makes no entry: the op's state gets it, and the fields
    made from it, on first use, the same as an op state made whole."""
    state = module(runtime, tmp_path)
    state.register("P", ROWS)

    def op(values, k=2):
        return values

    wrapper = state.op(0)(op)
    assert state._infos == {}
    made = wrapper.__autopersist_op__
    assert type(made) is _ops._OpStateToFill
    assert made.positional_names == ("values", "k")  # first use: filled in
    # ... and from now on a plain OpState: the call path reads its slots at the
    # interpreter's fast speed (a class with __getattr__ has none).
    assert type(made) is _ops.OpState
    assert "__getattr__" not in vars(_ops.OpState)
    assert made.info is state.info(0) is runtime.function_by_id("mod:op")
    whole = _ops.OpState(state.info(0), op, frozenset(), False)
    for name in _ops.OpState.__slots__:
        if name != "_index":
            assert getattr(made, name) == getattr(whole, name), name
    assert made.signature == inspect.signature(op)
    with pytest.raises(AttributeError):
        made.missing  # noqa: B018


def test_a_stand_in_op_state_has_no_entry(runtime):
    stand_in = _ops.OpState.stand_in(lambda x: x)
    assert stand_in.plain
    with pytest.raises(AttributeError):
        stand_in.info  # noqa: B018


def test_threads_filling_in_one_op_state_see_one_entry(runtime, tmp_path):
    import threading

    state = module(runtime, tmp_path)
    state.register("P", ROWS)
    ops = [state.op(0)(lambda x: x).__autopersist_op__ for _ in range(200)]
    seen: list[object] = []
    start = threading.Barrier(4)

    def read() -> None:
        start.wait()
        seen.extend(op.info for op in ops)
        seen.extend(op.positional_names for op in ops)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    infos = {id(item) for item in seen if isinstance(item, _ops.FunctionInfo)}
    assert infos == {id(state.info(0))}
    assert [item for item in seen if isinstance(item, tuple)] == [("x",)] * 800


# -- versions recorded when the first op is used -------------------------------------


def buffered_versions(runtime: Runtime) -> list[str]:
    """The buffered statements that write ``versions``, ``functions`` or the digest."""
    return [
        sql
        for sql, _ in runtime.storage._buffer
        if "versions" in sql or "functions" in sql or "_autopersist_meta" in sql
    ]


@pytest.fixture
def unflushed(runtime, monkeypatch):
    """The runtime, its buffer left alone by the flush thread."""
    monkeypatch.setattr(runtime.storage, "_flush_quietly", lambda: None)
    return runtime


def test_versions_wait_for_the_first_op_used(unflushed, tmp_path):
    runtime = unflushed
    state = module(runtime, tmp_path)
    state.source = SOURCE.encode()  # as the importer leaves it
    state.register("P", ROWS)
    wrapper = state.op(0)(lambda values: values)
    assert buffered_versions(runtime) == []  # importing recorded nothing
    assert wrapper.__autopersist_op__.info.func_id == "mod:op"  # first use
    recorded = buffered_versions(runtime)
    assert recorded  # new versions: functions, versions, digest
    # From now on a module records its versions when it registers.
    later = module(runtime, tmp_path, "later")
    later.register("Q", ROWS[:1])
    assert len(buffered_versions(runtime)) > len(recorded)
    count = len(buffered_versions(runtime))
    runtime.record_versions()  # nothing left to record
    assert len(buffered_versions(runtime)) == count


def test_versions_are_buffered_before_the_first_call(unflushed, tmp_path):
    """A run killed after a commit never leaves a call without the versions it
    depends on: they go to the buffer before the call's rows."""
    runtime = unflushed
    state = module(runtime, tmp_path)
    state.source = SOURCE.encode()
    state.register("P", ROWS)
    namespace: dict[str, Any] = {"__name__": "mod"}
    exec("def op(values):\n    return [v * 2 for v in values]\n", namespace)
    wrapper = state.op(0)(namespace["op"])
    assert not buffered_versions(runtime)
    assert wrapper([1, 2]) == [2, 4]
    statements = [sql for sql, _ in runtime.storage._buffer]
    first_call = next(i for i, sql in enumerate(statements) if "calls" in sql)
    assert any("versions" in sql for sql in statements[:first_call])
    assert runtime.counters.calls == 1


def test_versions_recorded_at_the_end_of_a_run_that_used_no_op(project):
    project.write("lib.py", "# persist\ndef f(x):\n    return x * 2\n")
    project.write("main.py", "import lib\nprint('imported')\n")
    assert project.run("main.py").stdout == "imported\n"
    with project.db() as db:
        rows = db.execute(
            "SELECT func_id, source FROM versions WHERE func_id LIKE 'lib:%'"
        ).fetchall()
    assert rows == [("lib:f", "def f(x):\n    return x * 2")]


def test_new_versions_store_the_source_the_code_was_made_from(runtime, tmp_path):
    """Versions are recorded after the import (first op used, or the end of the
    run): the source stored with a new version is the one the importer read, not
    the file as edited since."""
    state = module(runtime, tmp_path)
    imported = SOURCE.replace("line 2", "imported 2").encode()
    state.source = imported
    state.register("P", ROWS)
    Path(state.path).write_text(SOURCE.replace("line 2", "edited 2"), "utf-8")
    runtime.record_versions()
    runtime.storage.flush()
    sources = {row[0]: row[2] for row in versions_rows(runtime.storage.store_dir)}
    assert sources["mod:op"] == "imported 2\nline 3"
    assert state.source is None  # not kept once recorded


def test_a_module_edited_during_the_run_stores_the_source_that_ran(project):
    project.write("lib.py", "# persist\ndef f(x):\n    return x * 2\n")
    project.write(
        "main.py",
        "import pathlib\nimport lib\n"
        "pathlib.Path('lib.py').write_text("
        "'# persist\\ndef f(x):\\n    return x * 3\\n')\n"
        "print(lib.f(2))\n",
    )
    assert project.run("main.py").stdout == "4\n"
    with project.db() as db:
        rows = db.execute(
            "SELECT source FROM versions WHERE func_id = 'lib:f'"
        ).fetchall()
    assert rows == [("def f(x):\n    return x * 2",)]


def test_a_module_without_its_source_records_its_versions_at_once(unflushed, tmp_path):
    """A script run as __main__ gets no source bytes from the importer: its
    versions are recorded when it registers, with the file read then."""
    state = module(unflushed, tmp_path)
    state.register("P", ROWS)
    assert buffered_versions(unflushed)
    assert unflushed._unrecorded == []  # others still wait for the first op
