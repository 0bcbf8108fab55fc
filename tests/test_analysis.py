"""The entry analysis (``_transform._analysis``) computes exactly what its first
implementation on libcst's metadata providers (``_analysis_reference``) computes:
which functions and classes are entries, the globals they may read, whether they
write one, whether they are ops, their options and lines."""

from __future__ import annotations

import ast
import sysconfig
import textwrap
from pathlib import Path

import libcst as cst
import pytest

from autopersist._transform import _analysis
from autopersist._transform._analysis import Entry, gather_entries
from autopersist._transform._analysis_reference import gather_entries_reference

REPO = Path(__file__).resolve().parent.parent
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def facts(entries: list[Entry]) -> list[tuple[object, ...]]:
    return [
        (
            e.index,
            e.qualname,
            e.kind,
            e.parent,
            e.global_reads,
            e.writes_globals,
            e.is_op,
            e.not_op_reason,
            sorted(e.options.items()),
            e.first_line,
            e.last_line,
        )
        for e in entries
    ]


def fast_facts(source: str) -> list[tuple[object, ...]]:
    """The fast walk alone: fails instead of falling back to the reference."""
    module = cst.parse_module(source)
    walk = _analysis._Walk()
    walk.visit(module, _analysis._LOAD)
    entries = walk.finish(ast.parse(source), _analysis._directive_lines(source))
    assert all(e.node in set(_defs(module)) for e in entries)
    return facts(entries)


def reference_facts(source: str) -> list[tuple[object, ...]]:
    return facts(gather_entries_reference(cst.parse_module(source)))


def _defs(module: cst.Module) -> list[cst.CSTNode]:
    found: list[cst.CSTNode] = []

    class Defs(cst.CSTVisitor):
        def on_visit(self, node: cst.CSTNode) -> bool:
            if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
                found.append(node)
            return True

    module.visit(Defs())
    return found


#: Cases where libcst's scope rules are not Python's, or are easy to get wrong.
QUIRKS = {
    "read-before-assignment-is-the-parents": """
        total = 0
        def f(items):
            for i in items:
                if i:
                    print(total)
                total = i
            return total
        def g():
            x = x
            return x
        """,
    "class-in-function": """
        X = 1
        def f(a=[v for v in X], b=lambda: X):
            class C:
                X = X + 1
                Z = X
                def m(self):
                    return X, Z
            return C
        """,
    "dotted-imports": """
        import os.path
        import collections.abc as cabc
        import a.b
        def f():
            return os.path.join("a"), os.getcwd(), cabc.Mapping, a.b.c, a.c
        def g():
            return x[a.b].c, a.b().d
        def h():
            import os.path
            return os.path.join
        """,
    "global-nonlocal-writes": """
        Y = [1]
        N = 0
        @(lambda g: g)
        def f():
            global Y
            Y += [2]
            Y[0] = 3
            del Y
            return len(Y)
        def g():
            def inner():
                nonlocal q
                q = 2
                return q
            q = 1
            return inner()
        def h():
            N.attr = 1
            N.a.b.c = 2
            N[1] += 1
            (N.q, Y[0]) = 1, 2
            for N.z in []:
                pass
            with open("f") as N.w:
                pass
            return 1
        def k():
            global N
            import json as N
            def N(): pass
            return N
        """,
    "match-walrus-comprehensions": """
        def f(p):
            match p:
                case {"k": v, **rest}:
                    return v, rest
                case Point(x=0, y=yy) as pt:
                    return yy, pt, x
                case [a, *others]:
                    return a, others
            return None
        def g(data):
            res = [y := d for d in data]
            return y, res, [z for z in data if (w := z)], w
        def h(Y):
            return [X for X in Y], {k: X for k in Y}, (X for _ in Y), [[a for a in b] for b in Y]
        """,
    "ops-and-not-ops": """
        import functools
        @functools.cache
        def g(n):
            return n
        def gen():
            yield 1
        def returns_none():
            return None
        def nested_yield():
            def g():
                yield 2
            lambda: (yield)
            return
        async def a():
            return 1
        def main():
            return 0
        def s(x):  # persist: skip
            return x
        def t(): return X  # persist: always
        def u(a,  # persist: ignore=a
              b):
            return a + b
        if X:
            def in_block():
                return X
        try:
            def in_try():
                return X
        except ImportError:
            pass
        """,
    "methods-nested-classes": """
        X = 1
        class K:
            A = X
            def m1(self, v=A):
                return A, v, X
            class Inner:
                def m2(self):
                    return K, Inner
            if X:
                def m3(self):
                    return 1
            @property
            def m4(self):
                global total
                total = 3
                return total
        """,
    "fstrings-builtins-annotations": """
        from typing import List, Optional, cast as kast, TypeVar
        import typing as t
        len = len
        def f(x: "List[int]") -> Optional["X"]:
            y: List["X"] = kast("X", x)
            T = TypeVar("T", bound="X")
            print(f"{X} {Y!r:{total}} {x=}")
            return t.cast("X", y), T, len(x), __file__, __name__, undefined
        def g():
            e = None
            try:
                pass
            except Exception as e:
                pass
            return e
        """,
    "decorators-and-lines": """
        @decorator.with_args(
            1,
        )
        # comment between
        @another

        def f():
            return X
        def g(): "doc"; return 1
        def h():
            \"\"\"Only a docstring.\"\"\"
        def k():
            return (X
            )
            # trailing comment in the body

        class E: pass
        """,
}


@pytest.mark.parametrize("name", sorted(QUIRKS))
def test_quirks_match_the_reference(name):
    source = textwrap.dedent(QUIRKS[name])
    assert fast_facts(source) == reference_facts(source)


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_line_numbers_with_other_newlines(newline):
    source = newline.join(
        [
            "# persist",
            "X = 1",
            "@dec",
            "",
            "def g():",
            "    return X",
            "class A:",
            "    def m(self):",
            "        return X",
            "",
        ]
    )
    assert fast_facts(source) == reference_facts(source)


@pytest.mark.parametrize(
    "source",
    [
        'def f(x: "a=b"):\n    return x\n',  # a string annotation holding code
        "from typing import NewType\nN = 'U'\ndef f():\n    return NewType(N, int)\n",
    ],
)
def test_what_the_walk_does_not_model_goes_to_the_reference(source):
    module = cst.parse_module(source)
    walk = _analysis._Walk()
    with pytest.raises(_analysis._Unsupported):
        walk.visit(module, _analysis._LOAD)
        walk.finish(ast.parse(source), set())
    assert facts(gather_entries(module)) == reference_facts(source)


def _corpus() -> list[object]:
    files = sorted((REPO / "tests" / "data").glob("*.py"))
    files += sorted((REPO / "samples").rglob("*.py"))
    slow = [REPO / "autopersist" / "_runtime.py", STDLIB / "dataclasses.py"]
    return [
        *files,
        *(pytest.param(path, marks=pytest.mark.slow) for path in slow),
    ]


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: Path(str(p)).name)
def test_real_code_matches_the_reference(path):
    source = path.read_text(encoding="utf-8")
    try:
        compile(source, str(path), "exec", ast.PyCF_ONLY_AST)
    except SyntaxError:
        pytest.skip("not Python 3.11")
    assert fast_facts(source) == reference_facts(source)
