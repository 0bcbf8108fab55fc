"""A 3-step numpy pipeline with 1 MB to 100 MB arrays: hash and store throughput.

    python benchmarks/arrays.py [--sizes-mb 1 10 100] [--reps 3]

A marked module ``pipe.py``::

    def make(n, seed):   return np.random.default_rng(seed).standard_normal(n)
    def normalize(a):    return (a - a.mean()) / a.std()
    def smooth(a):       return np.cumsum(a) / len(a)

``main.py`` runs ``smooth(normalize(make(n, 0)))`` on float64 arrays of the given
size and times it. Under autopersist a new run hashes two array inputs and three
array outputs and stores three arrays; so does joblib.Memory (``.cache`` on each
step). Figures:

* new run: seconds, and "store throughput" = 3 x size / (t_new - t_plain), the
  MB/s at which the memoizer takes in the arrays it must hash and store;
* reused run: seconds (it loads 3 arrays and hashes 2 inputs);
* reused, result never touched: ``main.py`` timing only ``make(n, 0)``, whose
  result it prints only by shape (a step the program reuses but does not look
  at): seconds and the process's peak RSS, vs plain and joblib doing the same;
* a global: ``glob.py`` holds an array of the given size as a module global
  ``TABLE`` that an op ``pick(i)`` reads; ``main.py`` times 10 calls with new
  arguments (first run) and the same 10 again (second run, reused), in ms per
  call. A mutable global is hashed at the start and at the end of a computed
  call, at the lookup of a reused one: the per-call cost is about 2 hashes new,
  1 reused (the plain column is the hash of the array, in-process);
* in-process: ``autopersist._hashing.content_hash`` of one array, in GB/s,
  vs ``joblib.hash`` (target: >= 1 GB/s at 100 MB), ``_codec.dumps`` + writing
  the blob file (what the store does for a value > 64 KiB), and reading the blob
  file back as a reuse does (``Storage.value_bytes`` + ``_codec.loads``) then
  summing the array, so that every byte is read.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Row,
    ap_args,
    median,
    progress,
    run_child,
    script_main,
    write,
)

PIPE = """\
# persist
import numpy as np


def make(n, seed):
    return np.random.default_rng(seed).standard_normal(n)


def normalize(a):
    return (a - a.mean()) / a.std()


def smooth(a):
    return np.cumsum(a) / len(a)
"""

MAIN = """\
import json
import sys
import time

import pipe

n, what, store = int(sys.argv[1]), sys.argv[2], sys.argv[3]
make, normalize, smooth = pipe.make, pipe.normalize, pipe.smooth
if store != "-":
    from joblib import Memory

    memory = Memory(location=store, verbose=0)
    make, normalize, smooth = memory.cache(make), memory.cache(normalize), memory.cache(smooth)
t0 = time.perf_counter()
if what == "pipeline":
    out = smooth(normalize(make(n, 0)))
    seconds = time.perf_counter() - t0
    print("BENCH " + json.dumps({"seconds": seconds, "last": float(out[-1])}))
else:  # "make": the result is never touched, only its shape printed
    out = make(n, 0)
    seconds = time.perf_counter() - t0
    print("BENCH " + json.dumps({"seconds": seconds, "last": list(out.shape)}))
"""

GLOBAL = """\
# persist
import sys

import numpy as np

TABLE = np.random.default_rng(2).standard_normal(int(sys.argv[1]))


def pick(i):
    table = TABLE
    return float(table[i] * 2)
"""

GLOBAL_MAIN = """\
import json
import sys
import time

import glob_table

calls = 10
t0 = time.perf_counter()
picked = [glob_table.pick(i) for i in range(calls)]
seconds = time.perf_counter() - t0
print("BENCH " + json.dumps({"seconds": seconds / calls, "last": picked[-1]}))
"""

HASH = """\
import json
import os
import sys
import tempfile
import time

import numpy as np
from joblib import hash as joblib_hash

from autopersist._codec import dumps, loads
from autopersist._hashing import content_hash

try:  # a reuse maps the blob file; before that, it read it whole
    from autopersist._blobfile import read_blob
except ImportError:
    def read_blob(path):
        with open(path, "rb") as handle:
            return handle.read()

n, reps = int(sys.argv[1]), int(sys.argv[2])
a = np.random.default_rng(1).standard_normal(n)


def best(fn):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def store():
    data = dumps(a)
    fd, path = tempfile.mkstemp(dir=".")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.unlink(path)


with open("blob", "wb") as handle:
    handle.write(dumps(a))


def load_and_sum():
    float(loads(read_blob("blob")).sum())


print("BENCH " + json.dumps({
    "ap_hash": best(lambda: content_hash(a)),
    "joblib_hash": best(lambda: joblib_hash(a)),
    "dumps_write": best(store),
    "read_loads_sum": best(load_and_sum),
    "sum": best(lambda: float(a.sum())),
}))
"""

BENCH = "arrays"


def measure_pipeline(mb: int, reps: int) -> dict[str, float]:
    """Median seconds of each variant; ``*_rss``: median peak RSS in MB."""
    n = mb * 1024 * 1024 // 8
    res: dict[str, list[float]] = {}
    for _ in range(reps):
        with tempfile.TemporaryDirectory(prefix="apbench-") as d:
            write(d, "pipe.py", PIPE)
            write(d, "main.py", MAIN)
            run_child(["-c", "import pipe"], d)  # plain bytecode cache, numpy warm
            store = str(Path(d) / "joblib")
            runs = {}
            for what, suffix in (("pipeline", ""), ("make", "_untouched")):
                plain = run_child(["main.py", n, what, "-"], d)
                new = run_child(ap_args("main.py", n, what, "-"), d)
                reuse = run_child(ap_args("main.py", n, what, "-"), d)
                jl_new = run_child(["main.py", n, what, store], d)
                jl_reuse = run_child(["main.py", n, what, store], d)
                children = (plain, new, reuse, jl_new, jl_reuse)
                lasts = {json.dumps(c.data["last"]) for c in children}
                if len(lasts) != 1:
                    raise RuntimeError(f"{what}: runs disagree: {lasts}")
                for key, child in zip(
                    ("plain", "new", "reuse", "jl_new", "jl_reuse"),
                    children,
                    strict=True,
                ):
                    runs[key + suffix] = child
                # A later run of the pipeline reuses make's call: a new store.
                shutil.rmtree(Path(d) / ".autopersist")
                shutil.rmtree(store)
            for key, child in runs.items():
                res.setdefault(key, []).append(child.data["seconds"])
                res.setdefault(key + "_rss", []).append(child.maxrss_mb)
    return {k: median(v) for k, v in res.items()}


def measure_global(mb: int) -> dict[str, float]:
    """Seconds per call of an op reading an array global: new, then reused."""
    n = mb * 1024 * 1024 // 8
    with tempfile.TemporaryDirectory(prefix="apbench-") as d:
        write(d, "glob_table.py", GLOBAL)
        write(d, "glob_main.py", GLOBAL_MAIN)
        new = run_child(ap_args("glob_main.py", n), d)
        reused = run_child(ap_args("glob_main.py", n), d)
        if new.data["last"] != reused.data["last"]:
            raise RuntimeError("global: the reused run disagrees")
        return {"new": new.data["seconds"], "reused": reused.data["seconds"]}


def measure_hash(mb: int, reps: int) -> dict[str, float]:
    n = mb * 1024 * 1024 // 8
    with tempfile.TemporaryDirectory(prefix="apbench-") as d:
        write(d, "hash_bench.py", HASH)
        return run_child(["hash_bench.py", n, reps], d).data


def run(sizes_mb: list[int] | None = None, reps: int = 3) -> list[Row]:
    sizes_mb = sizes_mb or [1, 10, 100]
    rows: list[Row] = []
    for mb in sizes_mb:
        r = reps if mb < 100 else max(1, reps - 2)
        progress(f"arrays: pipeline {mb} MB x {r}")
        p = measure_pipeline(mb, r)
        plain = p["plain"]
        rows.append(Row(BENCH, f"{mb} MB: new run", "s", p["new"], plain, p["jl_new"]))
        ap_tp = 3 * mb / (p["new"] - plain) if p["new"] > plain else None
        jl_tp = 3 * mb / (p["jl_new"] - plain) if p["jl_new"] > plain else None
        rows.append(
            Row(
                BENCH,
                f"{mb} MB: store throughput, new run (3 x size / overhead)",
                "MB/s",
                ap_tp,
                None,
                jl_tp,
                higher_is_better=True,
            )
        )
        rows.append(
            Row(BENCH, f"{mb} MB: reused run", "s", p["reuse"], plain, p["jl_reuse"])
        )
        rows.append(
            Row(
                BENCH,
                f"{mb} MB: reused, result never touched (make only)",
                "s",
                p["reuse_untouched"],
                p["plain_untouched"],
                p["jl_reuse_untouched"],
            )
        )
        rows.append(
            Row(
                BENCH,
                f"{mb} MB: reused, result never touched: peak RSS, whole process",
                "MB",
                p["reuse_untouched_rss"],
                p["plain_untouched_rss"],
                p["jl_reuse_untouched_rss"],
            )
        )
        progress(f"arrays: hashing {mb} MB in-process")
        h = measure_hash(mb, 5)
        gbs = mb / 1024 / h["ap_hash"]
        rows.append(
            Row(
                BENCH,
                f"{mb} MB: content_hash of one array (in-process)",
                "GB/s",
                gbs,
                None,
                mb / 1024 / h["joblib_hash"],
                target=">= 1 GB/s" if mb >= 100 else "",
                met=(gbs >= 1.0) if mb >= 100 else None,
                higher_is_better=True,
            )
        )
        progress(f"arrays: {mb} MB global read by an op")
        g = measure_global(mb)
        for kind in ("new", "reused"):
            rows.append(
                Row(
                    BENCH,
                    f"{mb} MB global read by an op: {kind} call "
                    "(plain: one hash of it)",
                    "ms",
                    g[kind] * 1e3,
                    h["ap_hash"] * 1e3,
                )
            )
        rows.append(
            Row(
                BENCH,
                f"{mb} MB: pickle + write blob file (in-process)",
                "GB/s",
                mb / 1024 / h["dumps_write"],
                higher_is_better=True,
            )
        )
        rows.append(
            Row(
                BENCH,
                f"{mb} MB: read blob file + unpickle + sum (in-process; plain: sum)",
                "GB/s",
                mb / 1024 / h["read_loads_sum"],
                mb / 1024 / h["sum"],
                higher_is_better=True,
            )
        )
    return rows


NOTES = (
    "Pipeline times are of smooth(normalize(make(n))) inside the script. 'store "
    "throughput' divides the 3 stored arrays by the time added over plain Python. "
    "joblib column of content_hash = joblib.hash of the same array. 'never "
    "touched' times make(n) alone in a new store, its result printed only by "
    "shape; plain = computing it. 'global read by an op': ms per call of an op "
    "reading the array as a module global; its ap/plain is the number of hashes "
    "of the array per call (2 new: start and end, 1 reused: the lookup).",
)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--reps", type=int, default=3, help="repetitions below 100 MB")


def main(argv: list[str] | None = None) -> int:
    return script_main(
        __doc__,
        "numpy pipeline",
        NOTES,
        _arguments,
        lambda args: run(args.sizes_mb, args.reps),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
