"""The in-memory index of an op's stored calls (``_call_index``): loops past its
load reuse exactly what SQL lookups would, calls stored by another process after
the load are computed again and kept once, and a run that looks up few of many
stored calls never loads it."""

from __future__ import annotations

import subprocess
import time

import pytest

from autopersist._call_index import LOAD_AFTER_LOOKUPS, LOAD_SHARE, LOAD_SHARE_HITS
from autopersist._hashing import combine, content_hash
from autopersist._storage import Storage, check_consistency
from tests._helpers import autopersist_args

pytestmark = pytest.mark.subprocess

LOOP = """
# persist
import sys

def sq(x):  # persist: always
    return x * x

lo, hi, rounds = (int(a) for a in sys.argv[1:4])
for _ in range(rounds):
    total = sum(sq(i) for i in range(lo, hi))
print(total)
"""


def test_loops_past_the_index_load_reuse_what_they_stored(project):
    project.write("loop.py", LOOP)
    first = project.run("loop.py", "0", "300", "2")
    assert first.stdout == f"{sum(i * i for i in range(300))}\n"
    # The second round of the same run is answered by the index (loaded at the
    # 50th lookup), which holds the calls this run stored.
    assert first.counts() == {"calls": 600, "reused": 300, "computed": 300, "failed": 0}
    second = project.run("loop.py", "0", "600", "1")
    assert second.stdout == f"{sum(i * i for i in range(600))}\n"
    assert second.counts() == {
        "calls": 600,
        "reused": 300,
        "computed": 300,
        "failed": 0,
    }
    assert project.calls_of("loop:sq") == 600
    assert check_consistency(project.store) == []


TWO_OPS = """
# persist
import sys

def sq(x):  # persist: always
    return x * x

def cube(x):  # persist: always
    return x * x * x

op, lo, hi, rounds = sys.argv[1], *(int(a) for a in sys.argv[2:5])
f = sq if op == "sq" else cube
for _ in range(rounds):
    total = sum(f(i) for i in range(lo, hi))
print(total)
"""


def test_an_op_with_few_calls_beside_many_reuses_from_its_loaded_index(project):
    # cube's 200 stored calls, beside 3,000 of sq, are loaded (through
    # calls_by_inputs) after 80 lookups: the rest of the run, calls it stores
    # included, is answered from memory, exactly as SQL would answer.
    project.write("two.py", TWO_OPS)
    assert project.run("two.py", "sq", "0", "3000", "1").returncode == 0
    first = project.run("two.py", "cube", "0", "200", "1")
    assert first.counts() == {"calls": 200, "reused": 0, "computed": 200, "failed": 0}
    again = project.run("two.py", "cube", "0", "300", "2")
    assert again.stdout == f"{sum(i**3 for i in range(300))}\n"
    assert again.counts() == {"calls": 600, "reused": 500, "computed": 100, "failed": 0}
    assert project.calls_of("two:cube") == 300
    assert project.calls_of("two:sq") == 3000
    assert check_consistency(project.store) == []


OPS = """
# persist
def sq(x):  # persist: always
    return x * x
"""

WAITER = """
import os
import time

from ops import sq

for i in range(100):  # 100 lookups: the index is loaded, holding these calls
    sq(i)
open("loaded", "w").close()
while not os.path.exists("stored"):
    time.sleep(0.02)
print(sum(sq(i) for i in range(100, 200)))
"""

OTHER = """
from ops import sq

print(sum(sq(i) for i in range(100, 200)))
"""


def test_calls_stored_by_another_process_after_the_load_are_kept_once(project):
    project.write("ops.py", OPS)
    project.write("waiter.py", WAITER)
    project.write("other.py", OTHER)
    waiter = subprocess.Popen(
        autopersist_args("run", "waiter.py"),
        cwd=project.root,
        env=project.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (project.root / "loaded").exists():
        assert waiter.poll() is None, waiter.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    other = project.run("other.py")
    assert other.counts()["computed"] == 100
    (project.root / "stored").touch()
    out, err = waiter.communicate(timeout=60)
    expected = f"{sum(i * i for i in range(100, 200))}\n"
    assert waiter.returncode == 0, err
    assert out == other.stdout == expected
    # Not seen by the waiter's index, loaded before: computed again, stored once.
    assert "200 calls, 0 reused, 200 computed" in err
    assert project.calls_of("ops:sq") == 200
    assert check_consistency(project.store) == []
    # A new run sees them all.
    again = project.run("other.py")
    assert again.counts() == {"calls": 100, "reused": 100, "computed": 0, "failed": 0}


def test_few_lookups_in_a_big_store_use_sql(project):
    """The load reads the whole calls table: a process whose lookups are fewer
    than ``LOAD_SHARE`` of the store's calls, and found fewer than
    ``LOAD_SHARE_HITS`` of them, keeps querying, and finds the same calls."""
    project.write("loop.py", LOOP)
    assert project.run("loop.py", "0", "1000", "1").returncode == 0

    def lookup(storage: Storage, i: int) -> int:
        inputs_id = combine("loop:sq", "x", content_hash(i))
        return len(storage.candidates("loop:sq", inputs_id))

    misses = int(1000 * LOAD_SHARE) - 1
    hits = int(1000 * LOAD_SHARE_HITS)
    assert min(misses, hits) > LOAD_AFTER_LOOKUPS
    new_calls = Storage(project.store)  # a run of new calls: misses
    try:
        assert [lookup(new_calls, 5000 + i) for i in range(misses)] == [0] * misses
        assert new_calls._indexes == {}
        assert lookup(new_calls, 7) == 1
        assert "loop:sq" in new_calls._indexes  # the share was reached: loaded
        assert lookup(new_calls, 8) == 1
        assert lookup(new_calls, 4999) == 0  # never stored
    finally:
        new_calls.close()
    rerun = Storage(project.store)  # a run again over stored work: hits
    try:
        assert [lookup(rerun, i) for i in range(hits)] == [1] * hits
        assert rerun._indexes == {}  # a tenth found: the next lookup loads
        assert lookup(rerun, hits) == 1
        assert "loop:sq" in rerun._indexes
        assert [lookup(rerun, i) for i in range(hits + 1, 1000)] == [1] * (999 - hits)
    finally:
        rerun.close()


def test_an_op_with_few_calls_loads_whatever_the_other_ops_hold(tmp_path, monkeypatch):
    """The load threshold counts the op's own stored calls: next to 2,000 calls of
    another op, an op with none loads its (empty) index after
    ``LOAD_AFTER_LOOKUPS`` lookups, one with 400 after ``LOAD_SHARE`` of them,
    through the index; and the loaded index answers as SQL does. An op with more
    calls than ``COUNTED_CALLS`` is taken to hold the whole store."""
    storage = Storage(tmp_path / "store")
    for n in range(2_000):
        storage.add_call(
            (*_row(n, f"g{n}", "d1", None, op="m:g"), 0.0, 0.0, None, None), []
        )
        if n % 10 == 3:
            for k in (0, 1):  # m:f, 2 calls per inputs (two dependency sets)
                row = _row(10_000 + 2 * n + k, f"f{n}", f"d{k}", b"\x80x", op="m:f")
                storage.add_call((*row, 0.0, 0.0, None, b"\x80x"), [])
    storage.flush()
    storage.close()
    few = int(400 * LOAD_SHARE)
    assert few > LOAD_AFTER_LOOKUPS
    run = Storage(tmp_path / "store")
    by_sql = Storage(tmp_path / "store")
    try:
        for i in range(LOAD_AFTER_LOOKUPS - 1):
            assert run.candidates("m:new", f"x{i}") == ()
        assert "m:new" not in run._indexes
        assert run.candidates("m:new", "x") == ()
        assert "m:new" in run._indexes  # none stored: loaded at once
        for i in range(few - 1):
            assert run.candidates("m:f", f"miss{i}") == ()
        assert "m:f" not in run._indexes
        assert run.candidates("m:f", "f13") == by_sql.candidates("m:f", "f13")
        assert "m:f" in run._indexes  # 40% of its 400 calls looked up
        for n in range(2_000):
            expected = by_sql.candidates("m:f", f"f{n}")
            assert run.candidates("m:f", f"f{n}") == expected
            assert len(expected) == (2 if n % 10 == 3 else 0)
        assert "m:g" not in run._indexes
    finally:
        run.close()
        by_sql.close()
    # An op with more calls than are counted is taken to hold the whole store
    # (2,400 calls): loaded after 40% of that, not of its own 2,000.
    monkeypatch.setattr("autopersist._storage.COUNTED_CALLS", 1_000)
    big = Storage(tmp_path / "store")
    try:
        for i in range(int(2_400 * LOAD_SHARE) - 1):
            assert big.candidates("m:g", f"miss{i}") == ()
        assert "m:g" not in big._indexes
        assert len(big.candidates("m:g", "g7")) == 1
        assert "m:g" in big._indexes
    finally:
        big.close()


def _row(
    n: int,
    inputs: str,
    deps: str,
    data: bytes | None,
    status: str = "ok",
    op: str = "m:f",
):
    return (f"c{n:04d}", op, "v1", inputs, deps, f"o{n:04d}", status, "run-1")


def test_a_loaded_index_answers_as_sql_does(tmp_path):
    """A loaded index gives every inputs the candidates the SQL lookup gives, in
    the same order: inputs stored under several dependency sets, outputs kept or
    not (over ``SMALL_OUTPUT`` bytes), failed calls left out."""
    storage = Storage(tmp_path / "store")
    plan = [
        ("i1", "d1", b"\x80small"),
        ("i2", "d1", None),
        ("i1", "d2", b"x" * 300),  # same inputs, same range
        ("i3", "d1", b"\x80"),
        ("i4", "d1", b"\x00,; \x01"),
        ("i2", "d2", b"y"),  # same inputs, next range
        ("i5", "d1", b"z"),
        ("i1", "d3", b"w"),
        ("i6", "d1", b"f"),
    ]
    for n, (inputs, deps, data) in enumerate(plan):
        status = "failed" if inputs == "i6" else "ok"
        row = (*_row(n, inputs, deps, data, status), 0.0, 0.0, None, data)
        storage.add_call(row, [])
    storage.flush()
    storage.close()
    by_sql = Storage(tmp_path / "store")
    loaded = Storage(tmp_path / "store")
    try:
        index = loaded._load_index("m:f", len(plan))
        for inputs in ("i1", "i2", "i3", "i4", "i5", "i6", "i7"):
            expected = by_sql.candidates("m:f", inputs)
            kept = tuple(
                (c, d, o, data if data is not None and len(data) <= 256 else None)
                for c, d, o, data in expected
            )
            assert index.get(inputs) == kept, inputs
        assert [c[0] for c in index.get("i1")] == ["c0000", "c0002", "c0007"]
        assert index.get("i6") == ()
    finally:
        by_sql.close()
        loaded.close()
