"""Crash safety: SIGKILL at random points, a full disk, a read-only store.

After any of them the store opens, ``check_consistency`` finds nothing wrong, and
every call that finished more than a second before a kill is still there. The long
version of the kill test is ``scripts/soak.py``.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time

import pytest

from autopersist._storage import BLOB_DIR, check_consistency
from tests._helpers import (
    KILL_SCRIPT,
    autopersist_args,
    can_mount_tmpfs,
    count,
    make_immutable,
    run_and_kill,
    stored_ints,
    tree_digest,
    umount,
)

pytestmark = pytest.mark.subprocess

KILLS = 7
#: Calls finished this long before a kill must have been committed.
KEPT_AFTER = 1.0


def test_random_kills_leave_a_consistent_store_that_keeps_finished_calls(project):
    project.write("k.py", KILL_SCRIPT)
    seed = int(time.time())
    rng = random.Random(seed)
    env = project.env()
    kept_total = 0
    for kill in range(KILLS):
        start = kill * 1000
        delay = rng.uniform(0.05, 2.0)
        killed = run_and_kill(
            autopersist_args("run", "k.py", str(start), "100000"),
            project.root,
            env,
            delay,
        )
        where = f"kill {kill} after {delay:.2f}s (seed {seed})"
        assert killed.returncode == -9, f"{where}: {killed.stderr}"
        assert check_consistency(project.store) == [], where
        stored = stored_ints(project.store, "k:pair", "i")
        due = {
            i for i, at in killed.finished.items() if at < killed.kill_time - KEPT_AFTER
        }
        assert due <= stored, f"{where}: lost {sorted(due - stored)[:10]}"
        kept_total += len(stored & set(killed.finished))
    assert kept_total > 0
    # The store still works: a full run reuses what the killed runs stored (from
    # a call one of them surely stored: a run killed before its first commit, at
    # most half a second after it started, stored nothing).
    first = min(stored_ints(project.store, "k:pair", "i"))
    done = project.run("k.py", str(first), "20")
    assert done.returncode == 0, done.stderr
    assert done.counts()["reused"] >= 1
    assert check_consistency(project.store) == []


def test_kill_during_a_blob_heavy_run_keeps_blobs_whole(project):
    """Every value is a blob: kills land while blob files are being written."""
    project.write(
        "b.py",
        """
        # persist
        import sys
        import time
        import numpy as np

        def big(i):
            return np.full(40_000, float(i))

        for i in range(int(sys.argv[1]), 10**6):
            big(i)
            print(i, time.time(), flush=True)
        """,
    )
    for kill, delay in enumerate((0.3, 0.9, 1.6)):
        killed = run_and_kill(
            autopersist_args("run", "b.py", str(kill * 100_000)),
            project.root,
            project.env(),
            delay,
        )
        assert killed.returncode == -9, killed.stderr
        assert check_consistency(project.store) == []
    assert count(project.store, "SELECT count(*) FROM value_rows WHERE data IS NULL")


def test_check_consistency_reports_damage(project):
    project.write(
        "d.py",
        """
        # persist
        import numpy as np

        def big(i):
            return np.full(20_000, float(i))

        def small(i):
            return i

        print(float(big(1)[0]) + small(2))
        """,
    )
    assert project.run("d.py").returncode == 0
    assert check_consistency(project.store) == []
    blob = next(p for p in (project.store / BLOB_DIR).rglob("*") if p.is_file())
    blob.write_bytes(blob.read_bytes()[:100])
    with sqlite3.connect(project.store / "store.db") as conn:
        conn.execute(
            "DELETE FROM value_rows WHERE value_id = (SELECT output_id FROM calls "
            "WHERE op_id = 'd:small')"
        )
    problems = check_consistency(project.store)
    assert any("has 100 bytes" in p for p in problems), problems
    assert any("calls row(s) point at a missing value_rows" in p for p in problems)


def test_a_damaged_blob_is_recomputed_not_trusted(project):
    project.write(
        "r.py",
        """
        # persist
        import numpy as np

        def big(i):
            return np.full(20_000, float(i))

        print(float(big(3).sum()))
        """,
    )
    first = project.run("r.py")
    assert first.stdout == "60000.0\n"
    blob = next(p for p in (project.store / BLOB_DIR).rglob("*") if p.is_file())
    blob.write_bytes(blob.read_bytes()[:-10])
    again = project.run("r.py")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "60000.0\n"
    assert again.counts()["computed"] == 1


FILL_SCRIPT = """
# persist
import time

import numpy as np

def big(i):
    return np.full(20_000, float(i))

def small(i):
    return i + 1

# Small calls for about a second first: they are committed (at most 0.5 s after
# they finish) before the big ones fill the disk.
for i in range(40):
    small(-i)
    time.sleep(0.025)
total = 0.0
for i in range(60):
    total += float(big(i)[0]) + small(i)
print(total)
"""


def test_full_disk_is_a_clear_error_and_keeps_a_consistent_store(project, tmp_path):
    small = tmp_path / "small"
    if not can_mount_tmpfs(small):
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        project.write("fill.py", FILL_SCRIPT)
        store = small / "store"
        result = project.cli("run", "--store", str(store), "fill.py")
        # The script itself is not disturbed: it finishes and prints its result.
        assert result.stdout == "3600.0\n"
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert f"the disk holding the store {store} is full" in result.stderr
        assert "free space and run again" in result.stderr
        assert check_consistency(store) == []
        kept = count(store, "SELECT count(*) FROM calls")
        assert kept >= 15  # what was committed before the disk filled up stays
    finally:
        umount(small)


def test_read_only_store_is_refused_and_left_untouched(project):
    project.write("s.py", "# persist\ndef f(x):\n    return x\nprint(f(1))\n")
    assert project.run("s.py").returncode == 0
    before = tree_digest(project.store)
    project.store.chmod(0o555)
    immutable = False
    if os.access(project.store, os.W_OK):  # root: permission bits do not apply
        immutable = make_immutable(project.store, True)
        if not immutable:
            project.store.chmod(0o755)
            pytest.skip("running as root without chattr: cannot make a read-only dir")
    try:
        result = project.run("s.py")
    finally:
        if immutable:
            make_immutable(project.store, False)
        project.store.chmod(0o755)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"the store {project.store} is read-only" in result.stderr
    assert tree_digest(project.store) == before
