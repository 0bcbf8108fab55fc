"""Run the whole benchmark suite and print one table (issue #6).

    python benchmarks/run_all.py            # about 3-4 minutes on 2 cores
    python benchmarks/run_all.py --full     # + 1M-call memory run, joblib at 100k (~8 min)
    python benchmarks/run_all.py --quick    # small sizes, a smoke test (~1 min)
    python benchmarks/run_all.py --markdown results.md --json results.json

Each part also runs alone (``python benchmarks/per_call.py --help`` etc.).
``--package-root DIR`` measures the autopersist package found in DIR (for instance
a ``git archive`` snapshot of a commit) instead of this working tree.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
from _common import Row, add_common_args, child_env, machine, progress, table

PARTS = ("per_call", "instrumentation", "arrays", "imports", "memory", "frame_export")


def _frame_export(quick: bool) -> tuple[list[Row], str]:
    """benchmarks/frame_export.py (written separately): merged when its ``run()``
    returns Rows, else run as a script and its output kept as it is."""
    path = Path(__file__).resolve().parent / "frame_export.py"
    if not path.exists():
        return [], ""
    try:
        module = importlib.import_module("frame_export")
        fn = getattr(module, "run", None)
        if fn is not None:
            rows = fn()
            if isinstance(rows, list) and all(isinstance(r, Row) for r in rows):
                return rows, ""
    except Exception as exc:  # keep the suite going; fall back to the script
        progress(f"frame_export: run() not usable ({exc}); running it as a script")
    proc = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        env=child_env(),
        check=False,
    )
    text = proc.stdout + (
        f"\n(exit status {proc.returncode})\n{proc.stderr[-2000:]}"
        if proc.returncode
        else ""
    )
    return [], text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--full", action="store_true", help="1M-call memory run, joblib at 100k calls"
    )
    size.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts")
    parser.add_argument(
        "--markdown", help="also write the table (with the machine line) here"
    )
    parser.add_argument("--json", help="also write the rows as JSON here")
    parser.add_argument(
        "--label", default="", help="free text added to the machine line"
    )
    add_common_args(parser)
    args = parser.parse_args(argv)
    _common.set_package_root(args.package_root)
    parts = args.only or PARTS

    import arrays
    import imports
    import instrumentation
    import memory
    import per_call

    started = time.perf_counter()
    info = machine() + (f"; {args.label}" if args.label else "")
    print(f"# autopersist benchmarks\n\n{info}\n", flush=True)
    rows: list[Row] = []
    extra = ""
    for part in parts:
        t0 = time.perf_counter()
        if part == "per_call":
            if args.quick:
                rows += per_call.run(
                    [1_000, 10_000], joblib_max=1_000, reps=1, growth=False
                )
            else:
                rows += per_call.run(
                    [1_000, 10_000, 100_000],
                    joblib_max=100_000 if args.full else 10_000,
                    growth_stores=[100_000, 1_000_000] if args.full else [100_000],
                )
        elif part == "instrumentation":
            if args.quick:
                rows += instrumentation.run(200_000, reps=1, always_calls=10_000)
            else:
                rows += instrumentation.run(2_000_000, reps=3, always_calls=100_000)
        elif part == "arrays":
            rows += arrays.run(
                [1, 10] if args.quick else [1, 10, 100], reps=1 if args.quick else 3
            )
        elif part == "imports":
            rows += imports.run(3000, reps=3 if args.quick else 10)
        elif part == "memory":
            calls = 1_000_000 if args.full else 20_000 if args.quick else 200_000
            rows += memory.run(calls, reuse=True)
        elif part == "frame_export":
            frame_rows, extra = _frame_export(args.quick)
            rows += frame_rows
        progress(f"{part}: {time.perf_counter() - t0:.0f}s")
    elapsed = time.perf_counter() - started
    text = table(rows)
    print(text)
    notes = [
        "ap/plain = autopersist time / plain Python time (how many times slower); "
        "joblib/ap = joblib.Memory time / autopersist time (how many times cheaper); "
        "for MB/s and GB/s rows both are inverted so that the meaning stays the same.",
        f"Suite wall time: {elapsed:.0f} s; load average at the end "
        f"{_common.load_average()} (1/5/15 min).",
    ]
    for note in notes:
        print(f"\n{note}")
    if extra:
        print("\n## frame_export.py (its own output)\n")
        print(extra)
    if args.markdown:
        Path(args.markdown).write_text(
            f"{info}\n\n{text}\n\n"
            + "\n\n".join(notes)
            + (f"\n\n```\n{extra}\n```\n" if extra else "\n"),
            encoding="utf-8",
        )
    if args.json:
        _common.dump_json(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
