"""Bad input: one clear sentence naming the thing and the fix, exit status 1 (2 for
usage), no traceback unless ``AUTOPERSIST_DEBUG=1``, and the store's bytes exactly
as they were (every file under the store path is hashed before and after)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from autopersist._schema import SCHEMA_VERSION
from tests._helpers import REPO, tree_digest
from tests.conftest import Project

pytestmark = pytest.mark.subprocess

GOOD = "# persist\ndef f(x):\n    return x * 2\nprint(f(21))\n"


@dataclass
class Case:
    """One row of the table: prepare the project, run, expect."""

    id: str
    args: tuple[str, ...]
    status: int
    message: str
    #: Prepares the project; returns the store path whose bytes must not change.
    setup: Callable[[object], Path]
    env: dict[str, str] | None = None


_TEMPLATE: list[Path] = []  # a store made once per module by one real run


def _good_store(project) -> Path:
    project.write("good.py", GOOD)
    shutil.copytree(_TEMPLATE[0], project.store)
    return project.store


@pytest.fixture(scope="module", autouse=True)
def _template_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("template")
    maker = Project(root)
    maker.write("good.py", GOOD)
    assert maker.run("good.py").returncode == 0
    _TEMPLATE[:] = [maker.store]


def _corrupt(project) -> Path:
    _good_store(project)
    (project.store / "store.db").write_bytes(os.urandom(40_000))
    return project.store


def _newer(project) -> Path:
    _good_store(project)
    # As a newer autopersist would leave it: written, then closed.
    conn = sqlite3.connect(project.store / "store.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    return project.store


def _store_is_a_file(project) -> Path:
    project.write("good.py", GOOD)
    path = project.root / "afile"
    path.write_text("not a store\n")
    return path


def _unreadable(project) -> Path:
    _good_store(project)
    project.store.chmod(0)
    if os.access(project.store, os.R_OK):
        project.store.chmod(0o755)
        pytest.skip("running as root: permission bits do not stop reads")
    return project.store


def _syntax_error_imported(project) -> Path:
    _good_store(project)
    project.write("broken.py", "# persist\ndef g(:\n    return 1\n")
    project.write("main.py", "# persist\nimport broken\nprint(broken.g())\n")
    return project.store


def _syntax_error_main(project) -> Path:
    _good_store(project)
    project.write("main.py", "# persist\ndef f(x):\n    return x +\n")
    return project.store


def _misplaced_future_import(project) -> Path:
    """A syntax error only the compiler finds, not the parser."""
    _good_store(project)
    project.write(
        "main.py",
        "# persist\ndef f(x):\n    return x\n\nfrom __future__ import annotations\n",
    )
    return project.store


def _hook_fails(project) -> Path:
    _good_store(project)
    shim = project.root / "boom"
    shim.mkdir()
    # Break the rewriter itself, as a bug in autopersist would.
    (shim / "sitecustomize.py").write_text(
        "import autopersist._transform as t\n"
        "def boom(*args, **kwargs):\n"
        "    raise RuntimeError('simulated rewriter bug')\n"
        "t.rewrite_source = t.instrumented_code = boom\n"
    )
    project.write("lib.py", "# persist\ndef g(x):\n    return x\n")
    project.write("main.py", "import lib\nprint(lib.g(1))\n")
    return project.store


def _just_good(project) -> Path:
    return _good_store(project)


CASES = [
    Case(
        "corrupt-store",
        ("run", "good.py"),
        1,
        "store.db is not an autopersist store (not an SQLite database); move it aside",
        _corrupt,
    ),
    Case(
        "newer-store",
        ("run", "good.py"),
        1,
        "was written by a newer autopersist (store format 99, this version reads "
        f"{SCHEMA_VERSION}); "
        "upgrade autopersist or use another --store.",
        _newer,
    ),
    Case(
        "newer-store-query",
        ("runs",),
        1,
        "was written by a newer autopersist (store format 99",
        _newer,
    ),
    Case(
        "store-is-a-file",
        ("run", "--store", "afile", "good.py"),
        1,
        "afile is a file, not a directory; pass --store with a directory path",
        _store_is_a_file,
    ),
    Case(
        "unreadable-store",
        ("run", "good.py"),
        1,
        "is not readable; fix its permissions",
        _unreadable,
    ),
    Case(
        "missing-script",
        ("run", "nope.py"),
        1,
        "no such script: nope.py; check the path",
        _just_good,
    ),
    Case(
        "unknown-run-option",
        ("run", "--bogus", "good.py"),
        2,
        "No such option '--bogus'",
        _just_good,
    ),
    Case(
        "unknown-group-option",
        ("--bogus", "run", "good.py"),
        2,
        "No such option '--bogus'",
        _just_good,
    ),
    Case(
        "missing-target", ("run",), 2, "give a script to run, or -m MODULE.", _just_good
    ),
    Case(
        "store-without-value",
        ("run", "--store"),
        2,
        "Option '--store' requires an argument.",
        _just_good,
    ),
    Case(
        "missing-module",
        ("run", "-m", "no_such_module_here"),
        1,
        "no module named 'no_such_module_here'",
        _just_good,
    ),
    Case(
        "syntax-error-imported",
        ("run", "main.py"),
        1,
        "broken.py:2:7: syntax error in a module autopersist instruments",
        _syntax_error_imported,
    ),
    Case(
        "syntax-error-main",
        ("run", "main.py"),
        1,
        "main.py:3:",
        _syntax_error_main,
    ),
    Case(
        "misplaced-future-import",
        ("run", "main.py"),
        1,
        "main.py:5:1: syntax error in a module autopersist instruments: from "
        "__future__ imports must occur at the beginning of the file.",
        _misplaced_future_import,
    ),
    Case(
        "import-hook-bug",
        ("run", "main.py"),
        1,
        "autopersist failed to instrument {root}/main.py (RuntimeError: simulated "
        "rewriter bug); this is a bug in autopersist: please report it, and set "
        "AUTOPERSIST_DISABLE=1",
        _hook_fails,
        env={"PYTHONPATH": "{root}/boom:" + str(REPO)},
    ),
]


def _env(project, case: Case, **extra: str) -> dict[str, str]:
    values = {k: v.format(root=project.root) for k, v in (case.env or {}).items()}
    return project.env(**values, **extra)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_clear_line_and_leaves_the_store_alone(project, case):
    store = case.setup(project)
    before = tree_digest(store)
    try:
        result = project.cli(*case.args, env=_env(project, case))
    finally:
        if store.is_dir():
            store.chmod(0o755)
    assert result.returncode == case.status, result.stderr
    assert "Traceback" not in result.stderr
    assert case.message.format(root=project.root) in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    assert tree_digest(store) == before


@pytest.mark.parametrize("case_id", ["newer-store", "import-hook-bug"])
def test_debug_shows_the_traceback(project, case_id):
    case = next(c for c in CASES if c.id == case_id)
    case.setup(project)
    result = project.cli(*case.args, env=_env(project, case, AUTOPERSIST_DEBUG="1"))
    assert result.returncode == 1
    assert "Traceback" in result.stderr


def test_disable_runs_the_script_as_plain_python(project):
    project.write(
        "p.py",
        "# persist\nimport sys\ndef f(x):\n    return x * 2\n"
        "print(f(21), sys.argv[1:], __name__)\nsys.exit(4)\n",
    )
    plain = project.python("p.py", "a")
    disabled = project.cli("run", "p.py", "a", env=project.env(AUTOPERSIST_DISABLE="1"))
    assert (disabled.returncode, disabled.stdout) == (plain.returncode, plain.stdout)
    assert disabled.stdout == "42 ['a'] __main__\n"
    assert disabled.stderr == ""  # no summary line either
    assert not project.store.exists()


def test_disable_keeps_plain_tracebacks(project):
    project.write("e.py", "# persist\ndef f(x):\n    return 1 / x\nf(0)\n")
    result = project.cli("run", "e.py", env=project.env(AUTOPERSIST_DISABLE="1"))
    assert result.returncode == 1
    assert 'e.py", line 3, in f' in result.stderr
    assert "ZeroDivisionError" in result.stderr
