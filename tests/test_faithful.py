"""An instrumented program prints exactly what the plain one prints."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

DATA = Path(__file__).parent / "data"


def test_syntax_tour_prints_the_same_plain_first_and_second_run(project):
    shutil.copy(DATA / "syntax_tour.py", project.root / "syntax_tour.py")
    plain = project.python("syntax_tour.py")
    first = project.run("syntax_tour.py")
    second = project.run("syntax_tour.py")
    assert plain.returncode == first.returncode == second.returncode == 0
    assert first.stdout == plain.stdout
    assert second.stdout == plain.stdout
    # bump() assigns a global and record() appends to one: never reused, and said so
    assert (
        "syntax_tour:bump will not be reused: it assigns a module global"
        in first.stderr
    )
    assert (
        "syntax_tour:record will not be reused: it changed the module global 'LOG'"
        in (first.stderr)
    )
    assert second.counts()["reused"] > 10


def test_function_mutating_its_argument_is_not_reused(project):
    project.write(
        "argmut.py",
        """
        # persist
        def add_item(items, x):
            items.append(x)
            return len(items)

        data = []
        print(add_item(data, 1), add_item(data, 1), data)
        """,
    )
    for _ in range(2):
        result = project.run("argmut.py")
        assert result.stdout == "1 2 [1, 1]\n"
        assert "changed its argument 'items' in place" in result.stderr
