"""A large reused result is loaded lazily, without copies, as users meet it: it
behaves like the computed one (type, values, writable), mutating it changes
neither the store nor the next run's result, and a run that never touches it does
not read it into memory."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

BIG = """
# persist
import numpy as np


def make(n):
    return np.random.default_rng(0).standard_normal(n)
"""

MAIN = """
import hashlib
import sys

import numpy as np

import big

N = 2_500_000  # 20 MB of float64


def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


mode = sys.argv[1]
before = rss_kib()
a = big.make(N)
if mode == "untouched":
    print("shape", a.shape, "grew_kib", rss_kib() - before)
    sys.exit()
print(type(a).__name__, a.dtype, a.shape, a.flags.writeable, a.flags.c_contiguous,
      a.flags.aligned)
print("as_loaded", hashlib.sha256(a.tobytes()).hexdigest())
a *= 2.0  # in place: the program owns its copy
a[0] = 1.0
print("mutated", hashlib.sha256(a.tobytes()).hexdigest())
"""


def _blobs(store: Path) -> dict[str, bytes]:
    return {
        str(path): path.read_bytes()
        for path in (store / "blobs").rglob("*")
        if path.is_file()
    }


def test_mutating_a_large_reused_result_changes_nothing_stored(project):
    pytest.importorskip("numpy")
    project.write("big.py", BIG)
    project.write("main.py", MAIN)
    plain = project.python("main.py", "mutate")
    first = project.run("main.py", "mutate")
    assert first.returncode == 0, first.stderr
    assert first.counts()["computed"] == 1
    assert first.stdout == plain.stdout
    blobs = _blobs(project.store)
    assert len(blobs) == 1
    second = project.run("main.py", "mutate")
    assert second.counts() == {"calls": 1, "reused": 1, "computed": 0, "failed": 0}
    # Same type, values and flags as the computed array; writable in place.
    assert second.stdout == first.stdout
    assert "ndarray float64 (2500000,) True True True" in second.stdout
    third = project.run("main.py", "mutate")
    assert third.counts()["reused"] == 1
    assert third.stdout == second.stdout  # the second run's writes stayed its own
    assert _blobs(project.store) == blobs


def test_a_reused_result_never_touched_is_not_read_into_memory(project):
    pytest.importorskip("numpy")
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc/self/status to read the resident set size")
    project.write("big.py", BIG)
    project.write("main.py", MAIN)
    computed = project.run("main.py", "untouched")
    assert computed.returncode == 0, computed.stderr
    reused = project.run("main.py", "untouched")
    assert reused.counts()["reused"] == 1
    shape, grew = reused.stdout.split("grew_kib")
    assert shape.strip() == "shape (2500000,)"
    # Reading the 20 MB array (as before) would grow the process by at least that
    # much; the mapping costs its header page and the lookup's own few objects.
    assert int(grew) < 10 * 1024, reused.stdout
