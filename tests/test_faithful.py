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


OP_WRAPPER = """
# persist
import sys
import typing
from collections import namedtuple

calls = []


def square(x):
    calls.append(x)
    return x * x


class Token:
    # Pickling (and so hashing) this object runs an op: the runtime must not
    # re-enter itself; the op then runs plain, as in plain Python.
    def __init__(self, n):
        self.n = n

    def __reduce__(self):
        return (Token, (square(self.n),))


def describe(token):
    return token.n + 1


def caller_module():
    return sys._getframe(2).f_globals["__name__"]


def who_calls():
    return caller_module()


def make_typevar():
    return typing.TypeVar("T").__module__


def make_point():
    return namedtuple("Point", "x y").__module__


def depth(n):
    return 0 if n == 0 else 1 + depth(n - 1)


def with_defaults(a, b=2, *, c=3):
    return a + b + c


print(describe(Token(3)))
print(who_calls(), make_typevar(), make_point())
print(depth(min(400, sys.getrecursionlimit() // 2 - 50)))
print(with_defaults.__defaults__, with_defaults.__kwdefaults__, with_defaults.__name__)
"""


def test_op_wrapper_is_one_frame_with_the_module_globals(project):
    """Ops called from inside autopersist's own hashing run plain; code that looks
    at its caller's frame finds the user's module; recursion keeps most of its
    depth; an op reports its function's defaults."""
    project.write("w.py", OP_WRAPPER)
    plain = project.python("w.py")
    first = project.run("w.py")
    second = project.run("w.py")
    assert plain.returncode == first.returncode == second.returncode == 0, first.stderr
    assert first.stdout == second.stdout == plain.stdout
    # square ran only inside the hashing of Token (which customizes pickling, so
    # hashing must call its __reduce__): plain, never recorded as a call.
    assert project.calls_of("w:square") == 0
    assert project.calls_of("w:describe") == 1
