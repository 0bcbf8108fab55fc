"""Memory of a long run: N trivial new calls in one run, then the same N reused.

    python benchmarks/memory.py [--calls 1000000]

The per-call scripts (``ops.inc`` in a marked module, called N times with distinct
arguments from an unmarked ``main.py``) run under ``autopersist run`` in a fresh
store. Reported per run:

* wall time of the whole process (start-up and the exit commit included);
* peak RSS at the end of the loop and at exit (after autopersist's final commit,
  from an ``atexit`` handler of the script), both as
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` and as ``VmHWM`` of
  ``/proc/self/status``. They differ by one thing: Linux carries ``ru_maxrss``
  over ``exec``, so it is at least the RSS of the parent (the benchmark process)
  at fork time, while ``VmHWM`` counts only this program;

and the same for plain Python. Target: under 1 GB for 1,000,000 calls.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    INC_OPS,
    Row,
    ap_args,
    progress,
    run_child,
    script_main,
    write,
)

MAIN = """\
import atexit
import json
import resource
import sys
import time

import ops


def peaks():
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    hwm = None
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    return ru, hwm if hwm is not None else ru


@atexit.register
def at_exit():  # runs after autopersist's final commit (done before exit handlers)
    ru, hwm = peaks()
    print("BENCH " + json.dumps(dict(loop, exit_ru_mb=ru, exit_hwm_mb=hwm)), flush=True)


n = int(sys.argv[1])
inc = ops.inc
t0 = time.perf_counter()
for i in range(n):
    inc(i)
seconds = time.perf_counter() - t0
ru, hwm = peaks()
loop = {"seconds": seconds, "loop_ru_mb": ru, "loop_hwm_mb": hwm}
"""

BENCH = "memory"


def run(calls: int = 1_000_000, reuse: bool = True) -> list[Row]:
    rows: list[Row] = []
    label = f"{calls:,} calls"
    with tempfile.TemporaryDirectory(prefix="apbench-") as d:
        write(d, "ops.py", INC_OPS)
        write(d, "main.py", MAIN)
        progress(f"memory: plain, {calls} calls")
        plain = run_child(["main.py", calls], d)
        progress(f"memory: autopersist new, {calls} calls")
        new = run_child(ap_args("main.py", calls), d)
        runs = [("new", new)]
        if reuse:
            progress(f"memory: autopersist reused, {calls} calls")
            runs.append(("reused", run_child(ap_args("main.py", calls), d)))
        db = Path(d, ".autopersist", "store.db")
        db_mb = (
            sum(p.stat().st_size for p in db.parent.glob("store.db*") if p.is_file())
            / 2**20
        )
    for name, child in runs:
        is_target = name == "new" and calls >= 1_000_000
        rows.append(
            Row(
                BENCH,
                f"{label}, {name}: wall time, whole process",
                "s",
                child.wall,
                plain.wall,
            )
        )
        rows.append(
            Row(
                BENCH,
                f"{label}, {name}: µs/call in the loop",
                "µs/call",
                child.data["seconds"] / calls * 1e6,
                plain.data["seconds"] / calls * 1e6,
            )
        )
        rows.append(
            Row(
                BENCH,
                f"{label}, {name}: peak RSS at end of loop (VmHWM)",
                "MB",
                child.data["loop_hwm_mb"],
                plain.data["loop_hwm_mb"],
            )
        )
        rows.append(
            Row(
                BENCH,
                f"{label}, {name}: peak RSS incl. exit commit (VmHWM)",
                "MB",
                child.data["exit_hwm_mb"],
                plain.data["exit_hwm_mb"],
            )
        )
        rows.append(
            Row(
                BENCH,
                f"{label}, {name}: peak RSS incl. exit commit (getrusage ru_maxrss)",
                "MB",
                child.data["exit_ru_mb"],
                plain.data["exit_ru_mb"],
                target="< 1 GB" if name == "new" else "",
                met=(child.data["exit_ru_mb"] < 1024) if is_target else None,
            )
        )
    rows.append(Row(BENCH, f"{label}: store size (store.db + WAL)", "MB", db_mb))
    return rows


NOTES = (
    "Target applies to 1,000,000 calls; smaller --calls values show the trend only.",
)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--no-reuse", action="store_true", help="skip the second run")


def main(argv: list[str] | None = None) -> int:
    return script_main(
        __doc__,
        "Memory of a long run",
        NOTES,
        _arguments,
        lambda args: run(args.calls, not args.no_reuse),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
