"""What the import hook binds in ``builtins`` (issue #5): rewritten code run
outside its module's globals still finds ``__autopersist__`` and the mark."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"

pytestmark = pytest.mark.subprocess


def test_function_rebuilt_with_other_globals_runs_untracked(project):
    project.write(
        "lib.py",
        """
        # persist
        import types

        def double(x):
            return 2 * helper(x)

        def helper(x):
            return x

        def rebuilt_call(func, *args):
            # what some libraries do: same code, globals of their own
            clone = types.FunctionType(func.__code__, {"__builtins__": __builtins__})
            return clone(*args)
        """,
    )
    project.write(
        "main.py",
        """
        import inspect
        import lib

        print(lib.rebuilt_call(inspect.unwrap(lib.helper), 21))
        try:
            lib.rebuilt_call(inspect.unwrap(lib.double), 21)
        except NameError as exc:
            print("NameError", exc)
        print(lib.double(21))
        """,
    )
    plain = project.python("main.py")
    first = project.run("main.py")
    second = project.run("main.py")
    assert plain.returncode == first.returncode == second.returncode == 0, first.stderr
    # the rebuilt function lacks 'helper' in its globals like in plain Python, but
    # never the mark the rewriter inserted
    assert first.stdout == plain.stdout == second.stdout
    assert "__autopersist_mark__" not in first.stdout
    assert "NameError name 'helper' is not defined" in plain.stdout


def test_op_wrapper_gaps_rebuilt_with_other_globals_matches_plain(project):
    shutil.copy(DATA / "op_wrapper_gaps.py", project.root / "op_wrapper_gaps.py")
    plain = project.python("op_wrapper_gaps.py")
    run = project.run("op_wrapper_gaps.py")
    assert plain.returncode == run.returncode == 0, run.stderr

    def line(output: str) -> str:
        (found,) = [
            text
            for text in output.splitlines()
            if text.startswith("rebuilt-with-other-globals ")
        ]
        return found

    # before the mark was bound in builtins: "... raised NameError"
    assert line(run.stdout) == line(plain.stdout) == "rebuilt-with-other-globals 1"
