"""The query commands: end to end as a user runs them (``python -m autopersist``),
and in process (click's runner) for the details of the output."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import datetime

import pandas as pd
import pytest
from click.testing import CliRunner

import autopersist
from autopersist._cli_query import _csv_text, _jsonable, _size
from autopersist._frame import Values
from autopersist._table import render_table, truncate
from autopersist.cli import main
from tests.conftest import Project

PIPELINE = """
    # persist
    def generate(seed):
        return [seed + i * 0.25 for i in range(20)]

    def train(data, k):
        return {"w": sum(data) / k, "name": f"model-{k}"}

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
    project = Project(tmp_path_factory.mktemp("cli"))
    project.write("pipeline.py", PIPELINE)
    assert project.run("pipeline.py").returncode == 0
    return project


def _ok(project: Project, *args: str) -> str:
    """``python -m autopersist ARGS`` in the project; its stdout."""
    result = project.cli(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _invoke(project: Project, *args: str, code: int = 0) -> str:
    """The same command in this process (click's runner); its output."""
    result = CliRunner().invoke(main, ["--store", str(project.store), *args])
    assert result.exit_code == code, result.output
    return result.output


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.subprocess
def test_calls_json_round_trips(pipeline):
    records = json.loads(_ok(pipeline, "calls", "train", "--format", "json"))
    with autopersist.Store(pipeline.store) as store:
        table = store.calls("train")
    assert [r["k"] for r in records] == [1, 2, 3]
    assert [r["output"] for r in records] == table["output"].tolist()
    assert [r["data"] for r in records] == table["data"].tolist()
    assert [r["call_id"] for r in records] == table["call_id"].tolist()
    started = [datetime.fromisoformat(r["started"]) for r in records]
    assert started == [t.to_pydatetime() for t in table["started"]]
    assert [r["duration"] for r in records] == table["duration"].tolist()


@pytest.mark.subprocess
def test_frame_csv_round_trips(pipeline):
    text = _ok(pipeline, "frame", "train", "--all", "--format", "csv")
    table = pd.read_csv(io.StringIO(text))
    with autopersist.Store(pipeline.store) as store:
        expected = store.frame("train").expand_all().df()
    assert list(table.columns) == list(expected.columns)
    assert len(table) == 3
    assert table["k"].tolist() == [1, 2, 3]
    assert table["evaluate"].isna().tolist() == [False, True, False]
    assert table["generate"].nunique() == 1
    assert table["train"].tolist() == expected["train"].tolist()
    assert [json.loads(t) for t in table["train_output"]] == expected[
        "train_output"
    ].tolist()
    assert table["evaluate_output"][[0, 2]].tolist() == (
        expected["evaluate_output"][[0, 2]].tolist()
    )


@pytest.mark.subprocess
def test_user_errors_are_one_line_and_exit_1(pipeline, tmp_path):
    result = pipeline.cli("calls", "trian")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: no op named 'trian' in the store")
    assert "known ops: evaluate, generate, train" in result.stderr
    assert "Traceback" not in result.stderr
    result = pipeline.cli("--store", str(tmp_path / "none"), "frame", "train")
    assert result.returncode == 1
    assert "no autopersist store at" in result.stderr


@pytest.mark.subprocess
def test_output_into_a_closed_pipe_is_not_an_error(project):
    """``autopersist frame f | head -1``: the reader leaving early is no bug."""
    project.write(
        "many.py",
        "# persist\ndef f(x):  # persist: always\n    return x + 1\n"
        "for i in range(3000):\n    f(i)\n",
    )
    assert project.run("many.py").returncode == 0
    for command in (["frame", "f"], ["calls", "f"]):
        reader = subprocess.Popen(
            [sys.executable, "-m", "autopersist", *command],
            cwd=project.root,
            env=project.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert reader.stdout is not None and reader.stderr is not None
        reader.stdout.readline()
        reader.stdout.close()  # as head does after its lines
        err = reader.stderr.read().decode()
        assert reader.wait(timeout=60) == 0, err
        assert err == ""


@pytest.mark.subprocess
def test_forget_gc_and_rerun(project):
    project.write("pipeline.py", PIPELINE)
    assert project.run("pipeline.py").returncode == 0
    forgot = project.cli("forget", "train", "--where", "k < 3", "--dependents")
    assert forgot.returncode == 0, forgot.stderr
    assert (
        forgot.stdout.strip()
        == "Forgot 3 calls: 2 of train, 1 of evaluate (dependents)."
    )
    collected = project.cli("gc", "--store", str(project.store))
    assert collected.returncode == 0, collected.stderr
    assert collected.stdout.startswith("Deleted 5 values, 0 blob files: ")
    assert collected.stdout.rstrip().endswith("freed.")
    rerun = project.run("pipeline.py")
    assert rerun.counts() == {"calls": 6, "reused": 3, "computed": 3, "failed": 0}


# -- output details (in process) ----------------------------------------------------------------


def test_calls_csv_round_trips(pipeline):
    table = pd.read_csv(
        io.StringIO(_invoke(pipeline, "calls", "train", "--format", "csv"))
    )
    with autopersist.Store(pipeline.store) as store:
        expected = store.calls("train")
    assert list(table.columns) == list(expected.columns)
    assert table["k"].tolist() == [1, 2, 3]
    assert [json.loads(o) for o in table["output"]] == expected["output"].tolist()
    assert table["call_id"].tolist() == expected["call_id"].tolist()
    assert table["duration"].tolist() == expected["duration"].tolist()


def test_frame_json_has_empty_cells_as_null(pipeline):
    records = json.loads(
        _invoke(pipeline, "frame", "train", "--all", "--format", "json")
    )
    assert [r["k"] for r in records] == [1, 2, 3]
    assert records[1]["evaluate"] is None
    assert records[1]["evaluate_output"] is None
    assert len({r["generate"] for r in records}) == 1
    assert json.loads(
        _invoke(pipeline, "calls", "train", "--format", "json", "--all-versions")
    )


def test_tables_are_readable(pipeline):
    with autopersist.Store(pipeline.store) as store:
        call_ids = store.calls("train")["call_id"].tolist()
    lines = _invoke(pipeline, "calls", "train").splitlines()
    assert lines[0].split()[:3] == ["data", "k", "output"]
    assert set(lines[1]) <= {"-", " "}
    assert len(lines) == 5
    assert all(len(line) < 200 for line in lines)
    assert "..." in lines[2]  # the long list of data is cut
    assert call_ids[0][:10] in lines[2].split()
    assert call_ids[0] not in lines[2]
    frame = _invoke(pipeline, "frame", "train", "--back")
    assert frame.startswith("ComputationFrame: 2 ops (4 calls), 4 variables\n")
    assert "train_output = train(data=data, k=k)" in frame
    runs = _invoke(pipeline, "runs")
    assert runs.splitlines()[0].split()[:4] == ["run_id", "started", "script", "argv"]
    assert "pipeline.py" in runs
    ops = _invoke(pipeline, "ops").splitlines()
    assert ops[0].split() == [
        "op",
        "module",
        "version",
        "versions",
        "calls",
        "current_calls",
    ]
    assert any(
        line.split()[0] == "evaluate" and line.split()[-2:] == ["2", "2"]
        for line in ops
    )


def test_draw(pipeline, monkeypatch, tmp_path):
    dot = _invoke(pipeline, "draw", "evaluate")
    assert dot.startswith("digraph computation_frame {")
    assert '"generate"' in dot  # draw expands everything by default
    target = tmp_path / "frame.dot"
    assert _invoke(pipeline, "draw", "train", "--back", "-o", str(target)).strip() == (
        f"Wrote {target}."
    )
    assert target.read_text().startswith("digraph")
    monkeypatch.setattr("shutil.which", lambda name: None)
    out = _invoke(pipeline, "draw", "train", "-o", str(tmp_path / "frame.svg"))
    assert "Graphviz 'dot' is not installed: wrote DOT text to" in out


def test_bad_input_in_process(pipeline):
    assert "cannot parse the expression 'k <'" in _invoke(
        pipeline, "forget", "train", "--where", "k <", code=1
    )
    assert "Invalid value for '--depth'" in _invoke(
        pipeline, "frame", "train", "--depth", "-1", code=2
    )
    assert _invoke(pipeline, "forget", "train", "--where", "k > 5").strip() == (
        "No stored calls of pipeline:train matched; nothing to forget."
    )
    assert _invoke(
        pipeline, "forget", "train", "--dependents", "--dry-run"
    ).strip() == ("Would forget 5 calls: 3 of train, 2 of evaluate (dependents).")
    assert "No current calls of pipeline:train." not in _invoke(
        pipeline, "calls", "train"
    )


# -- unit tests of the formatting -------------------------------------------------------------


def test_render_table_aligns_and_cuts():
    text = render_table(["name", "n"], [["a" * 50, "3"], ["b", "12"]], max_cell=10)
    assert text.splitlines() == [
        "name        n",
        "----------  --",
        "aaaaaaa...   3",
        "b           12",
    ]
    assert truncate("a\nb") == "a\\nb"


def test_cell_conversions():
    assert _jsonable(Values([1, (2, 3)])) == [1, [2, 3]]
    assert _jsonable({"a": 1.5}) == {"a": 1.5}
    assert _jsonable({1: 2}) == "{1: 2}"
    assert _jsonable(float("nan")) is None
    assert _jsonable(float("inf")) == "inf"
    assert _jsonable(b"x") == "b'x'"
    assert _csv_text(0.1) == "0.1"
    assert _csv_text([1, "a"]) == '[1, "a"]'
    assert _csv_text(None) == ""
    assert _size(100) == "100 bytes"
    assert _size(2048) == "2.0 KiB (2048 bytes)"
