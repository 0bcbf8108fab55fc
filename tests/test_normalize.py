"""Code versions ignore comments, formatting, docstrings and local names; real edits
change them. The pinned digests at the top are a promise to users."""

from __future__ import annotations

import random
import textwrap

import libcst as cst
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libcst.metadata import MetadataWrapper

from autopersist._transform._normalize import (
    normalized_dump,
    source_of_node,
    version_of_node,
    versions_of_module,
    versions_of_parsed,
)


def parse_def(source: str) -> cst.FunctionDef | cst.ClassDef:
    """The first statement of ``source`` (dedented), which must be a def or class."""
    node = cst.parse_module(textwrap.dedent(source)).body[0]
    assert isinstance(node, (cst.FunctionDef, cst.ClassDef))
    return node


def version(source: str) -> str:
    return version_of_node(parse_def(source))


# --- pinned digests ------------------------------------------------------------------
#
# Changing any of these digests invalidates the stored calls of every user: it needs
# a deliberate decision, a bump of _FORMAT_TAG in _normalize.py and a CHANGELOG entry.

PINNED = [
    pytest.param(
        """
        def add(a, b=1):
            return a + b
        """,
        "8ba57cc654a116e55577acc7ef2c2071",
        id="simple-function",
    ),
    pytest.param(
        """
        async def fetch(url: str, *, retries: int = 3) -> bytes:
            \"\"\"Fetch with retries.\"\"\"
            for attempt in range(retries):
                try:
                    return await get(url, timeout=1.5)
                except OSError as exc:
                    last = exc
            raise RuntimeError(f"gave up on {url!r}") from last
        """,
        "a26e89f4a1fcf5c88799f02b015f461d",
        id="async-function",
    ),
    pytest.param(
        """
        @cache
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)
        """,
        "e3d3e47cba395fa18e3c83df7e65b690",
        id="decorated-recursive",
    ),
    pytest.param(
        """
        def summarize(rows, /, key="x", *args, **kwargs):
            totals = {k: sum(r[k] for r in rows) for k in {key, *args}}
            if (n := len(rows)) == 0:
                return None
            def mean(k):
                return totals[k] / n
            return [mean(k) for k in sorted(totals)], kwargs.get("extra", 0x10)
        """,
        "ffe72a8d935ceb4c42d59f5b1afb4b9e",
        id="nested-scopes",
    ),
    pytest.param(
        """
        @dataclass(frozen=True)
        class Point(Base, metaclass=Meta):
            \"\"\"A point.\"\"\"
            x: float = 0.0
            y: float = 0.0
            ORIGIN = None
            def norm(self):
                return (self.x ** 2 + self.y ** 2) ** 0.5
        """,
        "fa5e498a74cc0a1dfc7969022b7d55f7",
        id="class",
    ),
    pytest.param(
        """
        def parse(command):
            match command.split():
                case ["go", direction]:
                    return Move(direction=direction)
                case [("quit" | "exit"), *_]:
                    raise SystemExit(b"bye" b"\\n")
                case _:
                    return None
        """,
        "3c13856f01b542bc4545ff6ccdcf668e",
        id="match",
    ),
]


@pytest.mark.parametrize(("source", "expected"), PINNED)
def test_normalize_versions_stay_the_same(source: str, expected: str) -> None:
    assert version(source) == expected


def test_normalize_version_is_32_lowercase_hex() -> None:
    digest = version("def f(): return 1")
    assert len(digest) == 32
    assert digest == digest.lower()
    int(digest, 16)


# --- edits that must not change a version ------------------------------------------

SAME = [
    pytest.param(
        """
        def f(x):
            return x + 1
        """,
        """
        # a comment above
        def f(x):  # trailing comment
            # a comment inside

            return x + 1  # another
        """,
        id="comments-and-blank-lines",
    ),
    pytest.param(
        """
        def f(x, y):
            return g(x, y, key=1)
        """,
        """
        def f( x ,y ):
            return g(
                x,
                y,
                key = 1,
            )
        """,
        id="line-breaks-spacing-trailing-comma",
    ),
    pytest.param(
        """
        def f(x):
            return x
        """,
        '''
        def f(x):
            """Docstring."""
            return x
        ''',
        id="docstring-added",
    ),
    pytest.param(
        '''
        def f(x):
            """Old docstring."""
            return x
        ''',
        """
        def f(x):
            'New ' "docstring, " '''implicitly concatenated.'''
            return x
        """,
        id="docstring-changed",
    ),
    pytest.param(
        """
        def f():
            pass
        """,
        '''
        def f():
            """Only a docstring."""
        ''',
        id="docstring-only-body",
    ),
    pytest.param(
        """
        def f(a, b):
            y = a + b
            return y
        """,
        """
        def f(a, b):
            y = (a + b)
            return (y)
        """,
        id="redundant-parens",
    ),
    pytest.param(
        """
        def f(a):
            x = 1; y = 2
            if a: return x
            return y
        """,
        """
        def f(a):
            x = 1
            y = 2
            if a:
                return x
            return y
        """,
        id="semicolons-and-one-line-blocks",
    ),
    pytest.param(
        """
        def f():
            return "it's", b'\\x41', "\\u00e9", r'\\d'
        """,
        """
        def f():
            return 'it\\'s', b"A", "é", '\\\\d'
        """,
        id="string-quotes-and-escapes",
    ),
    pytest.param(
        """
        def f(name):
            return f"hello {name!r:>10} and " "bye"
        """,
        """
        def f(name):
            return 'hello ' f'{name!r:>10}' f" and bye"
        """,
        id="fstring-concatenation",
    ),
    pytest.param(
        """
        def f():
            return 1_000, 0x10, 1e3, 2j
        """,
        """
        def f():
            return 1000, 16, 1000.0, 2.0j
        """,
        id="number-spelling",
    ),
    pytest.param(
        """
        def f(items):
            total = 0
            for item in items:
                total += item
            return total
        """,
        """
        def f(items):
            acc = 0
            for element in items:
                acc += element
            return acc
        """,
        id="rename-locals-for-loop",
    ),
    pytest.param(
        """
        def f(xs):
            return [x * 2 for x in xs if x], {k: v for k, v in xs}
        """,
        """
        def f(xs):
            return [value * 2 for value in xs if value], {a: b for a, b in xs}
        """,
        id="rename-comprehension-variables",
    ),
    pytest.param(
        """
        def f(path):
            with open(path) as fh:
                data = fh.read()
            return data
        """,
        """
        def f(path):
            with open(path) as handle:
                text = handle.read()
            return text
        """,
        id="rename-with-as",
    ),
    pytest.param(
        """
        def f(xs):
            if (n := len(xs)) > 3:
                return n
            return [y for x in xs if (y := x + 1)], y
        """,
        """
        def f(xs):
            if (count := len(xs)) > 3:
                return count
            return [z for x in xs if (z := x + 1)], z
        """,
        id="rename-walrus",
    ),
    pytest.param(
        """
        def f(n):
            def helper(k):
                acc = k * 2
                return acc
            total = 0
            def bump():
                nonlocal total
                total += 1
            return helper(n), bump
        """,
        """
        def f(n):
            def twice(k):
                result = k * 2
                return result
            count = 0
            def bump():
                nonlocal count
                count += 1
            return twice(n), bump
        """,
        id="rename-nested-function-and-its-locals",
    ),
    pytest.param(
        """
        def f(x):
            try:
                import numpy as np
                return np.sum(x)
            except ImportError as err:
                raise RuntimeError() from err
        """,
        """
        def f(x):
            try:
                import numpy as numerics
                return numerics.sum(x)
            except ImportError as problem:
                raise RuntimeError() from problem
        """,
        id="rename-import-alias-and-except-as",
    ),
    pytest.param(
        """
        def f(cmd):
            match cmd:
                case [action, *rest]:
                    return action, rest
                case {"k": value, **others}:
                    return value, others
        """,
        """
        def f(cmd):
            match cmd:
                case [verb, *args]:
                    return verb, args
                case {"k": v, **more}:
                    return v, more
        """,
        id="rename-match-captures",
    ),
    pytest.param(
        """
        def f(x):
            return lambda y: [x + y + z for z in range(3)]
        """,
        """
        def f(x):
            return lambda y: [x + y + w for w in range(3)]
        """,
        id="rename-inside-lambda",
    ),
]


@pytest.mark.parametrize(("before", "after"), SAME)
def test_normalize_edit_keeps_version(before: str, after: str) -> None:
    assert version(before) == version(after), (
        normalized_dump(parse_def(before)) + "\n" + normalized_dump(parse_def(after))
    )


def test_normalize_crlf_source_keeps_version() -> None:
    source = 'def f():\n    return """a\nb"""\n'
    assert versions_of_module(source) == versions_of_module(
        source.replace("\n", "\r\n")
    )


def test_normalize_own_name_is_not_part_of_the_version() -> None:
    assert version("def f(x): return x") == version("def g(x): return x")


def test_normalize_standalone_node_equals_node_in_module() -> None:
    source = textwrap.dedent(
        """
        import os
        X = 1
        class A:
            def m(self, y):
                z = y + X
                return os.path.join(z)
        """
    )
    module = cst.parse_module(source)
    klass = module.body[2]
    assert isinstance(klass, cst.ClassDef)
    method = klass.body.body[0]
    assert isinstance(method, cst.FunctionDef)
    assert versions_of_module(source)["A.m"] == version_of_node(method)


# --- edits that must change a version ------------------------------------------------

DIFFERENT = [
    pytest.param(
        "def f(a, b): return a + b", "def f(a, b): return a - b", id="operator"
    ),
    pytest.param("def f(a): return a + 1", "def f(a): return a + 2", id="constant"),
    pytest.param(
        "def f(a): return a + 1", "def f(a): return a + 1.0", id="int-vs-float"
    ),
    pytest.param("def f(): return 'a'", "def f(): return b'a'", id="str-vs-bytes"),
    pytest.param(
        "def f(a): return load(a)", "def f(a): return fetch(a)", id="helper-name"
    ),
    pytest.param(
        "def f(a): return a.mean()", "def f(a): return a.sum()", id="attribute"
    ),
    pytest.param(
        "def f(a): return g(a, axis=0)",
        "def f(a): return g(a, dim=0)",
        id="keyword-name",
    ),
    pytest.param("def f(a): return a", "def f(b): return b", id="parameter-renamed"),
    pytest.param("def f(a=1): return a", "def f(a=2): return a", id="default-changed"),
    pytest.param(
        "def f(a, b): return a", "def f(a, *, b): return a", id="parameter-kind"
    ),
    pytest.param(
        "def f(a: int): return a", "def f(a: float): return a", id="annotation"
    ),
    pytest.param(
        "def f(a): return a",
        "@cache\ndef f(a): return a",
        id="decorator-added",
    ),
    pytest.param("def f(): return LIMIT", "def f(): return MAXIMUM", id="global-name"),
    pytest.param(
        "def f(x, y):\n    a = x\n    b = y\n    return a - b",
        "def f(x, y):\n    a = x\n    b = y\n    return b - a",
        id="locals-swap-roles",
    ),
    pytest.param(
        "def f(a, b, c): return (a + b) * c",
        "def f(a, b, c): return a + b * c",
        id="precedence-parens",
    ),
    pytest.param(
        "def f(a): return a[1]", "def f(a): return a[1,]", id="subscript-tuple"
    ),
    pytest.param(
        "def f(x):\n    def g(y):\n        return y + 1\n    return g(x)",
        "def f(x):\n    def g(y):\n        return y + 2\n    return g(x)",
        id="nested-function-body",
    ),
    pytest.param(
        "def f(x):\n    y = x\n    return y",
        "def f(x):\n    global y\n    y = x\n    return y",
        id="local-vs-global",
    ),
    pytest.param(
        "def f(x): return f'{x=}'",
        "def f(x): return f'{x = }'",
        id="fstring-debug-text",
    ),
    pytest.param(
        "def f(): return async_thing()",
        "async def f(): return async_thing()",
        id="async",
    ),
    pytest.param(
        "def f(x):\n    y = x\n    return locals()",
        "def f(x):\n    z = x\n    return locals()",
        id="locals-observed-by-locals()",
    ),
    pytest.param(
        "def f(a):\n    from m import x\n    return x(a)",
        "def f(a):\n    from m import y as x\n    return x(a)",
        id="imported-name",
    ),
]


@pytest.mark.parametrize(("before", "after"), DIFFERENT)
def test_normalize_edit_changes_version(before: str, after: str) -> None:
    assert version(before) != version(after)


CLASS_BEFORE = """
class Model(Base):
    '''Doc.'''
    rate = 0.1
    def fit(self, x):
        return x * self.rate
"""


def test_normalize_class_attribute_changes_class_version() -> None:
    after = CLASS_BEFORE.replace("rate = 0.1", "rate = 0.2")
    assert version(CLASS_BEFORE) != version(after)


def test_normalize_method_change_changes_only_the_method() -> None:
    after = CLASS_BEFORE.replace("x * self.rate", "x / self.rate")
    before_versions = versions_of_module(textwrap.dedent(CLASS_BEFORE))
    after_versions = versions_of_module(textwrap.dedent(after))
    assert before_versions["Model"] == after_versions["Model"]
    assert before_versions["Model.fit"] != after_versions["Model.fit"]


def test_normalize_class_ignores_docstring_and_formatting() -> None:
    after = CLASS_BEFORE.replace("'''Doc.'''", "# no docstring").replace(
        "rate = 0.1", "rate=0.10  # tuned"
    )
    assert version(CLASS_BEFORE) == version(after)


# --- module-level entry points --------------------------------------------------------

MODULE = """
import sys

def top(x):
    return x

class Outer:
    attr = 1

    def method(self):
        return self.attr

    class Inner:
        def deep(self):
            return 2

if sys.platform == "win32":
    def platform_specific():
        return "win"
else:
    def platform_specific():
        return "posix"

try:
    import numpy
except ImportError:
    def fallback():
        return None

def helper():
    def nested():  # part of helper's version, not its own entry
        return 1
    return nested
"""


def test_normalize_versions_of_module_qualnames() -> None:
    versions = versions_of_module(textwrap.dedent(MODULE))
    assert list(versions) == [
        "top",
        "Outer",
        "Outer.method",
        "Outer.Inner",
        "Outer.Inner.deep",
        "platform_specific",
        "fallback",
        "helper",
    ]


def test_normalize_later_definition_wins() -> None:
    versions = versions_of_module(textwrap.dedent(MODULE))
    posix = version('def platform_specific():\n    return "posix"')
    assert versions["platform_specific"] == posix


def test_normalize_versions_of_parsed_keys_are_the_wrapper_nodes() -> None:
    source = textwrap.dedent(MODULE)
    wrapper = MetadataWrapper(cst.parse_module(source))
    by_node = versions_of_parsed(wrapper)
    top = wrapper.module.body[1]
    assert by_node[top] == versions_of_module(source)["top"]
    assert len(by_node) == 9  # platform_specific is there twice
    assert sorted(set(by_node.values())) == sorted(
        set(versions_of_module(source).values())
        | {version('def platform_specific():\n    return "win"')}
    )


def test_normalize_source_of_node_is_dedented_original_text() -> None:
    source = textwrap.dedent(
        """
        class A:
            # a comment above the method is not part of it

            @property
            def value(self):  # kept
                return  1
        """
    )
    module = cst.parse_module(source)
    klass = module.body[0]
    assert isinstance(klass, cst.ClassDef)
    method = klass.body.body[0]
    assert source_of_node(module, method) == (
        "@property\ndef value(self):  # kept\n    return  1\n"
    )


# --- property: reformatting never changes a version -----------------------------------

SAMPLES = [
    PINNED[1].values[0],
    PINNED[3].values[0],
    PINNED[4].values[0],
    PINNED[5].values[0],
    """
    def pipeline(data, lr=0.1, *, steps=10):
        model = init(data.shape[1], seed=0)
        for step in range(steps):
            grads = [g * lr for g in compute(model, data) if g is not None]
            model = update(model, grads, clip=(-1.0, 1.0))
            if step % 2 == 0 and not quiet:
                log("step %d" % step, extra={"lr": lr, "n": len(grads)})
        return model, lambda x: model.predict(x) - bias
    """,
]


class _Reformat(cst.CSTTransformer):
    """Adds spaces, comments, trailing commas and redundant parentheses at random,
    never inside f-strings (whose ``{x=}`` fields print their own spacing)."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng
        self.in_fstring = 0

    def visit_FormattedString(self, node: cst.FormattedString) -> bool:
        self.in_fstring += 1
        return True

    def leave_FormattedString(
        self, original_node: cst.FormattedString, updated_node: cst.FormattedString
    ) -> cst.FormattedString:
        self.in_fstring -= 1
        return updated_node

    def leave_SimpleWhitespace(
        self, original_node: cst.SimpleWhitespace, updated_node: cst.SimpleWhitespace
    ) -> cst.SimpleWhitespace:
        # Only widen existing spaces: some fields must stay empty.
        if self.in_fstring or not updated_node.value or self.rng.random() < 0.5:
            return updated_node
        spaces = " " * self.rng.randint(1, 3)
        return updated_node.with_changes(value=updated_node.value + spaces)

    def leave_TrailingWhitespace(
        self,
        original_node: cst.TrailingWhitespace,
        updated_node: cst.TrailingWhitespace,
    ) -> cst.TrailingWhitespace:
        if updated_node.comment is not None or self.rng.random() < 0.5:
            return updated_node
        return updated_node.with_changes(
            whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment("# note")
        )

    def leave_SimpleStatementLine(
        self,
        original_node: cst.SimpleStatementLine,
        updated_node: cst.SimpleStatementLine,
    ) -> cst.SimpleStatementLine:
        if self.rng.random() < 0.5:
            return updated_node
        comment = cst.EmptyLine(comment=cst.Comment("# inserted"))
        return updated_node.with_changes(
            leading_lines=[*updated_node.leading_lines, cst.EmptyLine(), comment]
        )

    def leave_LeftParen(
        self, original_node: cst.LeftParen, updated_node: cst.LeftParen
    ) -> cst.LeftParen:
        if self.in_fstring or self.rng.random() < 0.5:
            return updated_node
        return updated_node.with_changes(whitespace_after=cst.SimpleWhitespace(" "))

    def leave_Arg(self, original_node: cst.Arg, updated_node: cst.Arg) -> cst.Arg:
        # Call arguments sit inside parentheses, so a line break after a comma
        # is always legal there.
        comma = updated_node.comma
        if (
            self.in_fstring
            or not isinstance(comma, cst.Comma)
            or self.rng.random() < 0.5
        ):
            return updated_node
        line_break = cst.ParenthesizedWhitespace(
            first_line=cst.TrailingWhitespace(),
            indent=True,
            last_line=cst.SimpleWhitespace("        "),
        )
        return updated_node.with_changes(
            comma=comma.with_changes(whitespace_after=line_break)
        )

    def _parenthesize(self, node: cst.BaseExpression) -> cst.BaseExpression:
        if self.in_fstring or self.rng.random() < 0.5:
            return node
        return node.with_changes(
            lpar=[cst.LeftParen(), *node.lpar], rpar=[*node.rpar, cst.RightParen()]
        )

    def leave_BinaryOperation(
        self, original_node: cst.BinaryOperation, updated_node: cst.BinaryOperation
    ) -> cst.BaseExpression:
        return self._parenthesize(updated_node)

    def leave_Call(
        self, original_node: cst.Call, updated_node: cst.Call
    ) -> cst.BaseExpression:
        args = list(updated_node.args)
        if (
            args
            and isinstance(args[-1].comma, cst.MaybeSentinel)
            and not any(isinstance(a.value, cst.GeneratorExp) for a in args)
            and self.rng.random() < 0.5
        ):
            args[-1] = args[-1].with_changes(comma=cst.Comma())
            updated_node = updated_node.with_changes(args=args)
        return self._parenthesize(updated_node)


@settings(max_examples=60, deadline=None)
@given(source=st.sampled_from(SAMPLES), rng=st.randoms(use_true_random=False))
def test_normalize_reformatting_keeps_version(source: str, rng: random.Random) -> None:
    module = cst.parse_module(textwrap.dedent(source))
    reformatted = module.visit(_Reformat(rng)).code
    node = cst.parse_module(reformatted).body[0]  # the result must still parse
    assert isinstance(node, (cst.FunctionDef, cst.ClassDef))
    assert version_of_node(node) == version(source), reformatted
