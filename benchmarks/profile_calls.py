"""Where the time of a memoized call goes: cProfile of N new, then N reused calls.

    python benchmarks/profile_calls.py [--calls 10000] [--top 30] [--sort cumulative]
                                       [--scenario top|nested] [--commit-at-exit]

Runs the per-call benchmark's scripts (``ops.inc`` called N times) in this process
through ``autopersist._launch.run`` (what ``autopersist run`` does after parsing
its command line), twice in one temp dir, under ``cProfile``, and prints the top
functions of the package (``autopersist/``) plus the C functions they call, by
cumulative time. The first run makes N new calls, the second reuses them.

``--scenario nested`` profiles instead the instrumentation benchmark's op
``crunch`` whose helper carries ``# persist: always`` (N nested memoized calls).

cProfile only sees the main thread; the background flush thread's commits show up
here only as time the main thread waits for the storage lock.
``--commit-at-exit`` sets ``autopersist._storage.FLUSH_SECONDS`` so high that
nothing commits before the end of the run: the whole commit then happens on the
main thread, inside ``Storage.close``, where the profile shows it.
The profiler itself roughly doubles the cost of small Python functions, so read the
shares, not the absolute figures (the per-call benchmark gives those).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import INC_OPS as OPS
from _common import add_common_args, package_root, set_package_root, write
from instrumentation import ANNOTATIONS, WORK
from instrumentation import MAIN as NESTED_MAIN
from per_call import MAIN


def _profile_run(
    directory: str, argv: list[str], calls: int, top: int, sort: str
) -> str:
    from autopersist._config import load_config
    from autopersist._launch import run

    for name in ("ops", "work"):  # a fresh module table per run, as in a new process
        sys.modules.pop(name, None)
    config = load_config(quiet=True)
    profiler = cProfile.Profile()
    main_module = sys.modules["__main__"]
    saved_argv = sys.argv[:]
    t0 = time.perf_counter()
    profiler.enable()
    try:
        result = run(config, str(Path(directory) / "main.py"), argv)
    finally:
        profiler.disable()
        sys.modules["__main__"] = main_module
        sys.argv = saved_argv
    wall = time.perf_counter() - t0
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(sort)
    stats.print_stats(r"autopersist/|\{method|\{built-in", top)
    return (
        f"calls {result.calls}, reused {result.reused}, computed {result.computed}; "
        f"wall under the profiler {wall:.2f}s ({wall / calls * 1e6:.1f} µs/call)\n"
        + _trim(out.getvalue())
    )


def _trim(text: str) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("ncalls"):
            return "\n".join(lines[i - 1 :])
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--sort", default="cumulative", help="pstats sort key (cumulative, tottime)"
    )
    parser.add_argument("--scenario", choices=("top", "nested"), default="top")
    parser.add_argument("--commit-at-exit", action="store_true")
    add_common_args(parser)
    args = parser.parse_args(argv)
    set_package_root(args.package_root)
    sys.path.insert(0, str(package_root()))
    old_cwd = os.getcwd()
    if args.commit_at_exit:
        import autopersist._storage as storage

        storage.FLUSH_SECONDS = 1e9
    with tempfile.TemporaryDirectory(prefix="apbench-") as d:
        if args.scenario == "top":
            write(d, "ops.py", OPS)
            write(d, "main.py", MAIN)
            run_argv = ["0", str(args.calls)]
            titles = ("NEW calls (first run)", "REUSED calls (second run)")
        else:
            write(d, "work.py", WORK.format(skip=ANNOTATIONS["always"], factor="SCALE"))
            write(d, "main.py", NESTED_MAIN)
            run_argv = [str(args.calls)]
            titles = ("NESTED new calls inside one op (first run)", "(second run)")
        os.chdir(d)
        try:
            for title in titles:
                print(f"\n===== {args.calls} {title} =====")
                print(_profile_run(d, run_argv, args.calls, args.top, args.sort))
        finally:
            os.chdir(old_cwd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
