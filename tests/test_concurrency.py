"""Several processes on one store at once: no "database is locked", no lost or
duplicated calls, and one stored row for a call two processes computed together."""

from __future__ import annotations

import sqlite3
import subprocess
import time

import pytest

from autopersist._storage import check_consistency
from tests._helpers import autopersist_args, count

pytestmark = pytest.mark.subprocess

CALLS_SCRIPT = """
# persist
import sys
import numpy as np

def f(tag, i):
    if i % 50 == 0:
        return np.full(20_000, float(i))  # 160 KB: a blob file
    return (tag, i * i)

total = 0
for i in range(300):
    r = f(sys.argv[1], i)
    total += 1
print(total)
"""


def _start_all(project, *tags: str) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            autopersist_args("run", "calls.py", tag),
            cwd=project.root,
            env=project.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for tag in tags
    ]


def _finish_all(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append((proc.returncode, out, err))
    return results


def test_three_processes_with_distinct_calls_store_all_of_them(project):
    project.write("calls.py", CALLS_SCRIPT)
    results = _finish_all(_start_all(project, "a", "b", "c"))
    for status, out, err in results:
        assert status == 0, err
        assert out == "300\n"
        assert "locked" not in err
    assert count(project.store, "SELECT count(*) FROM calls") == 900
    assert count(project.store, "SELECT count(DISTINCT call_id) FROM calls") == 900
    assert count(project.store, "SELECT sum(computed) FROM runs") == 900
    assert check_consistency(project.store) == []


def test_three_processes_with_the_same_calls_store_each_once(project):
    project.write("calls.py", CALLS_SCRIPT)
    results = _finish_all(_start_all(project, "s", "s", "s"))
    for status, out, err in results:
        assert status == 0, err
        assert out == "300\n"
    assert count(project.store, "SELECT count(*) FROM calls") == 300
    # Each call was computed by some process or reused from another's commit.
    assert count(project.store, "SELECT sum(computed) + sum(reused) FROM runs") == 900
    assert check_consistency(project.store) == []


def test_two_processes_computing_one_call_at_once_both_get_it(project):
    project.write(
        "slow.py",
        """
        # persist
        import os
        import time

        def slow(x):
            # A barrier: both processes are inside before either can commit.
            os.makedirs("barrier", exist_ok=True)
            open(os.path.join("barrier", str(os.getpid())), "w").close()
            deadline = time.time() + 60
            while len(os.listdir("barrier")) < 2 and time.time() < deadline:
                time.sleep(0.01)
            return {"x": x, "squares": [i * i for i in range(x)]}

        r = slow(5)
        print(r["squares"])
        """,
    )
    procs = [
        subprocess.Popen(
            autopersist_args("run", "slow.py"),
            cwd=project.root,
            env=project.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for status, out, err in _finish_all(procs):
        assert status == 0, err
        assert out == "[0, 1, 4, 9, 16]\n"
        assert "1 computed" in err
    assert count(project.store, "SELECT count(*) FROM calls") == 1
    assert count(project.store, "SELECT count(*) FROM runs") == 2
    third = project.run("slow.py")  # the barrier is passed: it would not wait
    assert third.counts()["reused"] == 1


def test_a_busy_store_makes_a_run_wait_not_fail(project):
    project.write("calls.py", CALLS_SCRIPT)
    assert project.run("calls.py", "warm").returncode == 0
    # Another writer holds the store's write lock for two seconds.
    holder = sqlite3.connect(project.store / "store.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    proc = _start_all(project, "busy")[0]
    time.sleep(2.0)
    holder.execute("COMMIT")
    holder.close()
    [(status, _out, err)] = _finish_all([proc])
    assert status == 0, err
    assert "locked" not in err
    assert count(project.store, "SELECT count(*) FROM calls") == 600
    assert check_consistency(project.store) == []


def test_many_short_runs_at_once_on_a_new_store(project):
    """Six processes racing to create the store and its schema."""
    project.write(
        "one.py", "# persist\nimport sys\ndef f(x):\n    return x\nf(sys.argv[1])\n"
    )
    procs = [
        subprocess.Popen(
            autopersist_args("run", "one.py", str(i)),
            cwd=project.root,
            env=project.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    for status, _out, err in _finish_all(procs):
        assert status == 0, err
    assert count(project.store, "SELECT count(*) FROM calls") == 6
    assert check_consistency(project.store) == []
