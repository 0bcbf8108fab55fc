"""``autopersist.Store``: scripts run through the CLI, then queried through the API."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd
import pytest

import autopersist
from autopersist._query import UnreadableValue, compile_where
from autopersist._storage import check_consistency
from autopersist.errors import QueryError, StorageError
from tests.conftest import REPO, Project

PIPELINE = """
    # persist
    K = 1

    def generate(seed):
        return [seed + i * 0.25 for i in range(20)]

    def train(data, k):
        return {"w": sum(data) * K / k}

    def evaluate(model, data):
        return model["w"] * 0.5 - len(data) * 0.125

    def main():
        data = generate(seed=7)
        for k in (1, 2, 3):
            model = train(data, k)
            if k != 2:
                evaluate(model, data)

    main()
    """


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The three-step pipeline, run once; tests only read it."""
    project = Project(tmp_path_factory.mktemp("pipeline"))
    project.write("pipeline.py", PIPELINE)
    result = project.run("pipeline.py")
    assert result.returncode == 0, result.stderr
    return project


@pytest.fixture
def store(pipeline: Project):
    with autopersist.Store(pipeline.store) as opened:
        yield opened


def test_calls_has_one_row_per_call_with_inputs_and_outputs(store):
    table = store.calls("train")
    assert list(table.columns) == [
        "data", "k", "output", "call_id", "version", "run_id", "started",
        "duration", "status",
    ]  # fmt: skip
    assert table["k"].tolist() == [1, 2, 3]
    data = [7 + i * 0.25 for i in range(20)]
    assert table["output"].tolist() == [{"w": sum(data) / k} for k in (1, 2, 3)]
    assert all(value == data for value in table["data"])
    assert set(table["status"]) == {"ok"}
    assert isinstance(table["started"].dtype, pd.DatetimeTZDtype)
    assert (table["duration"] >= 0).all()
    assert table["version"].str.len().eq(12).all()


def test_calls_accepts_the_full_op_id(store):
    assert store.calls("pipeline:evaluate")["call_id"].tolist() == (
        store.calls("evaluate")["call_id"].tolist()
    )
    assert len(store.calls("evaluate")) == 2


def test_calls_without_values_shows_value_ids(store):
    table = store.calls("train", values=False)
    value_id = table["output"][0]
    assert len(value_id) == 32
    assert store.get(value_id) == store.calls("train")["output"][0]
    assert store.get(value_id[:8]) == store.get(value_id)


def test_runs_ops_and_versions(store):
    runs = store.runs()
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["script"] == "pipeline.py"
    assert (row["calls"], row["computed"], row["status"]) == (6, 6, 0)
    ops = store.ops().set_index("op")
    assert set(ops.index) == {"generate", "train", "evaluate"}
    assert ops.loc["train", "calls"] == 3
    assert ops.loc["train", "current_calls"] == 3
    assert ops.loc["train", "module"] == "pipeline"
    versions = store.versions("train")
    assert len(versions) == 1
    assert bool(versions["current"][0])
    assert versions["calls"][0] == 3
    assert "def train(data, k):" in versions["source"][0]


def test_unknown_op_lists_the_known_ones(store):
    with pytest.raises(QueryError, match=r"no op named 'trian'.*known ops: .*train"):
        store.calls("trian")


def test_get_unknown_value_is_a_query_error(store):
    with pytest.raises(QueryError, match="no value with id 'ffffffff'"):
        store.get("ffffffff")
    with pytest.raises(QueryError, match="too short"):
        store.get("ab")


def test_no_store_is_a_storage_error(tmp_path):
    with pytest.raises(StorageError, match="no autopersist store at"):
        autopersist.Store(tmp_path / "missing")


def test_ambiguous_qualname_lists_the_modules(project):
    project.write("a.py", "# persist\ndef f(x):\n    return x + 0.5\n")
    project.write("b.py", "# persist\ndef f(x):\n    return x + 1.5\n")
    project.write("main.py", "import a, b\na.f(1.25)\nb.f(1.25)\n")
    assert project.run("main.py").returncode == 0
    with autopersist.Store(project.store) as store:
        with pytest.raises(QueryError, match=r"'f' is ambiguous: a:f, b:f"):
            store.calls("f")
        assert store.calls("b:f")["output"].tolist() == [2.75]


def test_constant_change_shows_current_calls_and_all_versions(project):
    path = project.write("pipeline.py", PIPELINE)
    assert project.run("pipeline.py").returncode == 0
    path.write_text(path.read_text().replace("K = 1", "K = 2"))
    second = project.run("pipeline.py")
    assert second.counts() == {"calls": 6, "reused": 1, "computed": 5, "failed": 0}
    with autopersist.Store(project.store) as store:
        current = store.calls("train")
        assert len(current) == 3
        data_sum = sum(7 + i * 0.25 for i in range(20))
        assert current["output"].tolist() == [
            {"w": data_sum * 2 / k} for k in (1, 2, 3)
        ]
        every = store.calls("train", all_versions=True)
        assert len(every) == 6
        assert "version" in every.columns
        assert every["current"].tolist() == [False] * 3 + [True] * 3
        assert len(store.calls("generate")) == 1
        # evaluate does not read K: its old calls are still valid computations
        assert len(store.calls("evaluate")) == 4
        ops = store.ops().set_index("op")
        assert (ops.loc["train", "calls"], ops.loc["train", "current_calls"]) == (6, 3)


def test_forget_dependents_then_rerun_recomputes_exactly_those(project):
    project.write("pipeline.py", PIPELINE)
    assert project.run("pipeline.py").returncode == 0
    with autopersist.Store(project.store) as store:
        preview = store.forget("train", where="k < 3", dependents=True, dry_run=True)
        assert len(preview) == 3
        assert len(store.calls("train")) == 3  # a dry run deletes nothing
        forgotten = store.forget("train", where="k < 3", dependents=True)
        assert sorted(forgotten["op"]) == ["evaluate", "train", "train"]
        assert forgotten["dependent"].sum() == 1
        assert store.calls("train")["k"].tolist() == [3]
        assert len(store.calls("evaluate")) == 1
        freed = store.gc()
        assert freed.values >= 4  # k=1, k=2, two models, one score
        assert freed.bytes_freed > 0
        assert store.gc().values == 0
    rerun = project.run("pipeline.py")
    assert rerun.counts() == {"calls": 6, "reused": 3, "computed": 3, "failed": 0}


def test_gc_keeps_values_while_a_run_is_in_progress(project):
    """An unfinished run whose process is alive may still name any value in calls
    it has not committed: gc deletes none; a run killed long ago blocks nothing."""
    project.write("pipeline.py", PIPELINE)
    assert project.run("pipeline.py").returncode == 0

    def unfinished_run(pid: int) -> None:
        with project.db() as db:
            db.execute(
                "INSERT INTO runs (run_id, started, pid) VALUES (?, ?, ?)",
                (f"run-of-{pid}", time.time(), pid),
            )

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    unfinished_run(os.getpid())  # alive: this test's process
    with autopersist.Store(project.store) as store:
        store.forget("train", where="k < 3")
        assert store.gc().values == 0
    with project.db() as db:
        db.execute("DELETE FROM runs WHERE pid = ?", (os.getpid(),))
    unfinished_run(dead.pid)  # killed: its end was never recorded
    with autopersist.Store(project.store) as store:
        assert store.gc().values >= 2


def test_forget_without_dependents_keeps_consumers(project):
    project.write("pipeline.py", PIPELINE)
    assert project.run("pipeline.py").returncode == 0
    with autopersist.Store(project.store) as store:
        store.forget("train", where="k == 1")
        assert len(store.calls("evaluate")) == 2
        frame = store.frame("evaluate").expand_back().df()
        assert len(frame) == 2
        assert frame["train"].isna().sum() == 1  # its producer is gone
    # no row points at a call that does not exist
    assert check_consistency(project.store) == []
    rerun = project.run("pipeline.py")
    assert rerun.counts()["computed"] == 1


def test_code_change_then_forget_the_old_version(project):
    path = project.write("pipeline.py", PIPELINE)
    assert project.run("pipeline.py").returncode == 0
    path.write_text(path.read_text().replace("* K / k}", "* K / k + 0.5}"))
    assert project.run("pipeline.py").returncode == 0
    with autopersist.Store(project.store) as store:
        every = store.calls("train", all_versions=True)
        assert every["version"].nunique() == 2
        assert len(store.calls("train")) == 3
        assert store.versions("train")["current"].tolist() == [False, True]
        old = store.versions("train")["version"][0]
        assert len(store.forget("train", version=old)) == 3
        assert len(store.calls("train", all_versions=True)) == 3
        with pytest.raises(
            QueryError, match="no stored calls of a version starting with"
        ):
            store.forget("train", version="0000")
        with pytest.raises(QueryError, match="not a column of the calls"):
            store.forget("train", where="kk < 3")
        with pytest.raises(QueryError, match="not allowed"):
            store.forget("train", where="k.__class__")


def test_gc_deletes_blob_files(project):
    project.write(
        "big.py",
        """
        # persist
        def big(n):
            return bytes(range(256)) * n

        big(1000)
        """,
    )
    assert project.run("big.py").returncode == 0
    blobs = [p for p in (project.store / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1
    with autopersist.Store(project.store) as store:
        store.forget("big")
        result = store.gc()
    assert result.blob_files == 1
    assert result.bytes_freed >= 256_000
    assert not blobs[0].exists()


def test_gc_deletes_temporary_blob_files_left_by_a_killed_run(project):
    project.write("one.py", "# persist\ndef f(x):\n    return x\n\nf(1)\n")
    assert project.run("one.py").returncode == 0
    folder = project.store / "blobs" / "ab"
    folder.mkdir(parents=True)
    stale, fresh = folder / ".tmp-killed", folder / ".tmp-writing"
    stale.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y" * 10)
    hours_ago = time.time() - 2 * 3600
    os.utime(stale, (hours_ago, hours_ago))
    with autopersist.Store(project.store) as store:
        result = store.gc()
    assert not stale.exists()
    assert fresh.exists()  # may be a blob another run is writing right now
    assert result.blob_files == 1 and result.bytes_freed == 1000


def test_failed_calls_are_shown_on_request(project):
    project.write(
        "fails.py",
        """
        # persist
        def div(x):
            return 1.5 / x

        div(2.0)
        div(0.0)
        """,
    )
    assert project.run("fails.py").returncode == 1
    with autopersist.Store(project.store) as store:
        assert len(store.calls("div")) == 1
        every = store.calls("div", include_failed=True)
        assert every["status"].tolist() == ["ok", "failed"]
        assert "ZeroDivisionError" in every["error"][1]
        assert every["output"][1] is None


@pytest.mark.subprocess
def test_forget_and_gc_while_a_script_runs(project):
    project.write(
        "slow.py",
        """
        # persist
        import time

        def work(x):
            time.sleep(0.01)
            return x * 1.5

        for _ in range(3):
            for i in range(60):
                work(i + 0.5)
        """,
    )
    assert project.run("slow.py").returncode == 0
    running = subprocess.Popen(
        [sys.executable, "-m", "autopersist", "run", "slow.py"],
        cwd=project.root,
        env=project.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    rounds = 0
    deadline = time.monotonic() + 60
    with autopersist.Store(project.store) as store:
        while (running.poll() is None or rounds < 2) and time.monotonic() < deadline:
            store.forget("work", where=f"x < {10 + rounds * 5}")
            store.gc()
            # another Store in this process must not disturb the first one's locks
            autopersist.Store(project.store).close()
            rounds += 1
    assert running.wait(timeout=120) == 0, (
        running.stderr.read() if running.stderr else ""
    )
    assert check_consistency(project.store) == []
    with autopersist.Store(project.store) as store:
        outputs = store.calls("work")["output"].tolist()
    assert all(not isinstance(value, UnreadableValue) for value in outputs)


# -- unit tests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "row", "expected"),
    [
        ("k < 3", {"k": 2}, True),
        ("k < 3", {"k": 3}, False),
        ("k < 3", {"k": None}, False),  # an empty cell never matches
        ("k in (1, 2) and not output['w'] > 10", {"k": 1, "output": {"w": 4}}, True),
        ("len(data) == 2 or abs(k) > 5", {"data": [1, 2], "k": 0}, True),
        ("output == 'x'", {"output": "x"}, True),
        ("k * 2 + 1 >= 7", {"k": 3}, True),
    ],
)
def test_where_expressions(expr, row, expected):
    assert compile_where(expr, ["k", "data", "output"])(row) is expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("k <", "cannot parse"),
        ("k.real > 1", "Attribute, which is not allowed"),
        ("__import__('os')", "calls something other than"),
        ("(lambda: 1)()", "calls something other than"),
        ("[x for x in k]", "ListComp, which is not allowed"),
        ("x > 1", "names 'x', which is not a column"),
        ("len(k, key=1)", "positional arguments only"),
    ],
)
def test_where_rejects_unsafe_or_unknown(expr, message):
    with pytest.raises(QueryError, match=message):
        compile_where(expr, ["k"])


def test_where_reports_errors_on_filled_cells():
    keep = compile_where("output > 1", ["output"])
    with pytest.raises(QueryError, match="failed on a row"):
        keep({"output": {"a": 1}})


def test_unreadable_value_repr():
    value = UnreadableValue("ab" * 16, "pipeline.Model", "missing from the store")
    assert (
        repr(value)
        == "<unreadable pipeline.Model abababababab: missing from the store>"
    )
    assert value == UnreadableValue("ab" * 16, "x", "y")


@pytest.mark.subprocess
def test_import_autopersist_stays_cheap():
    code = (
        "import sys, autopersist; "
        "print(sorted(m for m in ('pandas', 'networkx', 'sqlite_utils') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"
