"""Shared helpers of the benchmark scripts: child processes, timing, the table.

Every benchmark writes small scripts into a temporary directory and runs them in
fresh interpreters (``python -m autopersist run -q ...``, plain ``python ...``, or
plain ``python`` with ``joblib.Memory``). The scripts time their own hot part with
``time.perf_counter`` and print one line ``BENCH {json}``, so interpreter start-up
is not counted unless a benchmark says so.

Child processes get:

* ``PYTHONPATH`` starting with the package root (the repository by default, or
  ``--package-root`` / ``$AUTOPERSIST_BENCH_PKG``, e.g. a ``git archive`` snapshot);
* no ``PYTHONDONTWRITEBYTECODE`` (bytecode caching on, as for a user), unless a
  benchmark asks for it;
* no ``AUTOPERSIST*`` variables (each benchmark uses its own store in its temp dir).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PY = sys.executable
_package_root: Path = Path(os.environ.get("AUTOPERSIST_BENCH_PKG") or REPO)


def set_package_root(path: str | os.PathLike[str] | None) -> None:
    """Run autopersist from ``path`` (a directory holding ``autopersist/``)."""
    global _package_root
    if path:
        _package_root = Path(path).resolve()
        if not (_package_root / "autopersist" / "__init__.py").is_file():
            raise SystemExit(f"--package-root {path}: no autopersist/ package there")


def package_root() -> Path:
    return _package_root


def add_common_args(parser: Any) -> None:
    parser.add_argument(
        "--package-root",
        default=None,
        help="directory holding the autopersist package to measure "
        "(default: this repository, or $AUTOPERSIST_BENCH_PKG)",
    )


def script_main(
    doc: str,
    title: str,
    notes: Sequence[str],
    arguments: Callable[[argparse.ArgumentParser], None],
    rows_for: Callable[[argparse.Namespace], list[Row]],
    argv: list[str] | None = None,
) -> int:
    """The ``main`` of a benchmark script: its own options (``arguments``) and
    ``--package-root``, then the rows ``rows_for(args)`` as one titled table."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    arguments(parser)
    add_common_args(parser)
    args = parser.parse_args(argv)
    set_package_root(args.package_root)
    report(title, rows_for(args), notes)
    return 0


#: A marked module with one op, ``inc(x) = x + 1``, that the hot-op guard never
#: switches off: what the per-call and memory benchmarks call N times.
INC_OPS = """\
# persist
def inc(x):  # persist: always
    return x + 1
"""


# --------------------------------------------------------------------------- children


def child_env(
    *, bytecode: bool = True, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPERSIST")}
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(_package_root) + (os.pathsep + old if old else "")
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    if extra:
        env.update(extra)
    return env


@dataclass
class Child:
    stdout: str
    stderr: str
    wall: float  # seconds, whole process (start-up and exit included)
    maxrss_mb: float  # peak resident set of the child (wait4), MiB
    data: dict[str, Any] = field(default_factory=dict)  # the BENCH line


def run_child(
    args: Sequence[object],
    cwd: str | os.PathLike[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> Child:
    """Run ``python args...`` in ``cwd``; wall time and peak RSS from ``wait4``."""
    cmd = [PY, *map(str, args)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env or child_env(), stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} (in {cwd}) exited with {proc.returncode}:\n{stderr[-3000:]}"
        )
    data: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith("BENCH "):
            data = json.loads(line[6:])
    return Child(stdout, stderr, wall, usage.ru_maxrss / 1024, data)


def ap_args(script: str, *args: object) -> list[object]:
    """``python -m autopersist run -q script args...``."""
    return ["-m", "autopersist", "run", "-q", script, *args]


def write(directory: str | os.PathLike[str], name: str, text: str) -> Path:
    path = Path(directory) / name
    path.write_text(text, encoding="utf-8")
    return path


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def repeat(n: int, fn: Callable[[], float]) -> float:
    """Median of ``n`` calls of ``fn``."""
    return median(fn() for _ in range(max(1, n)))


# -------------------------------------------------------------------------- results


@dataclass
class Row:
    """One figure. ``ap``/``plain``/``joblib`` are in ``unit``; ratios are derived.

    ``higher_is_better`` marks throughputs (MB/s): the ratios are then inverted so
    that "vs plain" is always how many times slower autopersist is than plain
    Python, and "vs joblib" always how many times faster it is than joblib.
    """

    bench: str
    measure: str
    unit: str
    ap: float | None
    plain: float | None = None
    joblib: float | None = None
    target: str = ""
    met: bool | None = None
    higher_is_better: bool = False

    def vs_plain(self) -> float | None:
        if self.ap is None or self.plain is None or self.ap <= 0 or self.plain <= 0:
            return None
        return self.plain / self.ap if self.higher_is_better else self.ap / self.plain

    def vs_joblib(self) -> float | None:
        if self.ap is None or self.joblib is None or self.ap <= 0 or self.joblib <= 0:
            return None
        return self.ap / self.joblib if self.higher_is_better else self.joblib / self.ap


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    a = abs(value)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    if a >= 0.01:
        return f"{value:.3f}"
    return f"{value:.2g}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{fmt(value)}x"


HEADER = (
    "benchmark",
    "measure",
    "unit",
    "autopersist",
    "plain",
    "joblib",
    "ap/plain",
    "joblib/ap",
    "target",
    "met",
)


def table(rows: Sequence[Row]) -> str:
    """A Markdown table (readable as plain text too)."""
    lines = [HEADER]
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(
            (
                r.bench,
                r.measure,
                r.unit,
                fmt(r.ap),
                fmt(r.plain),
                fmt(r.joblib),
                fmt_ratio(r.vs_plain()),
                fmt_ratio(r.vs_joblib()),
                r.target,
                met,
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(HEADER))]
    out = []
    for n, line in enumerate(lines):
        out.append(
            "| "
            + " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True))
            + " |"
        )
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def machine() -> str:
    """One paragraph: date, CPU, cores, Python, library versions, package commit."""
    cpu = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False
        ).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    versions = []
    from importlib import metadata

    for name in ("joblib", "numpy", "libcst"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} missing")
    import sqlite3

    versions.append(f"SQLite {sqlite3.sqlite_version}")
    commit = "not a git checkout"
    try:
        commit = (
            subprocess.run(
                ["git", "-C", str(_package_root), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            or "not a git checkout"
        )
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(_package_root),
                "status",
                "--porcelain",
                "--",
                "autopersist",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if dirty:
            commit += " + uncommitted changes in autopersist/"
    except OSError:
        pass
    return (
        f"{time.strftime('%Y-%m-%d')}; {cpu}, {os.cpu_count()} cores; "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}; "
        f"{', '.join(versions)}; autopersist from {_package_root} ({commit}); "
        f"load average at start {load_average()}"
    )


def load_average() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def report(title: str, rows: Sequence[Row], notes: Sequence[str] = ()) -> None:
    print(f"\n## {title}\n")
    print(table(rows))
    for note in notes:
        print(f"\n{note}")
    sys.stdout.flush()


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def dump_json(rows: Sequence[Row], path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump([r.__dict__ for r in rows], handle, indent=1)
