"""The import hook compiles instrumented modules without printing the rewrite
(``instrumented_code``): the code object must be exactly the one of compiling the
rewritten text (``compile_rewritten(rewrite_source(...).text)``), line tables,
positions and constants included, so that both kinds of cached bytecode agree."""

from __future__ import annotations

import marshal
import textwrap
from pathlib import Path

import pytest

from autopersist._transform import compile_rewritten, instrumented_code, rewrite_source

REPO = Path(__file__).resolve().parent.parent

SNIPPETS = {
    "docstring-only-bodies": '''
        """Module doc."""
        def f():
            """Only a docstring."""
        def g(): "doc"
        class C:
            def m(self):
                "doc"
        ''',
    "header-sharing-a-line": """
        "doc"; from __future__ import annotations; import os
        def f(x): "doc"; return x
        def g(x): return x  # persist: always
        """,
    "header-only": '''
        """Only a docstring."""
        from __future__ import annotations
        ''',
    "empty": "",
    "decorated-ops-in-blocks": """
        import functools
        @functools.cache
        @functools.wraps(print)
        def f(n):  # persist: ignore=n
            return n
        if True:
            def g():
                return 1
        try:
            class K:
                def m(self):
                    return 2
        finally:
            pass
        async def a():
            return 3
        """,
}


def _same_code(source: str, path: str) -> None:
    for make_ops in (True, False):
        text = rewrite_source(source, path=path, make_ops=make_ops).text
        expected = compile_rewritten(text, path)
        code = instrumented_code(source, path=path, make_ops=make_ops)
        # Code objects compare their bytecode, constants (nested code included),
        # names, line and position tables; marshal the rest (the bytes of two
        # objects only differ where one of them is referenced more than once).
        assert code == expected, make_ops
        del code, expected
        assert marshal.dumps(
            instrumented_code(source, path=path, make_ops=make_ops)
        ) == marshal.dumps(compile_rewritten(text, path))


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_snippets(name):
    _same_code(textwrap.dedent(SNIPPETS[name]), f"{name}.py")


def _files() -> list[Path]:
    files = sorted((REPO / "tests" / "data").glob("*.py"))
    return files + sorted((REPO / "samples").rglob("*.py"))


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_real_code(path):
    _same_code(path.read_text(encoding="utf-8"), str(path))


def test_already_rewritten_text_compiles_as_rewritten():
    source = "# persist\ndef f(x):\n    return x\n"
    text = rewrite_source(source, path="m.py").text
    assert instrumented_code(text, path="m.py") == compile_rewritten(text, "m.py")


def test_a_module_without_definitions_compiles_without_libcst():
    import subprocess
    import sys

    source = '"""A script."""\nimport os\nprint(os.sep, [i for i in range(3)])\n'
    _same_code(source, "script.py")
    probe = (
        "import sys\n"
        "from autopersist._transform import instrumented_code\n"
        f"instrumented_code({source!r}, path='script.py')\n"
        "assert 'libcst' not in sys.modules, 'libcst imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
