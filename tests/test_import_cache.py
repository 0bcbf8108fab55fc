"""What importing an instrumented module costs the runtime, and that the cheaper
way keeps every answer: op wrappers made from one code object (issue #6)."""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import FunctionType
from typing import Any

import pytest

from autopersist._config import load_config
from autopersist._runtime import ModuleState, Runtime
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
