"""The hot-op guard (PRODUCT.md §3.9): cheap ops called thousands of times run
plain for the rest of the run, with one notice, and stay dependencies."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.subprocess

SCRIPT = """
# persist
def tiny(x):{directive}
    return x + 1


def big(n):
    return sum(tiny(i) for i in range(n))


print(big({n}))
"""


def test_hot_op_switches_to_plain_once_and_stays_a_dependency(project):
    project.write("h.py", SCRIPT.format(directive="", n=5000))
    result = project.run("h.py")
    assert result.stdout == f"{sum(range(1, 5001))}\n"
    assert result.stderr.count("HotOpWarning") == 1
    assert "h:tiny runs unmemoized for the rest of this run" in result.stderr
    assert result.counts()["computed"] == 1001  # big + the first 1000 calls of tiny
    assert project.run("h.py").counts() == {
        "calls": 1,
        "reused": 1,
        "computed": 0,
        "failed": 0,
    }
    project.edit("h.py", "return x + 1", "return x + 2")
    edited = project.run("h.py")
    assert edited.stdout == f"{sum(range(2, 5002))}\n"
    assert project.computed_last_run()["h:big"] == 1


def test_always_keeps_a_hot_op_memoized(project):
    project.write("h.py", SCRIPT.format(directive="  # persist: always", n=3000))
    result = project.run("h.py")
    assert "HotOpWarning" not in result.stderr
    assert result.counts()["computed"] == 3001


def test_small_scripts_never_switch(project):
    project.write("h.py", SCRIPT.format(directive="", n=900))
    result = project.run("h.py")
    assert "HotOpWarning" not in result.stderr
    assert result.counts()["computed"] == 901
