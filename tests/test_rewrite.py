"""The rewrite as before/after text: golden cases, idempotence, line numbers kept."""

from __future__ import annotations

import re
import textwrap
import traceback

import pytest

from autopersist._transform import compile_rewritten, rewrite_source
from autopersist._transform._instrument import INSERTED_COMMENT
from autopersist.errors import TransformError

HEX = re.compile(r"'[0-9a-f]{32}'")
ONE_LINE_MARK = re.compile(
    r"__autopersist_unseen__\[\d+\] and __autopersist_mark__\('[^']*'\); "
)


def original_lines(rewritten: str) -> list[str]:
    """The rewritten text without what the rewriter inserted."""
    return [
        ONE_LINE_MARK.sub("", line)
        for line in rewritten.splitlines()
        if not line.endswith(INSERTED_COMMENT)
    ]


def rewrite(before: str, *, make_ops: bool = True) -> str:
    text = rewrite_source(
        textwrap.dedent(before), path="mod.py", make_ops=make_ops
    ).text
    prefix = rewrite_source(textwrap.dedent(before), path="mod.py").prefix
    return HEX.sub("'V'", text.replace(prefix, "P"))


def assert_rewrites(before: str, after: str, *, make_ops: bool = True) -> None:
    """Exact text; rewriting again changes nothing; it compiles; original lines keep
    their numbers (dropping inserted lines gives back the source)."""
    before = textwrap.dedent(before)
    result = rewrite(before, make_ops=make_ops)
    assert result == textwrap.dedent(after)
    again = rewrite_source(
        rewrite_source(before, path="mod.py", make_ops=make_ops).text, path="mod.py"
    ).text
    assert again == rewrite_source(before, path="mod.py", make_ops=make_ops).text
    compile_rewritten(result, "mod.py")
    assert original_lines(result) == before.splitlines()


CASES = [
    pytest.param(
        """\
        # persist
        def f(x):
            return x + 1
        """,
        """\
        # persist
        __autopersist__.register('P', (('f', 'function', 'V', -1, (), False, True, 2, 3, 'V'),))  # __autopersist__ inserted
        @__autopersist__.op(0)  # __autopersist__ inserted
        def f(x):
            __autopersist_unseen__[0] and __autopersist_mark__('P:0')  # __autopersist__ inserted
            return x + 1
        """,
        id="op",
    ),
    pytest.param(
        """\
        '''Module docstring.'''
        from __future__ import annotations
        LIMIT = 3
        def procedure(x):
            '''Doc.'''
            print(x, LIMIT)
        """,
        """\
        '''Module docstring.'''
        from __future__ import annotations
        __autopersist__.register('P', (('procedure', 'function', 'V', -1, (('LIMIT',),), False, False, 4, 6, 'V'),))  # __autopersist__ inserted
        LIMIT = 3
        def procedure(x):
            '''Doc.'''
            __autopersist_unseen__[0] and __autopersist_mark__('P:0')  # __autopersist__ inserted
            print(x, LIMIT)
        """,
        id="procedure-docstring-future",
    ),
    pytest.param(
        """\
        import lib
        def one(x): return lib.K * x  # persist: ignore=x
        """,
        """\
        __autopersist__.register('P', (('one', 'function', 'V', -1, (('lib', 'K'),), False, True, 2, 2, 'V'),))  # __autopersist__ inserted
        import lib
        @__autopersist__.op(0, ignore=('x',))  # __autopersist__ inserted
        def one(x): __autopersist_unseen__[0] and __autopersist_mark__('P:0'); return lib.K * x  # persist: ignore=x
        """,
        id="one-liner-directive-attribute-global",
    ),
    pytest.param(
        """\
        N = 0
        class C:
            def m(self):
                global N
                N += 1
                return N
        """,
        """\
        __autopersist__.register('P', (('C', 'class', 'V', -1, (), False, False, 2, 6, 'V'), ('C.m', 'method', 'V', 0, (('N',),), True, False, 3, 6, 'V')))  # __autopersist__ inserted
        N = 0
        class C:
            def m(self):
                __autopersist_unseen__[1] and __autopersist_mark__('P:1')  # __autopersist__ inserted
                global N
                N += 1
                return N
        """,
        id="class-method-global-write",
    ),
    pytest.param(
        """\
        import functools
        @functools.cache
        def g(n):
            return n
        def gen():
            yield 1
        async def a():
            return 1
        def main():
            return 0
        def s(x):  # persist: skip
            return x
        """,
        """\
        __autopersist__.register('P', (('g', 'function', 'V', -1, (), False, True, 2, 4, 'V'), ('gen', 'function', 'V', -1, (), False, False, 5, 6, 'V'), ('a', 'function', 'V', -1, (), False, False, 7, 8, 'V'), ('main', 'function', 'V', -1, (), False, False, 9, 10, 'V'), ('s', 'function', 'V', -1, (), False, False, 11, 12, 'V')))  # __autopersist__ inserted
        import functools
        @functools.cache
        @__autopersist__.op(0)  # __autopersist__ inserted
        def g(n):
            __autopersist_unseen__[0] and __autopersist_mark__('P:0')  # __autopersist__ inserted
            return n
        def gen():
            __autopersist_unseen__[1] and __autopersist_mark__('P:1')  # __autopersist__ inserted
            yield 1
        async def a():
            __autopersist_unseen__[2] and __autopersist_mark__('P:2')  # __autopersist__ inserted
            return 1
        def main():
            __autopersist_unseen__[3] and __autopersist_mark__('P:3')  # __autopersist__ inserted
            return 0
        def s(x):  # persist: skip
            __autopersist_unseen__[4] and __autopersist_mark__('P:4')  # __autopersist__ inserted
            return x
        """,
        id="not-ops",
    ),
]


@pytest.mark.parametrize(("before", "after"), CASES)
def test_rewrite_golden(before, after):
    assert_rewrites(before, after)


def test_unmarked_module_is_tracked_but_has_no_ops():
    result = rewrite("def f(x):\n    return x\n", make_ops=False)
    assert "__autopersist__.op(" not in result
    assert "__autopersist_unseen__[0] and __autopersist_mark__('P:0')" in result


def test_rewrite_keeps_line_numbers_in_tracebacks():
    source = textwrap.dedent(
        """\
        # persist
        '''Doc.'''


        def helper(x):
            '''Doc.'''
            return 1 / x


        def op(x):
            return helper(x)
        """
    )
    code = compile_rewritten(rewrite_source(source, path="m.py").text, "m.py")
    namespace = {
        "__autopersist__": _NoRuntime(),
        "__autopersist_mark__": lambda key: None,
        "__autopersist_unseen__": [True, True],
        "__name__": "m",
    }
    exec(code, namespace)
    with pytest.raises(ZeroDivisionError) as info:
        namespace["op"](0)
    frames = traceback.extract_tb(info.value.__traceback__)[-2:]
    assert [(f.name, f.lineno) for f in frames] == [("op", 11), ("helper", 7)]
    assert namespace["op"].__code__.co_firstlineno == 10


class _NoRuntime:
    """Stands in for the runtime: registers nothing, ops stay plain functions."""

    def register(self, prefix, rows):
        self.rows = rows

    def op(self, index, **options):
        return lambda func: func


def test_syntax_error_names_file_and_line():
    with pytest.raises(TransformError, match=r"^broken\.py:2:\d+: syntax error"):
        rewrite_source("# persist\ndef f(:\n    pass\n", path="broken.py")


def test_rewrite_is_idempotent_on_the_syntax_tour():
    from pathlib import Path

    source = (Path(__file__).parent / "data" / "syntax_tour.py").read_text()
    once = rewrite_source(source, path="tour.py").text
    assert rewrite_source(once, path="tour.py").text == once
    assert len(once.splitlines()) > len(source.splitlines())
    assert original_lines(once) == source.splitlines()


def test_unknown_def_line_option_is_an_error_naming_the_line():
    source = "# persist\n\ndef f(x):  # persist: sometimes\n    return x\n"
    with pytest.raises(
        TransformError,
        match=r"^m\.py:3: unknown autopersist option\(s\) 'sometimes' on def 'f'",
    ):
        rewrite_source(source, path="m.py")
