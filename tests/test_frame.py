"""``ComputationFrame``: real runs through the CLI, and synthetic stores (rows written
in the runtime's shape) for shapes of provenance a test script cannot easily make."""

from __future__ import annotations

import itertools
import json
import sqlite3
import uuid
from pathlib import Path

import networkx as nx
import pytest

import autopersist
from autopersist._codec import dumps
from autopersist._frame import ComputationFrame, Values
from autopersist._hashing import content_hash
from autopersist._storage import Storage
from autopersist.errors import QueryError
from tests.conftest import Project

PIPELINE = """
    # persist
    def generate(seed):
        return [seed + i * 0.25 for i in range(20)]

    def train(data, k):
        return {"w": sum(data) / k}

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

SHAPES = """
    # persist
    def split(n):
        return [n * 100 + i + 0.5 for i in range(n)]

    def square(x):
        return x * x

    def inner(x):
        return x * 1.5

    def outer(n):
        return [inner(n + 0.25), inner(n + 0.5)]

    def consume(v):
        return v + 0.125

    def step(x):
        return x * 2.0 + 0.5

    def main():
        for n in (2, 3):
            for x in split(n):
                square(x)
        values = outer(3)
        consume(values[0])
        x = 1.25
        for _ in range(3):
            x = step(x)

    main()
    """

COINCIDENCES = """
    # persist
    def inc(x):
        return x + 1

    def scale(x):
        return x * 2.5

    def label(name):
        return name.upper()

    def pick():
        return 3

    def use(k):
        return k * 10

    def findings(n):
        return [i for i in range(n) if i > 5]

    def size(items):
        return len(items)

    def count(items):
        return len(items)

    def main():
        for i in range(1000, 1004):
            inc(i)  # i equals what the previous inc returned, by coincidence
        scale(4.0)
        scale(10.0)  # equal to what scale(4.0) returned, not it
        x = 5000
        for _ in range(2):
            x = inc(x)  # the very object the previous inc returned
        name = label("xy")
        label(name)
        use(pick())  # 3: one object that Python shares for every 3, never linked
        found = findings(3)  # []
        size([])  # an equal empty list, written here
        count(found)  # the very list findings returned

    main()
    """

ENSEMBLE = """
    # persist
    def model(k):
        return {"k": k * 1.5, "w": k * 2.5}

    def ensemble(models):
        return sum(m["w"] for m in models)

    ensemble([model(k) for k in (1, 2, 3)])
    """


def _run(factory: pytest.TempPathFactory, name: str, source: str) -> Project:
    project = Project(factory.mktemp(name))
    project.write(f"{name}.py", source)
    result = project.run(f"{name}.py")
    assert result.returncode == 0, result.stderr
    return project


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    project = _run(tmp_path_factory, "pipeline", PIPELINE)
    with autopersist.Store(project.store) as store:
        yield store


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    project = _run(tmp_path_factory, "shapes", SHAPES)
    with autopersist.Store(project.store) as store:
        yield store


# -- the pipeline -------------------------------------------------------------------------


def test_single_op_frame(pipeline):
    frame = pipeline.frame("train")
    assert frame.ops == ["train"]
    assert frame.variables == ["data", "k", "train_output"]
    table = frame.df()
    assert list(table.columns) == ["data", "k", "train", "train_output"]
    assert table["k"].tolist() == [1, 2, 3]
    assert table["train"].tolist() == pipeline.calls("train")["call_id"].tolist()


def test_expand_all_links_each_train_call_to_generate_and_evaluate(pipeline):
    frame = pipeline.frame("train").expand_all()
    assert frame.ops == ["generate", "train", "evaluate"]
    table = frame.df()
    assert len(table) == 3
    assert list(table.columns) == [
        "seed", "generate", "data", "k", "train", "train_output", "evaluate",
        "evaluate_output",
    ]  # fmt: skip
    assert table["k"].tolist() == [1, 2, 3]
    assert table["generate"].nunique() == 1
    assert table["generate"][0] == pipeline.calls("generate")["call_id"][0]
    evaluations = pipeline.calls("evaluate")
    assert table["evaluate"][0] == evaluations["call_id"][0]
    assert table["evaluate"][1] is None  # k=2 was never evaluated
    assert table["evaluate_output"][1] is None
    assert table["evaluate"][2] == evaluations["call_id"][1]
    assert table["evaluate_output"][2] == evaluations["output"][1]
    assert table["train_output"].tolist() == pipeline.calls("train")["output"].tolist()


def test_expand_back_and_forward_separately(pipeline):
    back = pipeline.frame("evaluate").expand_back()
    assert back.ops == ["generate", "train", "evaluate"]
    assert len(back.df()) == 2
    forward = pipeline.frame("generate").expand_forward()
    assert forward.ops == ["generate", "train", "evaluate"]
    table = forward.df()
    assert len(table) == 3  # one trace per train call, evaluated or not
    assert table["evaluate"].isna().sum() == 1


def test_depth_limits_expansion(pipeline):
    one = pipeline.frame("evaluate").expand_back(depth=1)
    assert one.ops == ["generate", "train", "evaluate"]  # both inputs in one step
    only = pipeline.frame("evaluate").expand_back("model", depth=1)
    assert only.ops == ["train", "evaluate"]
    assert pipeline.frame("evaluate").expand_back(depth=0).ops == ["evaluate"]
    with pytest.raises(QueryError, match="depth must be"):
        pipeline.frame("evaluate").expand_back(depth=-1)


def test_repr_prints_the_graph_with_counts(pipeline):
    text = repr(pipeline.frame("train").expand_all())
    lines = text.splitlines()
    assert lines[0] == "ComputationFrame: 3 ops (6 calls), 5 variables"
    assert lines[1].split("#")[0].strip() == "data = generate(seed=seed)"
    assert lines[1].endswith("# 1 call")
    assert lines[2].split("#")[0].strip() == "train_output = train(data=data, k=k)"
    assert lines[3].split("#")[0].strip() == (
        "evaluate_output = evaluate(model=train_output, data=data)"
    )
    assert lines[3].endswith("# 2 calls")
    assert lines[4].startswith("  values: seed 1, data 1, k 3")


def test_graph_is_networkx_with_calls_and_values(pipeline):
    frame = pipeline.frame("train").expand_all()
    graph = frame.graph
    assert isinstance(graph, nx.DiGraph)
    assert nx.is_directed_acyclic_graph(graph)
    assert graph.nodes["train"]["kind"] == "op"
    assert graph.nodes["train"]["op_id"] == "pipeline:train"
    assert len(graph.nodes["train"]["calls"]) == 3
    assert graph.edges["k", "train"]["label"] == "k"
    assert graph.edges["train", "train_output"]["label"] == "output"
    assert graph.edges["train_output", "evaluate"]["label"] == "model"
    assert sorted(frame.values("k")) == [1, 2, 3]
    assert frame.call_ids("evaluate") == frozenset(
        pipeline.calls("evaluate")["call_id"]
    )
    with pytest.raises(
        QueryError, match="no op node named 'nope'; its op nodes: generate"
    ):
        frame.call_ids("nope")


def test_filter_select_union_intersection(pipeline):
    frame = pipeline.frame("train").expand_all()
    assert frame.where("k < 3").df()["k"].tolist() == [1, 2]
    table = frame.df()
    assert frame[table["k"] == 3].df()["k"].tolist() == [3]
    assert frame[[True, False, True]].df()["k"].tolist() == [1, 3]
    assert frame.where("evaluate_output is None").df()["k"].tolist() == [2]
    both = frame.where("k == 1") | frame.where("k == 3")
    assert both.df()["k"].tolist() == [1, 3]
    middle = frame.where("k < 3") & frame.where("k > 1")
    assert middle.df()["k"].tolist() == [2]
    picked = frame[["k", "train", "train_output"]]
    assert list(picked.df().columns) == ["k", "train", "train_output"]
    assert frame["k"].variables == ["k"]
    with pytest.raises(QueryError, match="one True/False per row"):
        frame[[True]]
    with pytest.raises(QueryError, match="not a column of the frame"):
        frame.where("kk > 1")


def test_frame_from_a_value(pipeline):
    seed_frame = pipeline.frame(7)
    assert seed_frame.variables == ["value"]
    assert seed_frame.df()["value"].tolist() == [7]
    forward = seed_frame.expand_forward(depth=1)
    assert forward.ops == ["generate"]
    model_id = pipeline.calls("train", values=False)["output"][0]
    back = pipeline.frame(model_id).expand_back()
    table = back.df()
    assert table["k"].tolist() == [1]
    assert "generate" in back.ops
    with pytest.raises(QueryError, match="holds no value equal to 'nope'"):
        pipeline.frame(value="nope")


def test_draw_writes_dot(pipeline, tmp_path, monkeypatch):
    frame = pipeline.frame("train").expand_all()
    dot = frame.to_dot()
    assert dot.startswith("digraph computation_frame {")
    assert '"train" -> "train_output" [label="output"];' in dot
    assert 'label="train\\n3 calls"' in dot
    written = frame.draw(tmp_path / "frame.dot")
    assert written.read_text() == dot
    monkeypatch.setattr("shutil.which", lambda name: None)
    fallback = frame.draw(tmp_path / "frame.svg")
    assert fallback == tmp_path / "frame.dot"


# -- provenance shapes from a real run ---------------------------------------------------------


def test_square_links_to_the_split_call_whose_list_held_x(shapes):
    frame = shapes.frame("square").expand_back()
    assert frame.ops == ["split", "square"]
    assert frame.graph.edges["split", "x"]["label"] == "output[*]"
    table = frame.df()
    assert len(table) == 5
    splits = shapes.calls("split").set_index("n")["call_id"]
    for x, split_call in zip(table["x"], table["split"], strict=True):
        assert split_call == splits[int(x // 100)]
    assert table["n"].tolist() == [2, 2, 3, 3, 3]


def test_nested_calls_are_producers_like_any_other(shapes):
    frame = shapes.frame("consume").expand_back()
    assert frame.ops == ["inner", "consume"]
    table = frame.df()
    assert table["v"].tolist() == [4.875]
    parents = shapes.frame("outer")
    assert parents.df()["n"].tolist() == [3]


def test_equal_numbers_strings_and_empty_lists_link_only_when_passed_along(
    tmp_path_factory,
):
    project = _run(tmp_path_factory, "coincidences", COINCIDENCES)
    conn = sqlite3.connect(project.store / "store.db")
    try:
        links = conn.execute(
            "SELECT c.op_id, l.name, s.op_id, v.preview FROM call_links l "
            "JOIN calls c ON c.call_id = l.call_id "
            "JOIN calls s ON s.call_id = l.source_call_id "
            "JOIN call_values e ON e.call_id = l.call_id AND e.name = l.name "
            "JOIN value_rows v ON v.value_id = e.value_id"
        ).fetchall()
    finally:
        conn.close()
    found = {
        (op.split(":")[-1], name, source.split(":")[-1], preview)
        for op, name, source, preview in links
    }
    assert found == {
        ("inc", "x", "inc", "5001"),
        ("label", "name", "label", "'XY'"),
        ("count", "items", "findings", "[]"),
    }
    with autopersist.Store(project.store) as store:
        assert store.frame("scale").expand_back().ops == ["scale"]
        assert store.frame("use").expand_back().ops == ["use"]
        assert store.frame("count").expand_back().ops == ["findings", "count"]


def test_repeated_application_unrolls_without_cycles(shapes):
    frame = shapes.frame("step").expand_back()
    assert nx.is_directed_acyclic_graph(frame.graph)
    assert frame.ops == ["step_2", "step_1", "step"]
    table = frame.df(values=False)
    assert len(table) == 3
    calls = shapes.calls("step")["call_id"].tolist()
    assert table.iloc[0][["step_2", "step_1", "step"]].tolist() == calls


def test_ensemble_over_a_list_of_results_is_one_row(tmp_path_factory):
    project = _run(tmp_path_factory, "ensemble", ENSEMBLE)
    with autopersist.Store(project.store) as store:
        table = store.frame("ensemble").expand_back().df()
        assert len(table) == 1
        assert isinstance(table["model"][0], Values)
        assert len(table["model"][0]) == 3


# -- synthetic stores -------------------------------------------------------------------------


class Synthetic:
    """Writes a store's rows directly, in the shape the runtime writes them."""

    def __init__(self, root: Path) -> None:
        self.store = root / ".autopersist"
        Storage(self.store).close()
        self.conn = sqlite3.connect(self.store / "store.db")
        self.clock = itertools.count(1_000)
        self.conn.execute(
            "INSERT INTO runs (run_id, script, argv, cwd, started, ended, status) "
            "VALUES ('run', 'synthetic.py', '[]', '/', 1000, 9000, 0)"
        )

    def version(self, op_id: str, version: str = "v1", *, seen: float = 1.0) -> None:
        module, _, qualname = op_id.rpartition(":")
        self.conn.execute(
            "INSERT OR IGNORE INTO functions VALUES (?, ?, ?, 'function', 1)",
            (op_id, module, qualname),
        )
        self.conn.execute(
            "INSERT INTO versions VALUES (?, ?, ?, ?, 'run', ?, 'run', ?)",
            (op_id, version, f"def {qualname}(): ...", seen, seen, version),
        )

    def value(self, obj: object) -> str:
        value_id = content_hash(obj)
        data = dumps(obj)
        self.conn.execute(
            "INSERT OR IGNORE INTO value_rows VALUES (?, ?, ?, ?, ?, 0)",
            (value_id, type(obj).__name__, len(data), repr(obj), data),
        )
        return value_id

    def call(
        self,
        op_id: str,
        inputs: dict[str, object],
        output: object,
        *,
        links: tuple[tuple[str, str, str, str], ...] = (),
        version: str = "v1",
        deps: tuple[tuple[str, str], ...] = (),
    ) -> str:
        call_id = uuid.uuid4().hex
        items = sorted([(f"f:{op_id}", version), *deps])
        deps_json = json.dumps(items)
        deps_id = content_hash(deps_json)
        self.conn.execute(
            "INSERT OR IGNORE INTO deps VALUES (?, ?)", (deps_id, deps_json)
        )
        output_id = self.value(output)
        self.conn.execute(
            "INSERT INTO calls VALUES "
            "(?, ?, ?, ?, ?, ?, 'ok', 'run', ?, 0.001, NULL, NULL)",
            (
                call_id,
                op_id,
                version,
                uuid.uuid4().hex,
                deps_id,
                output_id,
                next(self.clock),
            ),
        )
        for name, obj in inputs.items():
            self.conn.execute(
                "INSERT INTO call_values VALUES (?, 'in', ?, ?)",
                (call_id, name, self.value(obj)),
            )
        self.conn.execute(
            "INSERT INTO call_values VALUES (?, 'out', 'output', ?)",
            (call_id, output_id),
        )
        for name, path, source, source_path in links:
            self.conn.execute(
                "INSERT INTO call_links VALUES (?, ?, ?, ?, ?)",
                (call_id, name, path, source, source_path),
            )
        return call_id

    def open(self) -> autopersist.Store:
        self.conn.commit()
        self.conn.close()
        return autopersist.Store(self.store)


@pytest.fixture
def synthetic(tmp_path):
    return Synthetic(tmp_path)


def test_ensemble_of_element_links_is_one_row(synthetic):
    for op in ("m:model", "m:ensemble"):
        synthetic.version(op)
    results = [{"k": k * 1.5} for k in (1, 2, 3)]
    models = [
        synthetic.call("m:model", {"k": k}, r)
        for k, r in zip((1, 2, 3), results, strict=True)
    ]
    ensemble = synthetic.call(
        "m:ensemble",
        {"models": results},
        4.5,
        links=tuple(("models", f"[{i}]", m, "") for i, m in enumerate(models)),
    )
    with synthetic.open() as store:
        frame = store.frame("ensemble").expand_back()
        assert frame.graph.edges["model_output", "ensemble"]["label"] == "models[*]"
        assert "models[*]=model_output" in repr(frame)
        table = frame.df()
        assert len(table) == 1
        row = table.iloc[0]
        assert row["model"] == Values(models)
        assert row["k"] == Values([1, 2, 3])
        assert row["model_output"] == Values(results)
        assert row["models"] == results
        assert row["ensemble"] == ensemble
        forward = store.frame("model").expand_forward()
        assert len(forward.df()) == 1


def test_traces_sharing_a_call_are_joined(synthetic):
    for op in ("m:train", "m:evaluate", "m:plot"):
        synthetic.version(op)
    trains = [synthetic.call("m:train", {"k": k}, k * 1.5) for k in (1, 2)]
    for train in trains:
        synthetic.call(
            "m:evaluate", {"model": 1.5}, 0.5, links=(("model", "", train, ""),)
        )
    synthetic.call(
        "m:plot", {"model": 1.5}, "png", links=(("model", "", trains[0], ""),)
    )
    with synthetic.open() as store:
        table = store.frame("train").expand_forward().df()
    assert len(table) == 2
    assert table["plot"].notna().tolist() == [True, False]
    assert table["evaluate"].notna().all()


def test_two_roles_of_one_op_get_two_nodes(synthetic):
    for op in ("m:load", "m:merge"):
        synthetic.version(op)
    a = synthetic.call("m:load", {"name": "a"}, [1.5])
    b = synthetic.call("m:load", {"name": "b"}, [2.5])
    synthetic.call(
        "m:merge",
        {"left": [1.5], "right": [2.5]},
        [1.5, 2.5],
        links=(("left", "", a, ""), ("right", "", b, "")),
    )
    with synthetic.open() as store:
        frame = store.frame("merge").expand_back()
        assert frame.ops == ["load", "load_1", "merge"]
        assert "left = load(name=name)" in repr(frame)
        assert "right = load_1(name=load_1_name)" in repr(frame)
        table = frame.df()
    assert len(table) == 1
    assert (table["load"][0], table["load_1"][0]) == (a, b)
    assert (table["name"][0], table["load_1_name"][0]) == ("a", "b")


def test_one_call_shared_by_two_consumers_is_one_node(pipeline):
    # evaluate reads the same generate call as train: one node, one variable
    frame = pipeline.frame("evaluate").expand_all()
    assert frame.ops == ["generate", "train", "evaluate"]
    assert frame.graph.has_edge("data", "train")
    assert frame.graph.has_edge("data", "evaluate")


def test_current_versions_follow_last_seen_accept_and_globals(synthetic):
    synthetic.version("m:f", "v1", seen=1.0)
    synthetic.version("m:f", "v2", seen=2.0)
    synthetic.version("m:g", "g1", seen=1.0)
    old = synthetic.call("m:f", {"x": 1}, 1.5, version="v1")
    new = synthetic.call("m:f", {"x": 2}, 2.5, version="v2")
    synthetic.call("m:g", {"x": 1}, 0.5, version="g1", deps=(("g:m:K", "k1"),))
    newest_g = synthetic.call(
        "m:g", {"x": 2}, 0.5, version="g1", deps=(("g:m:K", "k2"),)
    )
    synthetic.conn.commit()
    with synthetic.open() as store:
        assert store.calls("f")["call_id"].tolist() == [new]
        assert store.calls("f", all_versions=True)["current"].tolist() == [False, True]
        assert store.calls("g")["call_id"].tolist() == [newest_g]
        assert store.frame("f").call_ids("f") == {new}
        assert store.frame("f", all_versions=True).call_ids("f") == {old, new}
        table = store.frame("f", all_versions=True).df()
        assert table["f_version"].tolist() == ["v1", "v2"]
        assert store.current_version("f") == "v2"
    conn = sqlite3.connect(synthetic.store / "store.db")
    conn.execute("INSERT INTO accepted VALUES ('m:f', 'v1', 'v2', 0, NULL)")
    conn.commit()
    conn.close()
    with autopersist.Store(synthetic.store) as store:
        assert store.calls("f")["call_id"].tolist() == [old, new]


def test_links_to_missing_calls_and_unloadable_values(synthetic):
    synthetic.version("m:f")
    kept = synthetic.call("m:f", {"x": 1.5}, 2.5, links=(("x", "", "0" * 32, ""),))
    synthetic.conn.execute("UPDATE value_rows SET data = x'00' WHERE preview = '2.5'")
    with synthetic.open() as store:
        table = store.frame("f").expand_back().df()
        assert table["f"].tolist() == [kept]
        assert "unreadable" in repr(table["f_output"][0])
        assert "unreadable" in repr(store.calls("f")["output"][0])
        with pytest.raises(QueryError, match="cannot be loaded"):
            store.get(store.calls("f", values=False)["output"][0])


def test_empty_frame_has_columns_and_no_rows(synthetic):
    synthetic.version("m:f")
    with synthetic.open() as store:
        frame = store.frame("f")
        table = frame.df()
        assert table.empty
        assert list(table.columns) == ["f", "f_output"]
        assert repr(frame).startswith("ComputationFrame: 1 op (0 calls)")


def test_frames_of_different_stores_do_not_combine(pipeline, synthetic):
    synthetic.version("pipeline:train")
    with synthetic.open() as other, pytest.raises(QueryError, match="different stores"):
        pipeline.frame("train") | other.frame("train")
    with pytest.raises(QueryError, match="only combine a ComputationFrame"):
        pipeline.frame("train") & 1  # type: ignore[operator]
    assert isinstance(pipeline.frame("train"), ComputationFrame)
