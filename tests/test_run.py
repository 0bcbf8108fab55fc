"""``autopersist run`` end to end: scripts in a temp dir, run twice, then checked."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.subprocess


def test_second_run_computes_nothing_and_prints_the_same(project):
    project.write(
        "script.py",
        """
        # persist
        def square(x):
            return x * x

        def main():
            print([square(i) for i in range(5)])

        main()
        """,
    )
    first = project.run("script.py")
    second = project.run("script.py")
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout == "[0, 1, 4, 9, 16]\n"
    assert first.counts() == {"calls": 5, "reused": 0, "computed": 5, "failed": 0}
    assert second.counts() == {"calls": 5, "reused": 5, "computed": 0, "failed": 0}
    assert project.calls_of("script:square") == 5


def test_extending_a_loop_computes_only_the_new_items(project):
    source = """
        # persist
        import sys

        def cube(x):
            return x ** 3

        print(sum(cube(i) for i in range(int(sys.argv[1]))))
        """
    project.write("loop.py", source)
    assert project.run("loop.py", "3").counts()["computed"] == 3
    extended = project.run("loop.py", "5")
    assert extended.counts() == {"calls": 5, "reused": 3, "computed": 2, "failed": 0}
    assert extended.stdout == "100\n"


def test_defaults_and_keywords_bind_to_one_call(project):
    project.write(
        "bind.py",
        """
        # persist
        def f(x, y=1):
            return x + y

        print(f(1), f(1, 1), f(y=1, x=1), f(x=1))
        """,
    )
    result = project.run("bind.py")
    assert result.stdout == "2 2 2 2\n"
    assert result.counts() == {"calls": 4, "reused": 3, "computed": 1, "failed": 0}


def test_values_are_identified_by_content_and_type(project):
    project.write(
        "values.py",
        """
        # persist
        def ident(v):
            return repr(v)

        print(ident({"a": 1, "b": 2}), ident({"b": 2, "a": 1}))
        print(ident(1), ident(1.0), ident(True))
        """,
    )
    result = project.run("values.py")
    assert result.stdout == "{'a': 1, 'b': 2} {'a': 1, 'b': 2}\n1 1.0 True\n"
    # one call for both dicts, three for 1 / 1.0 / True
    assert result.counts() == {"calls": 5, "reused": 1, "computed": 4, "failed": 0}


def test_a_reused_result_is_independent_of_other_callers(project):
    project.write(
        "mutate.py",
        """
        # persist
        def make():
            return [1, 2, 3]

        a = make()
        a.append(99)
        b = make()
        print(a, b, a is b)
        """,
    )
    for _ in range(2):
        result = project.run("mutate.py")
        assert result.stdout == "[1, 2, 3, 99] [1, 2, 3] False\n"


def test_a_global_rebound_between_calls_in_one_run_is_seen(project):
    """Dependencies on unchanging globals are resolved once per object: a global
    rebound to another value in the same run is a new dependency value."""
    project.write(
        "rebind.py",
        """
        # persist
        SCALE = 2

        def scaled(x):
            return x * SCALE

        first = scaled(5)
        SCALE = 3
        second = scaled(5)
        SCALE = 2
        third = scaled(5)
        print(first, second, third)
        """,
    )
    result = project.run("rebind.py")
    assert result.stdout == "10 15 10\n"
    assert result.counts() == {"calls": 3, "reused": 1, "computed": 2, "failed": 0}
    again = project.run("rebind.py")
    assert again.stdout == "10 15 10\n"
    assert again.counts()["computed"] == 0


def test_values_without_a_utf8_form_and_big_containers_are_stored(project):
    """Lone surrogates (from a byte-escaped filename, say) in an argument, a result
    and an error message; a big list's preview is cut, its value whole."""
    project.write(
        "odd.py",
        """
        # persist
        def echo(s):
            return s + "!"

        def fail(s):
            if s:
                raise ValueError(s)
            return s

        def big(n):
            return list(range(n))

        name = b"caf\\xe9".decode("utf-8", "surrogateescape")
        print(ascii(echo(name)), len(big(100_000)))
        try:
            fail(name)
        except ValueError as exc:
            print("raised", ascii(str(exc)))
        """,
    )
    expected = "'caf\\udce9!' 100000\nraised 'caf\\udce9'\n"
    first = project.run("odd.py")
    assert first.stdout == expected, first.stderr
    assert first.counts() == {"calls": 3, "reused": 0, "computed": 2, "failed": 1}
    second = project.run("odd.py")
    assert second.stdout == expected
    assert second.counts()["reused"] == 2
    with project.db() as db:
        error = db.execute(
            "SELECT error FROM calls WHERE op_id = 'odd:fail'"
        ).fetchone()
        preview = db.execute(
            "SELECT v.preview, v.size FROM calls c JOIN value_rows v "
            "ON v.value_id = c.output_id WHERE c.op_id = 'odd:big'"
        ).fetchone()
    assert error[0] == "ValueError: caf\\udce9"
    assert preview[0].startswith("[0, 1, 2, ") and len(preview[0]) <= 200
    assert preview[1] > 100_000


def test_numpy_arrays_round_trip(project):
    pytest.importorskip("numpy")
    project.write(
        "arrays.py",
        """
        # persist
        import numpy as np

        def scale(a, k):
            return a * k

        out = scale(np.arange(6, dtype=np.float32).reshape(2, 3), 2)
        print(out.dtype, out.shape, out.tolist())
        """,
    )
    first = project.run("arrays.py")
    second = project.run("arrays.py")
    assert (
        first.stdout
        == second.stdout
        == "float32 (2, 3) [[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]]\n"
    )
    assert second.counts()["reused"] == 1


def test_recursion_computes_each_argument_once(project):
    project.write(
        "fib.py",
        """
        # persist
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        print(fib(30))
        """,
    )
    result = project.run("fib.py")
    assert result.stdout == "832040\n"
    assert result.counts()["computed"] == 31
    assert project.calls_of("fib:fib") == 31
    assert project.run("fib.py").counts() == {
        "calls": 1,
        "reused": 1,
        "computed": 0,
        "failed": 0,
    }


def test_unmarked_script_runs_as_plain_python(project):
    project.write(
        "plain.py",
        """
        import sys
        def f(x):
            return x * 2
        print(f(21), __name__, sys.argv[1:])
        """,
    )
    through = project.run("plain.py", "a", "--b")
    plain = project.python("plain.py", "a", "--b")
    assert through.stdout == plain.stdout == "42 __main__ ['a', '--b']\n"
    assert through.counts()["calls"] == 0


def test_exit_status_and_arguments_pass_through(project):
    project.write(
        "exits.py",
        """
        # persist
        import sys
        print(sys.argv[1:])
        sys.exit(int(sys.argv[1]))
        """,
    )
    result = project.run("exits.py", "3", "-q", "--store", "x")
    assert result.returncode == 3
    assert result.stdout == "['3', '-q', '--store', 'x']\n"


def test_quiet_flag_silences_the_summary(project):
    project.write("q.py", "# persist\nprint('hi')\n")
    result = project.cli("run", "-q", "q.py")
    assert result.stdout == "hi\n"
    assert "autopersist:" not in result.stderr


def test_run_module_with_dash_m(project):
    project.write(
        "pkg/__init__.py",
        "",
    )
    project.write(
        "pkg/tool.py",
        """
        # persist
        import sys

        def double(x):
            return 2 * x

        if __name__ == "__main__":
            print(double(int(sys.argv[1])))
        """,
    )
    first = project.cli("run", "-m", "pkg.tool", "21")
    assert first.stdout == "42\n", first.stderr
    second = project.cli("run", "-m", "pkg.tool", "21")
    assert second.counts()["reused"] == 1
    assert project.calls_of("pkg.tool:double") == 1


def test_exception_propagates_with_user_line_numbers(project):
    project.write(
        "boom.py",
        """
        # persist
        def ok(x):
            return x + 1

        def bad(x):
            y = ok(x)
            if y > 5:
                return y
            raise ValueError(f"bad {y}")

        bad(1)
        """,
    )
    plain = project.python("boom.py")
    through = project.run("boom.py")
    assert through.returncode == plain.returncode == 1
    assert "ValueError: bad 2" in through.stderr
    user_lines = [line for line in through.stderr.splitlines() if 'File "' in line]
    plain_lines = [line for line in plain.stderr.splitlines() if 'File "' in line]
    assert user_lines == plain_lines
    assert "autopersist" not in "\n".join(user_lines)
    assert through.counts()["failed"] == 1
    # the call that finished before the failure stays stored
    assert project.calls_of("boom:ok") == 1


def test_unhashable_argument_runs_plain_and_warns_once(project):
    project.write(
        "gen.py",
        """
        # persist
        def total(items):
            return sum(items)

        print(total(x for x in range(4)), total(x for x in range(5)))
        """,
    )
    result = project.run("gen.py")
    assert result.returncode == 0
    assert result.stdout == "6 10\n"
    assert result.stderr.count("UnhashableArgumentWarning") == 1
    assert "gen:total" in result.stderr and "'items'" in result.stderr


def test_syntax_error_in_marked_module_is_one_clear_line(project):
    project.write("broken.py", "# persist\ndef f(:\n    return 1\n")
    result = project.run("broken.py")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "broken.py:2:" in result.stderr
    assert "syntax error" in result.stderr


def test_missing_script_is_a_clear_error(project):
    result = project.run("nope.py")
    assert result.returncode == 1
    assert "no such script: nope.py" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_without_a_target_is_a_usage_error(project):
    result = project.cli("run")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_store_option_and_env_choose_the_store(project, tmp_path):
    project.write("s.py", "# persist\ndef f():\n    return 1\nprint(f())\n")
    result = project.cli("run", "--store", "elsewhere", "s.py")
    assert result.returncode == 0
    assert (project.root / "elsewhere" / "store.db").exists()
    env = project.env(AUTOPERSIST_STORE=str(tmp_path / "envstore"))
    assert project.run("s.py", env=env).returncode == 0
    assert (tmp_path / "envstore" / "store.db").exists()


def test_runs_are_recorded(project):
    project.write("r.py", "# persist\ndef f(x):\n    return x\nprint(f(1))\n")
    project.run("r.py", "arg")
    with project.db() as conn:
        row = conn.execute(
            "SELECT script, argv, status, python, calls, computed FROM runs"
        ).fetchone()
    assert row[0] == "r.py"
    assert row[1] == '["arg"]'
    assert row[2] == 0
    assert row[3].startswith("3.")
    assert row[4:] == (1, 1)
