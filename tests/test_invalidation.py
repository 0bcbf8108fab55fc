"""Versions and dependency-aware invalidation (issue #3), through the CLI.

Each test runs a script, edits the code the way a user would, runs it again, and
checks exactly which ops were computed in the last run.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.subprocess

PIPELINE = """
# persist
import lib

OFFSET = 10


def helper_a(x):
    return x + 1


def helper_b(x):
    return x - 1


def step(x, flag=True):
    if flag:
        return helper_a(x)
    return helper_b(x)


def uses_lib(x):
    return lib.scale(x) + OFFSET


def uses_factor(x):
    return lib.FACTOR * x


def no_globals(x):
    return x * 2


print([step(i) for i in range(3)], [step(i, False) for i in range(3)])
print(uses_lib(1), uses_factor(3), no_globals(4))
"""

LIB = """
FACTOR = 2


def scale(x):
    return x * FACTOR


def unused(x):
    return x
"""


@pytest.fixture
def pipeline(project):
    project.write("main.py", PIPELINE)
    project.write("lib.py", LIB)
    first = project.run("main.py")
    assert first.returncode == 0, first.stderr
    return project


def rerun(project, *args):
    result = project.run("main.py", *args)
    assert result.returncode == 0, result.stderr
    return project.computed_last_run()


def test_unchanged_code_recomputes_nothing(pipeline):
    assert rerun(pipeline) == {}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("def helper_a(x):\n", "def helper_a(x):  # a comment\n"),
        ("    return x + 1\n", '    """Now with a docstring."""\n    return x + 1\n'),
        ("    return x + 1\n", "    return (x + 1)\n"),
        ("    return x + 1\n", "\n\n    return   x+1\n"),
        (
            "def no_globals(x):\n    return x * 2\n",
            "def no_globals(x):\n    doubled = x * 2\n    return doubled\n",
        ),
    ],
    ids=["comment", "docstring", "parentheses", "formatting", "same-logic-local"],
)
def test_cosmetic_edits_recompute_nothing(pipeline, old, new):
    pipeline.edit("main.py", old, new)
    computed = rerun(pipeline)
    if "doubled" in new:
        # a new local changes the tree (an assignment was added) but only for no_globals
        assert set(computed) <= {"main:no_globals"}
    else:
        assert computed == {}


def test_renaming_a_local_recomputes_nothing(project):
    project.write(
        "r.py", "# persist\ndef f(x):\n    tmp = x * 3\n    return tmp\nprint(f(2))\n"
    )
    project.run("r.py")
    project.edit("r.py", "tmp", "tripled")
    assert project.run("r.py").counts()["computed"] == 0


def test_editing_an_op_recomputes_only_its_calls(pipeline):
    pipeline.edit("main.py", "return x * 2", "return x * 20")
    assert rerun(pipeline) == {"main:no_globals": 1}


def test_editing_a_helper_recomputes_only_calls_that_ran_it(pipeline):
    pipeline.edit("main.py", "return x + 1", "return x + 100")
    # step(i, True) ran helper_a; step(i, False) did not
    assert rerun(pipeline) == {"main:helper_a": 3, "main:step": 3}


def test_editing_a_constant_recomputes_only_its_readers(pipeline):
    pipeline.edit("main.py", "OFFSET = 10", "OFFSET = 11")
    assert rerun(pipeline) == {"main:uses_lib": 1}


def test_constant_in_unmarked_module_read_directly_and_through_helper(pipeline):
    pipeline.edit("lib.py", "FACTOR = 2", "FACTOR = 3")
    assert rerun(pipeline) == {"main:uses_lib": 1, "main:uses_factor": 1}


def test_editing_helper_in_unmarked_module(pipeline):
    pipeline.edit("lib.py", "return x * FACTOR", "return x * FACTOR + 0.5")
    assert rerun(pipeline) == {"main:uses_lib": 1}


def test_unused_helper_edited_or_deleted_changes_nothing(pipeline):
    pipeline.edit(
        "lib.py", "def unused(x):\n    return x\n", "def unused(x):\n    return -x\n"
    )
    assert rerun(pipeline) == {}
    pipeline.edit("lib.py", "def unused(x):\n    return -x\n", "")
    assert rerun(pipeline) == {}


def test_reverting_brings_old_calls_back(pipeline):
    pipeline.edit("main.py", "return x + 1", "return x + 100")
    rerun(pipeline)
    pipeline.edit("main.py", "return x + 100", "return x + 1")
    assert rerun(pipeline) == {}


def test_same_named_functions_in_two_modules_do_not_collide(project):
    project.write("a.py", "# persist\ndef f(x):\n    return x + 1\n")
    project.write("b.py", "# persist\ndef f(x):\n    return x + 2\n")
    project.write("m.py", "# persist\nimport a, b\nprint(a.f(1), b.f(1))\n")
    assert project.run("m.py").stdout == "2 3\n"
    assert project.run("m.py").stdout == "2 3\n"
    assert project.calls_of("a:f") == 1
    assert project.calls_of("b:f") == 1
    project.edit("b.py", "x + 2", "x + 5")
    result = project.run("m.py")
    assert result.stdout == "2 6\n"
    assert project.computed_last_run() == {"b:f": 1}


NESTED = """
# persist
def inner(x):
    return x * 2


def outer(x):
    return inner(x) + 1


print(outer(5))
"""


def test_nested_ops_inner_edit_recomputes_both(project):
    project.write("n.py", NESTED)
    project.run("n.py")
    project.edit("n.py", "return x * 2", "return x * 3")
    assert project.run("n.py").stdout == "16\n"
    assert project.computed_last_run() == {"n:inner": 1, "n:outer": 1}


def test_nested_ops_outer_edit_recomputes_only_outer(project):
    project.write("n.py", NESTED)
    project.run("n.py")
    project.edit("n.py", "inner(x) + 1", "inner(x) + 2")
    assert project.run("n.py").stdout == "12\n"
    assert project.computed_last_run() == {"n:outer": 1}


def test_generator_and_method_used_by_an_op(project):
    project.write(
        "g.py",
        """
        # persist
        def numbers(n):
            yield from range(n)


        class Acc:
            def add(self, items):
                return sum(items)


        def total(n):
            return Acc().add(numbers(n))


        def other(n):
            return n


        print(total(4), other(1))
        """,
    )
    project.run("g.py")
    project.edit("g.py", "yield from range(n)", "yield from range(1, n)")
    assert project.run("g.py").stdout == "6 1\n"
    assert project.computed_last_run() == {"g:total": 1}
    project.edit("g.py", "return sum(items)", "return sum(items) * 10")
    assert project.run("g.py").stdout == "60 1\n"
    assert project.computed_last_run() == {"g:total": 1}


def test_lambdas_are_told_apart_by_code(project):
    project.write(
        "lam.py",
        """
        # persist
        def apply(fn, x):
            return fn(x)

        print(apply(lambda v: v + 1, 1), apply(lambda v: v * 10, 1), apply(lambda v: v + 1, 1))
        """,
    )
    result = project.run("lam.py")
    assert result.stdout == "2 10 2\n"
    assert result.counts() == {"calls": 3, "reused": 1, "computed": 2, "failed": 0}


def test_changing_a_default_recomputes_only_calls_that_relied_on_it(project):
    project.write(
        "d.py",
        """
        # persist
        def power(x, p=2):
            return x ** p

        print(power(3), power(3, p=3))
        """,
    )
    project.run("d.py")
    project.edit("d.py", "p=2)", "p=4)")
    result = project.run("d.py")
    assert result.stdout == "81 27\n"
    assert result.counts()["computed"] == 1
    assert result.counts()["reused"] == 1


def test_ignore_directive_excludes_parameters_from_identity(project):
    project.write(
        "ig.py",
        """
        # persist
        import sys

        def work(x, verbose=False):  # persist: ignore=verbose
            return x * 2

        print(work(2, verbose=sys.argv[1] == "1"))
        """,
    )
    project.run("ig.py", "0")
    result = project.run("ig.py", "1")
    assert result.stdout == "4\n"
    assert result.counts()["reused"] == 1


def test_accept_keeps_old_calls_valid(pipeline):
    pipeline.edit("main.py", "return x + 1", "return (x + 1) if x >= 0 else x + 1")
    accepted = pipeline.cli("accept", "helper_a")
    assert accepted.returncode == 0, accepted.stderr
    assert "accepted main:helper_a" in accepted.stdout
    assert rerun(pipeline) == {}


def test_accept_new_parameter_with_default(project):
    project.write(
        "np.py",
        """
        # persist
        def scale(x):
            return x * 2

        print(scale(1), scale(2))
        """,
    )
    project.run("np.py")
    project.edit(
        "np.py",
        "def scale(x):\n    return x * 2",
        "def scale(x, k=2):\n    return x * k",
    )
    accepted = project.cli("accept", "scale")
    assert "new parameters with defaults: k" in accepted.stdout
    result = project.run("np.py")
    assert result.stdout == "2 4\n"
    assert result.counts()["computed"] == 0
    project.edit("np.py", "print(scale(1), scale(2))", "print(scale(1), scale(2, k=3))")
    result = project.run("np.py")
    assert result.stdout == "2 6\n"
    assert result.counts() == {"calls": 2, "reused": 1, "computed": 1, "failed": 0}


def test_no_new_calls_fails_with_a_clear_error(pipeline):
    pipeline.edit("main.py", "return x * 2", "return x * 3")
    result = pipeline.cli("run", "--no-new-calls", "main.py")
    assert result.returncode == 1
    assert "run --no-new-calls: main:no_globals(x=4) is not stored" in result.stderr
    assert "Traceback" not in result.stderr


def test_interactive_no_reuses_yes_recomputes(pipeline):
    pipeline.edit("main.py", "return x + 1", "return x + 1000")
    answered_yes = pipeline.cli("run", "--interactive", "main.py", env=None)
    # stdin is empty (DEVNULL): an unanswered question recomputes
    assert "Does this change require recomputation?" in answered_yes.stderr
    assert "[1000, 1001, 1002]" in answered_yes.stdout


def test_interactive_answer_no_reuses(pipeline):
    import subprocess
    import sys

    pipeline.edit("main.py", "return x + 1", "return x + 1000")
    proc = subprocess.run(
        [sys.executable, "-m", "autopersist", "run", "--interactive", "main.py"],
        cwd=pipeline.root,
        env=pipeline.env(),
        input="n\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "-    return x + 1" in proc.stderr and "+    return x + 1000" in proc.stderr
    assert "[1, 2, 3]" in proc.stdout  # the old results, as the user declared
    assert pipeline.cli("versions", "helper_a").returncode == 0


def test_versions_diff_status_why(pipeline):
    pipeline.edit("main.py", "return x + 1", "return x + 100")
    status = pipeline.cli("status")
    assert "main:step: 3 of 6 stored calls stale" in status.stdout
    assert "function main:helper_a changed" in status.stdout
    assert "main:uses_lib: up to date" in status.stdout
    diff = pipeline.cli("diff", "helper_a")
    assert "-    return x + 1\n+    return x + 100\n" in diff.stdout
    rerun(pipeline)
    versions = pipeline.cli("versions", "main:helper_a")
    assert versions.stdout.startswith("main:helper_a: 2 version(s)")
    assert versions.stdout.count("(current)") == 1
    why = pipeline.cli("why", "step")
    assert "3 call(s) computed in run" in why.stdout
    assert "function main:helper_a changed" in why.stdout
    assert "+    return x + 100" in why.stdout
    pipeline.edit("lib.py", "FACTOR = 2", "FACTOR = 5")
    status = pipeline.cli("status")
    assert "main:uses_factor: 1 of 1 stored calls stale" in status.stdout
    assert "global lib:FACTOR changed" in status.stdout


def test_unknown_function_is_a_clear_error(pipeline):
    result = pipeline.cli("versions", "nope")
    assert result.returncode == 1
    assert "no function named 'nope' in the store" in result.stderr
    assert "Traceback" not in result.stderr


def test_same_second_same_size_edit_is_seen(project):
    """The rewritten-bytecode cache is keyed on the source's hash: an edit that
    keeps the file's size and mtime second must not run the stale rewrite."""
    project.write("q.py", "# persist\ndef f(x):\n    return x * 2\nprint(f(2))\n")
    path = project.root / "q.py"
    assert project.run("q.py").stdout == "4\n"
    stat = path.stat()
    path.write_text(path.read_text().replace("x * 2", "x * 3"))
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    result = project.run("q.py")
    assert result.stdout == "6\n"
    assert result.counts()["computed"] == 1


def test_rerun_marks_stored_versions_seen_without_rewriting_them(project):
    """A module that did not change stores no new version rows: its versions only
    get this run as ``last_seen``; after a revert the old version is current again."""
    project.write("v.py", "# persist\ndef f(x):\n    return x * 2\nprint(f(2))\n")
    project.run("v.py")

    def rows():
        with project.db() as db:
            return db.execute(
                "SELECT version_id, source, first_seen, last_seen, last_run_id "
                "FROM versions WHERE func_id = 'v:f' ORDER BY first_seen"
            ).fetchall()

    (first,) = rows()
    assert first[1] == "def f(x):\n    return x * 2"
    project.run("v.py")
    (again,) = rows()
    assert again[:3] == first[:3]  # same version, source and first sighting
    assert again[3] > first[3] and again[4] != first[4]
    project.edit("v.py", "x * 2", "x * 3")
    project.run("v.py")
    project.edit("v.py", "x * 3", "x * 2")
    project.run("v.py")
    old, new = rows()
    assert old[0] == first[0] and old[3] > new[3]  # the reverted-to one is current
    versions = project.cli("versions", "v:f")
    assert versions.stdout.startswith("v:f: 2 version(s)")
