"""Per-call cost of a trivial op, new and reused, vs plain Python and joblib.Memory.

    python benchmarks/per_call.py [--sizes 1000 10000 100000] [--joblib-max 10000]

A marked module ``ops.py`` holds ``def inc(x): return x + 1`` with
``# persist: always`` on its def line (else the hot-op guard of PRODUCT.md 3.9
would stop memoizing such a tiny op after a thousand calls); an unmarked
``main.py`` calls it N times with distinct arguments and times the loop itself
(``perf_counter``), so interpreter start-up does not count. Each size runs in a
fresh temp dir: the first ``autopersist run`` makes N new calls, the second reuses
them. joblib.Memory (``Memory(location=tmp, verbose=0).cache(inc)``) and plain
Python run the same loop.

Two figures per case:

* "loop": µs per call inside the timed loop;
* "whole run": (wall time of the N-call process - wall of a 0-call process) / N,
  which adds what happens outside the loop because of the calls: autopersist's
  final commit at exit (its writes are buffered), joblib's nothing.

Growth, two ways. Fresh stores: µs/call of the largest size over the 10k figure
(the issue's target: runs that build a store of 100k calls cost per call what runs
of 10k do). Big stores (``--growth-stores``, default the largest size): 10,000 new
calls (then the same reused) in a store that already holds 100k (or 1M) calls,
of the same op and of another op, against the 10k figures of a fresh store; and,
for comparison, what merging an eighth of that many calls, stored apart, into the
big store costs per merged call (``ATTACH`` and ``INSERT OR IGNORE`` of every
table, commit and checkpoint, with the run's writer settings): the price a small
level of recent calls, merged into the big tables now and then, would pay for
each call it holds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    INC_OPS,
    Child,
    Row,
    ap_args,
    median,
    progress,
    run_child,
    script_main,
    write,
)

MAIN = """\
import json
import sys
import time

import ops

start, n = int(sys.argv[1]), int(sys.argv[2])
inc = getattr(ops, sys.argv[3] if len(sys.argv) > 3 else "inc")
c0 = time.process_time()
t0 = time.perf_counter()
for i in range(start, start + n):
    inc(i)
seconds = time.perf_counter() - t0
cpu = time.process_time() - c0
print("BENCH " + json.dumps({"seconds": seconds, "cpu": cpu}))
"""

JOBLIB_MAIN = """\
import json
import sys
import time

from joblib import Memory

import ops

start, n, location = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
inc = Memory(location=location, verbose=0).cache(ops.inc)
c0 = time.process_time()
t0 = time.perf_counter()
for i in range(start, start + n):
    inc(i)
seconds = time.perf_counter() - t0
cpu = time.process_time() - c0
print("BENCH " + json.dumps({"seconds": seconds, "cpu": cpu}))
"""

MERGE = """\
import json
import sys
import time
from pathlib import Path

from autopersist._storage import DB_NAME, _tune_writer, connect

big, recent = (Path(a) / ".autopersist" / DB_NAME for a in sys.argv[1:3])
t0 = time.perf_counter()
conn = connect(big)
_tune_writer(conn)
conn.execute("ATTACH ? AS recent", (str(recent),))
tables = [
    name
    for (name,) in conn.execute("SELECT name FROM recent.sqlite_master WHERE type = 'table'")
]
conn.execute("BEGIN IMMEDIATE")
for name in tables:
    conn.execute(f"INSERT OR IGNORE INTO main.{name} SELECT * FROM recent.{name}")
conn.execute("COMMIT")
conn.execute("DETACH recent")
conn.close()  # the checkpoint, as at the end of a run
print("BENCH " + json.dumps({"seconds": time.perf_counter() - t0}))
"""

#: A second op beside ``inc`` in ``ops.py``: the big-store rows also make 10k
#: calls of it into a store whose calls are all ``inc``'s.
OTHER_OP = """
def dec(x):  # persist: always
    return x - 1
"""

BENCH = "per-call"


def _setup(directory: str) -> None:
    write(directory, "ops.py", INC_OPS + OTHER_OP)
    write(directory, "main.py", MAIN)
    write(directory, "jl_main.py", JOBLIB_MAIN)


def _us(seconds: float, n: int) -> float:
    return seconds / n * 1e6


def _new_and_reused(
    reps: int, n: int, runs: Callable[[str], tuple[float, Child, Child]]
) -> dict[str, float]:
    """Median µs/call over ``reps`` fresh directories of a first (new calls) and a
    second (reused) run: in the loop, over the whole run, and in CPU time.
    ``runs(directory)`` gives the wall time of a 0-call run and the two runs."""
    figures: dict[str, list[float]] = {
        key: []
        for key in (
            "new_loop",
            "reuse_loop",
            "new_run",
            "reuse_run",
            "new_cpu",
            "reuse_cpu",
        )
    }
    for _ in range(reps):
        with tempfile.TemporaryDirectory(prefix="apbench-") as d:
            _setup(d)
            base, first, second = runs(d)
            for prefix, child in (("new", first), ("reuse", second)):
                figures[f"{prefix}_loop"].append(_us(child.data["seconds"], n))
                figures[f"{prefix}_run"].append(_us(child.wall - base, n))
                figures[f"{prefix}_cpu"].append(_us(child.data["cpu"], n))
    return {key: median(values) for key, values in figures.items()}


def measure_autopersist(n: int, reps: int) -> dict[str, float]:
    """Median µs/call over ``reps`` fresh stores: new and reused, loop and whole run."""

    def runs(d: str) -> tuple[float, Child, Child]:
        # A 0-call run first, twice: rewrites and caches the modules' bytecode
        # and creates the store, so the N-call runs differ only by the calls.
        run_child(ap_args("main.py", 0, 0), d)
        base = median(run_child(ap_args("main.py", 0, 0), d).wall for _ in range(3))
        first = run_child(ap_args("main.py", 0, n), d)
        return base, first, run_child(ap_args("main.py", 0, n), d)

    return _new_and_reused(reps, n, runs)


def measure_plain(n: int, reps: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="apbench-") as d:
        _setup(d)
        children = [run_child(["main.py", 0, n], d) for _ in range(max(reps, 3))]
    return {
        "loop": median(_us(c.data["seconds"], n) for c in children),
        "cpu": median(_us(c.data["cpu"], n) for c in children),
    }


def measure_joblib(n: int, reps: int) -> dict[str, float]:
    def runs(d: str) -> tuple[float, Child, Child]:
        store = str(Path(d) / "joblib")
        base = median(run_child(["jl_main.py", 0, 0, store], d).wall for _ in range(3))
        first = run_child(["jl_main.py", 0, n, store], d)
        return base, first, run_child(["jl_main.py", 0, n, store], d)

    return _new_and_reused(reps, n, runs)


def prefill_store(directory: str, calls: int) -> None:
    """A project in ``directory`` whose store holds ``calls`` calls of ``inc``."""
    _setup(directory)
    run_child(ap_args("main.py", 0, calls), directory)


def measure_growth(
    prefilled: str, prefill: int, n: int, op: str = "inc"
) -> dict[str, float]:
    """µs/call of ``n`` new then reused calls of ``op`` in a copy of ``prefilled``
    (holding ``prefill`` calls of ``inc``): in the loop, and over the whole run
    (wall minus a 0-call run on that store)."""
    with tempfile.TemporaryDirectory(prefix="apbench-") as d:
        shutil.copytree(prefilled, d, dirs_exist_ok=True)
        base = median(
            run_child(ap_args("main.py", prefill, 0, op), d).wall for _ in range(3)
        )
        first = run_child(ap_args("main.py", prefill, n, op), d)
        second = run_child(ap_args("main.py", prefill, n, op), d)
    return {
        "new_loop": _us(first.data["seconds"], n),
        "reuse_loop": _us(second.data["seconds"], n),
        "new_run": _us(first.wall - base, n),
        "reuse_run": _us(second.wall - base, n),
    }


def measure_merge(prefilled: str, prefill: int, n: int) -> float:
    """µs per merged call of merging a store of ``n`` new calls into a copy of
    ``prefilled`` (holding ``prefill`` calls; see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="apbench-") as d:
        big, recent = Path(d, "big"), Path(d, "recent")
        shutil.copytree(prefilled, big)
        recent.mkdir()
        _setup(str(recent))
        run_child(ap_args("main.py", prefill, n), recent)
        write(d, "merge.py", MERGE)
        merged = run_child(["merge.py", big, recent], d)
    return _us(merged.data["seconds"], n)


def _vs_joblib(
    measure: str, ap: float, plain: float, jl: float | None, *, is_target: bool
) -> Row:
    """A µs/call row; at the target size, the target of 8x cheaper than joblib."""
    return Row(
        BENCH,
        measure,
        "µs/call",
        ap,
        plain,
        jl,
        target=">= 8x cheaper than joblib" if is_target else "",
        met=(jl / ap >= 8) if (is_target and jl) else None,
    )


def _label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n % 1000 == 0 else f"{n:,}"


def run(
    sizes: list[int] | None = None,
    joblib_max: int = 10_000,
    reps: int = 3,
    growth: bool = True,
    growth_stores: list[int] | None = None,
) -> list[Row]:
    sizes = sizes or [1_000, 10_000, 100_000]
    rows: list[Row] = []
    at: dict[int, dict[str, float]] = {}
    for n in sizes:
        r = 1 if n > 10_000 else reps
        progress(f"per-call: autopersist, {n} calls x {r}")
        ap = measure_autopersist(n, r)
        at[n] = ap
        progress(f"per-call: plain, {n} calls")
        plain = measure_plain(n, r)
        jl = None
        if n <= joblib_max:
            progress(f"per-call: joblib, {n} calls x {1 if n >= 10_000 else r}")
            jl = measure_joblib(n, 1 if n >= 10_000 else r)
        label = _label(n)
        is_target = n == 10_000
        for kind, name in (("new", "new"), ("reuse", "reused")):
            rows.append(
                _vs_joblib(
                    f"{name}, {label} calls, loop",
                    ap[f"{kind}_loop"],
                    plain["loop"],
                    jl[f"{kind}_loop"] if jl else None,
                    is_target=is_target,
                )
            )
            if is_target:
                rows.append(
                    Row(
                        BENCH,
                        f"{name}, {label} calls, loop, CPU time (process_time, all threads)",
                        "µs/call",
                        ap[f"{kind}_cpu"],
                        plain["cpu"],
                        jl[f"{kind}_cpu"] if jl else None,
                    )
                )
            if n < 10_000:
                continue  # wall-time noise (~10 ms) swamps the figure below 10k calls
            rows.append(
                _vs_joblib(
                    f"{name}, {label} calls, whole run (incl. exit commit)",
                    ap[f"{kind}_run"],
                    plain["loop"],
                    jl[f"{kind}_run"] if jl else None,
                    is_target=is_target,
                )
            )
    big = max(sizes)
    if 10_000 in at and big > 10_000:
        for kind, name in (("new", "new"), ("reuse", "reused")):
            # The target compares whole runs: they count the same work at both
            # sizes. A 10k-call loop ends before the first commit is due (its
            # commit is at exit), a 100k-call loop commits as it goes.
            for part, where, target in (
                ("run", "whole run", True),
                ("loop", "loop", False),
            ):
                ratio = at[big][f"{kind}_{part}"] / at[10_000][f"{kind}_{part}"]
                rows.append(
                    Row(
                        BENCH,
                        f"{name}: µs/call at {_label(big)} / at 10k, {where} (fresh stores)",
                        "ratio",
                        ratio,
                        target="no growth (<= 1.25)" if target else "",
                        met=ratio <= 1.25 if target else None,
                    )
                )
    if growth and 10_000 in at:
        for prefill in growth_stores or [max(big, 10_000)]:
            rows += _big_store_rows(prefill, at[10_000])
    return rows


def _big_store_rows(prefill: int, fresh: dict[str, float]) -> list[Row]:
    """10k calls into a store of ``prefill`` calls against ``fresh`` (the 10k
    figures of a fresh store), and the merge figure."""
    label = _label(prefill)
    rows = []
    with tempfile.TemporaryDirectory(prefix="apbench-") as prefilled:
        # One store of ``prefill`` calls, copied for each measurement below.
        progress(f"per-call: a store holding {label}")
        prefill_store(prefilled, prefill)
        for op, whose in (("inc", ""), ("dec", " of another op")):
            progress(f"per-call: 10k calls{whose} into a store holding {label}")
            g = measure_growth(prefilled, prefill, 10_000, op)
            for kind, name in (("new", "new"), ("reuse", "reused")):
                for part, where in (("run", "whole run"), ("loop", "loop")):
                    ratio = g[f"{kind}_{part}"] / fresh[f"{kind}_{part}"]
                    rows.append(
                        Row(
                            BENCH,
                            f"{name}, 10k calls into a store holding {label}{whose}, "
                            f"{where} ({ratio:.2f}x the 10k fresh store)",
                            "µs/call",
                            g[f"{kind}_{part}"],
                        )
                    )
        share = prefill // 8
        progress(
            f"per-call: merging {_label(share)} calls into a store holding {label}"
        )
        merge = measure_merge(prefilled, prefill, share)
    rows.append(
        Row(
            BENCH,
            f"merging {_label(share)} calls stored apart into a store holding "
            f"{label} (per merged call)",
            "µs/call",
            merge,
        )
    )
    return rows


NOTES = (
    "ap/plain: how many times slower than plain Python; joblib/ap: how many times "
    "cheaper than joblib.Memory. 'loop' is timed inside the script; 'whole run' adds "
    "the exit-time commit (wall(N calls) - wall(0 calls)) / N. The CPU-time rows are "
    "less sensitive to other processes on the machine (see the load average).",
)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000]
    )
    parser.add_argument(
        "--joblib-max",
        type=int,
        default=10_000,
        help="largest size also run with joblib.Memory (100k takes ~90 s)",
    )
    parser.add_argument(
        "--reps", type=int, default=3, help="repetitions for sizes <= 10k"
    )
    parser.add_argument("--no-growth", action="store_true")
    parser.add_argument(
        "--growth-stores",
        type=int,
        nargs="+",
        default=None,
        help="sizes of the big stores that 10k calls are made into "
        "(default: the largest of --sizes; 1000000 takes ~2 min)",
    )


def main(argv: list[str] | None = None) -> int:
    return script_main(
        __doc__,
        "Per-call cost of a trivial op",
        NOTES,
        _arguments,
        lambda args: run(
            args.sizes,
            args.joblib_max,
            args.reps,
            not args.no_growth,
            args.growth_stores,
        ),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
