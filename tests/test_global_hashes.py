"""A mutable module global read by an op is hashed once at the start and once at
the end of each computed call (issue #6: "large globals hashed once per value"),
however many of the functions that ran read it, and never trusted across user
code: a change made between two calls is seen by the second."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import REPO, Project

# Outside the project root: a library whose objects count how often they are
# hashed (the hasher asks a custom object for its state once per hash).
COUNTED = """
HASHED = [0]


class Table:
    def __init__(self, rows):
        self.rows = rows

    def __getstate__(self):
        HASHED[0] += 1
        return {"rows": self.rows}
"""

WORK = """
# persist
from counted import Table

TABLE = Table(list(range(100)))


def row(i):  # persist: skip
    return TABLE.rows[i]


def lookup(i):
    table = TABLE
    return row(i) * 2 + len(table.rows)
"""

MAIN = """
import sys

import counted
import work

for i in range(5):
    work.lookup(i)
print("hashed", counted.HASHED[0])
if sys.argv[1:] == ["edit"]:
    print(work.lookup(1))
    work.TABLE.rows[1] = 99  # plain code changes the global in place between calls
    print(work.lookup(1))
"""


def _project(project: Project, tmp_path: Path) -> dict[str, str]:
    lib = tmp_path.parent / (tmp_path.name + "-lib")
    lib.mkdir()
    (lib / "counted.py").write_text(COUNTED, encoding="utf-8")
    project.write("work.py", WORK)
    project.write("main.py", MAIN)
    return project.env(PYTHONPATH=os.pathsep.join([str(REPO), str(lib)]))


def test_a_mutable_global_is_hashed_once_per_start_and_end_of_a_call(
    project: Project, tmp_path: Path
) -> None:
    env = _project(project, tmp_path)
    first = project.run("main.py", env=env)
    assert first.returncode == 0, first.stderr
    # Five computed calls, two hashes each: at the start, the "before" of the
    # purity check (the store holds no call to check); at the end, one hash for
    # the dependencies of ``lookup`` and of ``row`` (both read TABLE) and the
    # purity check's "after" (before this was shared: four).
    assert first.stdout == "hashed 10\n"
    assert first.counts()["computed"] == 5
    second = project.run("main.py", env=env)
    # Five reuses: one hash each, to check the stored dependency on TABLE.
    assert second.stdout == "hashed 5\n"
    assert second.counts()["reused"] == 5


def test_a_change_between_two_calls_is_seen_by_the_second(
    project: Project, tmp_path: Path
) -> None:
    env = _project(project, tmp_path)
    plain = project.python("main.py", "edit", env=env)
    assert plain.stdout.splitlines()[1:] == ["102", "298"]
    for _ in range(2):  # computed, then reused but for the changed call
        ran = project.run("main.py", "edit", env=env)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.splitlines()[1:] == ["102", "298"]
