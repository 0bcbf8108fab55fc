"""Benchmark: build and export a ComputationFrame over 100,000 stored calls.

    python benchmarks/frame_export.py [--calls 100000] [--store DIR]

Writes a store with the rows the runtime writes (``calls``, ``call_values``,
``call_links``, ``deps``, ``versions``, ``value_rows``) for a pipeline
``generate(seed) -> train(data, k) -> evaluate(model, data)`` (one fifth of the
calls each for generate, two fifths for train with k in 1, 2, and two fifths for
evaluate), then times, separately and end to end:

* ``Store.frame("train")``, ``.expand_all()``, ``.df()`` (values loaded);
* exporting the dataframe as CSV and JSON with the CLI's writers;
* ``python -m autopersist frame train --all --format csv`` in a subprocess.

For comparison, mandala needs about 1.6 s for a frame over 2,000 calls.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autopersist._cli_query import _emit  # noqa: E402
from autopersist._codec import dumps  # noqa: E402
from autopersist._hashing import content_hash  # noqa: E402
from autopersist._query import Store  # noqa: E402
from autopersist._storage import Storage  # noqa: E402

OPS = ("bench:generate", "bench:train", "bench:evaluate")


class Writer:
    """Rows in the runtime's shape, inserted in bulk."""

    def __init__(self, store: Path) -> None:
        Storage(store).close()  # the schema exactly as a run creates it
        self.conn = sqlite3.connect(store / "store.db")
        self.values: dict[str, tuple[object, ...]] = {}
        self.calls: list[tuple[object, ...]] = []
        self.edges: list[tuple[object, ...]] = []
        self.links: list[tuple[object, ...]] = []
        self.clock = 1_700_000_000.0
        self.deps = {}
        for op in OPS:
            items = [[f"f:{op}", "v1"]]
            data = json.dumps(items, separators=(",", ":"))
            self.deps[op] = content_hash(data)
            self.conn.execute("INSERT INTO deps VALUES (?, ?)", (self.deps[op], data))
            module, _, qualname = op.partition(":")
            self.conn.execute(
                "INSERT INTO functions VALUES (?, ?, ?, 'function', 1)",
                (op, module, qualname),
            )
            self.conn.execute(
                "INSERT INTO versions VALUES (?, 'v1', ?, ?, 'run', ?, 'run', 'v1')",
                (op, f"def {qualname}(): ...", self.clock, self.clock),
            )
        self.conn.execute(
            "INSERT INTO runs (run_id, script, argv, cwd, started, ended, status) "
            "VALUES ('run', 'bench.py', '[]', '/', ?, ?, 0)",
            (self.clock, self.clock + 60),
        )

    def value(self, obj: object) -> str:
        data = dumps(obj)
        value_id = content_hash(obj)
        if value_id not in self.values:
            self.values[value_id] = (
                value_id,
                type(obj).__name__,
                len(data),
                repr(obj)[:200],
                data,
                0.0,
            )
        return value_id

    def call(
        self, op: str, inputs: dict[str, object], output: object, links: dict[str, str]
    ) -> str:
        call_id = uuid.uuid4().hex
        self.clock += 0.001
        output_id = self.value(output)
        self.calls.append(
            (call_id, op, "v1", uuid.uuid4().hex, self.deps[op], output_id, "ok", "run",
             self.clock, 0.0005, None)
        )  # fmt: skip
        for name, obj in inputs.items():
            self.edges.append((call_id, "in", name, self.value(obj)))
        self.edges.append((call_id, "out", "output", output_id))
        for name, source in links.items():
            self.links.append((call_id, name, "", source, ""))
        return call_id

    def commit(self) -> None:
        conn = self.conn
        conn.executemany(
            "INSERT INTO value_rows VALUES (?, ?, ?, ?, ?, ?)", self.values.values()
        )
        conn.executemany(
            "INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            self.calls,
        )
        conn.executemany("INSERT INTO call_values VALUES (?, ?, ?, ?)", self.edges)
        conn.executemany("INSERT INTO call_links VALUES (?, ?, ?, ?, ?)", self.links)
        conn.commit()
        conn.close()


def build(store: Path, calls: int) -> int:
    """A store holding ``calls`` calls (rounded down to a multiple of 5)."""
    writer = Writer(store)
    for seed in range(calls // 5):
        data = [seed + i * 0.25 for i in range(5)]
        generated = writer.call(OPS[0], {"seed": seed}, data, {})
        for k in (1, 2):
            model = {"w": sum(data) / k, "k": float(k)}
            trained = writer.call(
                OPS[1], {"data": data, "k": k}, model, {"data": generated}
            )
            writer.call(
                OPS[2],
                {"model": model, "data": data},
                model["w"] * 0.5,
                {"model": trained, "data": generated},
            )
    writer.commit()
    return len(writer.calls)


def timed(label: str, func, figures: dict[str, tuple[float, float]]):  # type: ignore[no-untyped-def]
    """Run ``func``; record and print its wall-clock and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = func()
    figures[label] = (time.perf_counter() - wall, time.process_time() - cpu)
    shown = figures[label]
    # sys.__stdout__: the exports below run with stdout captured
    print(
        f"  {label:<28} {shown[0]:7.2f} s wall {shown[1]:7.2f} s CPU",
        file=sys.__stdout__,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--store", type=Path, default=None, help="keep the store here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp) / ".autopersist"
        started = time.perf_counter()
        stored = build(store, args.calls)
        print(
            f"built a store with {stored:,} calls in {time.perf_counter() - started:.1f} s"
        )
        print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        figures: dict[str, tuple[float, float]] = {}
        with Store(store) as opened:
            frame = timed(
                "Store.frame('train')", lambda: opened.frame("train"), figures
            )
            frame = timed(".expand_all()", frame.expand_all, figures)
            table = timed(".df() (values loaded)", frame.df, figures)
            with contextlib.redirect_stdout(io.StringIO()):
                timed("export CSV (CLI writer)", lambda: _emit(table, "csv"), figures)
                timed("export JSON (CLI writer)", lambda: _emit(table, "json"), figures)
        wall = sum(f[0] for f in figures.values())
        cpu = sum(f[1] for f in figures.values())
        print(
            f"  {'total: build frame + export':<28} {wall:7.2f} s wall {cpu:7.2f} s CPU"
        )
        print(f"frame: {len(table):,} rows x {len(table.columns)} columns")
        print(repr(frame))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-m", "autopersist", "--store", str(store), "frame",
                   "train", "--all", "--format", "csv"]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, check=True
        )
        elapsed = time.perf_counter() - start
        lines = done.stdout.count("\n") - 1
        print(
            f"CLI 'frame train --all --format csv': {elapsed:.2f} s wall, {lines:,} rows"
        )
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
