"""Processes started by a script run instrumented and memoize into the same store,
under the same run; ``AUTOPERSIST=1 python main.py`` memoizes without
``autopersist run`` (through the start-up hook, installed or from a checkout)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from autopersist._storage import check_consistency
from tests._helpers import REPO, count

pytestmark = pytest.mark.subprocess

LIB = """
# persist
def work(x):
    return x * x + 1
"""

POOL_MAIN = """
import sys
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

from lib import work

if __name__ == "__main__":
    context = mp.get_context(sys.argv[1])
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        print(sum(pool.map(work, range(24))))
"""


def _run_ids(project) -> set[str]:
    with project.db() as conn:
        return {row[0] for row in conn.execute("SELECT DISTINCT run_id FROM calls")}


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_process_pool_second_run_computes_nothing(project, method):
    project.write("lib.py", LIB)
    project.write("main.py", POOL_MAIN)
    first = project.run("main.py", method)
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"{sum(x * x + 1 for x in range(24))}\n"
    # The summary counts the workers' calls too.
    assert first.counts() == {"calls": 24, "reused": 0, "computed": 24, "failed": 0}
    with project.db() as conn:
        [parent_run] = conn.execute("SELECT run_id FROM runs").fetchone()
    assert _run_ids(project) == {parent_run}
    second = project.run("main.py", method)
    assert second.returncode == 0, second.stderr
    assert second.counts() == {"calls": 24, "reused": 24, "computed": 0, "failed": 0}
    assert project.calls_of("lib:work") == 24
    assert check_consistency(project.store) == []


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_running_an_op_of_the_marked_main_script(project, method):
    """``with Pool() as p`` terminates its workers: calls must already be committed."""
    project.write(
        "mainops.py",
        """
        # persist
        import sys
        import multiprocessing as mp

        def work(x):
            return x + 1000

        if __name__ == "__main__":
            with mp.get_context(sys.argv[1]).Pool(2) as pool:
                print(sum(pool.map(work, range(12))))
        """,
    )
    first = project.run("mainops.py", method)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "12066\n"
    assert first.counts()["computed"] == 12
    second = project.run("mainops.py", method)
    assert second.counts()["computed"] == 0
    assert second.counts()["reused"] == 12
    assert project.calls_of("mainops:work") == 12


def test_joblib_loky_workers_memoize(project):
    project.write("lib.py", LIB)
    project.write(
        "jl.py",
        """
        from joblib import Parallel, delayed
        from lib import work

        if __name__ == "__main__":
            print(sum(Parallel(n_jobs=2)(delayed(work)(i) for i in range(10))))
        """,
    )
    first = project.run("jl.py")
    assert first.returncode == 0, first.stderr
    assert first.counts()["computed"] == 10
    second = project.run("jl.py")
    assert second.counts() == {"calls": 10, "reused": 10, "computed": 0, "failed": 0}
    assert check_consistency(project.store) == []


def test_joblib_loky_running_an_op_of_the_marked_main_script(project):
    project.write(
        "jlmain.py",
        """
        # persist
        from joblib import Parallel, delayed

        def sq(x):
            return x * x

        if __name__ == "__main__":
            print(sum(Parallel(n_jobs=2)(delayed(sq)(i) for i in range(10))))
        """,
    )
    result = project.run("jlmain.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "285\n"
    # The workers cannot memoize an op of the main script (its module is not
    # imported there): they run it plain, and the run's own calls are none.
    again = project.run("jlmain.py")
    assert again.stdout == "285\n", again.stderr
    assert check_consistency(project.store) == []


def test_os_fork_children_commit_before_os_exit(project):
    project.write(
        "forks.py",
        """
        # persist
        import os
        import sys

        def f(x):
            return x * 10

        if __name__ == "__main__":
            f(0)
            for n in (1, 2):
                pid = os.fork()
                if pid == 0:
                    for i in range(n * 100, n * 100 + 20):
                        f(i)
                    if n == 1:
                        os._exit(0)  # no atexit, no flush at exit
                    sys.exit(0)  # the inherited atexit handler runs in the child
                os.waitpid(pid, 0)
            print(f(0), f(100))
        """,
    )
    result = project.run("forks.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "0 1000\n"
    assert project.calls_of("forks:f") == 41
    assert count(project.store, "SELECT count(*) FROM runs") == 1
    # The parent's run row counts the children's 40 calls and its own 3.
    assert result.counts()["computed"] == 41
    assert result.counts()["reused"] == 2
    assert check_consistency(project.store) == []


MARKED_MAIN = """
# persist
import sys
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp

from lib import work

def double(x):
    return 2 * x

if __name__ == "__main__":
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        squares = list(pool.map(work, range(6)))
    print(sum(double(s) for s in squares), sys.argv[1:])
    sys.exit(3)
"""


def _stored_counts(project) -> tuple[int, int]:
    with project.db() as conn:
        return conn.execute(
            "SELECT computed, reused FROM runs ORDER BY started DESC LIMIT 1"
        ).fetchone()


def test_autopersist_env_memoizes_python_main_from_a_checkout(project):
    """Without installing: the child-startup directory on PYTHONPATH is the hook."""
    project.write("lib.py", LIB)
    project.write("main.py", MARKED_MAIN)
    shim = REPO / "hooks" / "child-startup"
    env = project.env(AUTOPERSIST="1", PYTHONPATH=f"{shim}:{REPO}")
    first = project.python("main.py", "a", env=env)
    assert first.returncode == 3, first.stderr
    assert first.stdout == "122 ['a']\n"
    assert _stored_counts(project) == (12, 0)  # 6 in workers, 6 in main
    second = project.python("main.py", "a", env=env)
    assert second.stdout == first.stdout and second.returncode == 3
    assert _stored_counts(project) == (0, 12)
    assert project.calls_of("main:double") == 6


@pytest.fixture(scope="module")
def installed_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment where autopersist looks installed: its site-packages
    holds the start-up .pth, and a path file (sorted first) makes the package
    and the test dependencies importable."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True
    )
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = venv / "lib" / version / "site-packages"
    paths = [
        str(REPO),
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
    ]
    (site_packages / "_autopersist_test_paths.pth").write_text("\n".join(paths) + "\n")
    shutil.copy(REPO / "hooks" / "autopersist-startup.pth", site_packages)
    return venv / "bin" / "python"


def test_installed_startup_pth_memoizes_python_main(project, installed_python):
    project.write("lib.py", LIB)
    project.write("main.py", MARKED_MAIN)
    env = project.env(AUTOPERSIST="1")
    env.pop("PYTHONPATH")
    first = project._run([str(installed_python), "main.py", "b"], env, 120)
    assert first.returncode == 3, first.stderr
    assert first.stdout == "122 ['b']\n"
    second = project._run([str(installed_python), "main.py", "b"], env, 120)
    assert second.stdout == first.stdout
    assert _stored_counts(project) == (0, 12)
    # Installed, 'autopersist run' needs no PYTHONPATH shim for its children.
    probe = project._run(
        [
            str(installed_python),
            "-c",
            "import os, autopersist._importhook as h; from autopersist import _config; "
            "h.export_to_children(_config.load_config(), 'r'); "
            "print('child-startup' in os.environ.get('PYTHONPATH', ''))",
        ],
        env,
        60,
    )
    assert probe.stdout == "False\n", probe.stderr


def test_installed_startup_pth_imports_nothing_when_off(project, installed_python):
    # site.py runs the .pth in every Python process of the environment: without
    # AUTOPERSIST it must not import anything the interpreter would not (importing
    # importlib.util pulls in contextlib, collections, functools...: ~3 ms per
    # process start, and modules already imported that a program expects not to be).
    env = project.env()
    env.pop("PYTHONPATH")
    env.pop("AUTOPERSIST", None)
    probe = (
        "import sys; print(sorted(m for m in ('importlib.util', 'contextlib', "
        "'collections', 'autopersist') if m in sys.modules))"
    )
    result = project._run([str(installed_python), "-c", probe], env, 60)
    assert result.stdout == "[]\n", result.stderr
    env["AUTOPERSIST"] = "1"
    result = project._run([str(installed_python), "-c", probe], env, 60)
    assert "'autopersist'" in result.stdout, result.stderr


def test_disable_turns_the_startup_hook_off(project):
    project.write("lib.py", LIB)
    project.write("main.py", MARKED_MAIN)
    shim = REPO / "hooks" / "child-startup"
    env = project.env(
        AUTOPERSIST="1", AUTOPERSIST_DISABLE="1", PYTHONPATH=f"{shim}:{REPO}"
    )
    result = project.python("main.py", env=env)
    assert result.returncode == 3
    assert result.stdout == "122 []\n"
    assert not project.store.exists()


def test_child_startup_chains_to_the_users_sitecustomize(project):
    user = project.root / "usersite"
    user.mkdir()
    (user / "sitecustomize.py").write_text("USER_MARK = 'user sitecustomize ran'\n")
    project.write(
        "probe.py",
        """
        # persist
        import subprocess, sys

        def f(x):
            return x

        f(1)
        code = (
            "import sitecustomize, autopersist._importhook as h; "
            "print(sitecustomize.USER_MARK, h.current_session() is not None)"
        )
        print(subprocess.run([sys.executable, "-c", code], capture_output=True,
                             text=True).stdout, end="")
        """,
    )
    env = project.env(PYTHONPATH=f"{user}:{REPO}")
    result = project.run("probe.py", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "user sitecustomize ran True\n"
