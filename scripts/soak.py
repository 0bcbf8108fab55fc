"""Soak test: minutes of concurrent ``autopersist run`` processes on one store, with
random SIGKILLs, then a consistency check of the store.

    python scripts/soak.py --minutes 5 --slots 3

Each slot runs scripts in a loop (most of them killed at a random moment, some
left to finish): a marked script with nested calls and 160 KB numpy outputs (blob
files), over ranges that overlap between slots (so processes compute the same
calls at once), and a script whose calls run in a ``ProcessPoolExecutor`` (the
whole process group is killed). After every kill the store must pass
``check_consistency``, and every call that finished more than a second before the
kill must be stored. The end: a final check, and a full run that must exit 0.
Prints the figures and exits 1 if anything was wrong.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autopersist._storage import check_consistency  # noqa: E402
from tests._helpers import KILL_SCRIPT, count, env_for, stored_ints  # noqa: E402

POOL_SCRIPT = """\
# persist
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np


def chunk(i):
    time.sleep(0.01)
    return np.arange(1000, dtype=np.float64) * i if i % 5 == 0 else i


if __name__ == "__main__":
    start = int(sys.argv[1])
    with ProcessPoolExecutor(2) as pool:
        for n, _ in enumerate(pool.map(chunk, range(start, start + 400))):
            print(start + n, time.time(), flush=True)
"""

#: Calls finished this long before a kill must have been committed.
KEPT_AFTER = 1.0


@dataclass
class Figures:
    runs: int = 0
    finished_ok: int = 0
    kills: int = 0
    pool_kills: int = 0
    checks: int = 0
    problems: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_one(root: Path, rng: random.Random, figures: Figures, deadline: float) -> None:
    pool = rng.random() < 0.2
    script = "pool.py" if pool else "k.py"
    # A hot range (slots compute the same calls at once) or fresh calls (kills then
    # land while calls, values and blob files are being written).
    hot = rng.random() < 0.4
    start = rng.randrange(0, 3000, 50) if hot else rng.randrange(3000, 10**7, 50)
    args = [sys.executable, "-m", "autopersist", "run", script, str(start)]
    if not pool:
        args.append(str(rng.randint(50, 400)))
    kill_after = rng.uniform(0.05, 3.0) if rng.random() < 0.85 else None
    proc = subprocess.Popen(
        args,
        cwd=root,
        env=env_for(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: workers die with it
    )
    finished: dict[int, float] = {}

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if len(parts) == 2:
                finished[int(parts[0])] = float(parts[1])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    kill_time = None
    if kill_after is not None:
        try:
            proc.wait(kill_after)
        except subprocess.TimeoutExpired:
            kill_time = time.time()
            os.killpg(proc.pid, signal.SIGKILL)
    try:
        proc.wait(max(10.0, deadline - time.time() + 60))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kill_time = kill_time or time.time()
    reader.join(10)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    store = root / ".autopersist"
    with figures.lock:
        figures.runs += 1
    if kill_time is None:
        with figures.lock:
            if proc.returncode == 0:
                figures.finished_ok += 1
            else:
                figures.failures.append(
                    f"{script} {start}: exit {proc.returncode}: {stderr[-500:]}"
                )
        return
    # Killed before it created the store: nothing to check (the next run creates it).
    problems = check_consistency(store) if (store / "store.db").exists() else []
    op, param = ("pool:chunk", "i") if pool else ("k:pair", "i")
    stored = stored_ints(store, op, param) if (store / "store.db").exists() else set()
    due = {i for i, at in finished.items() if at < kill_time - KEPT_AFTER}
    with figures.lock:
        figures.kills += 1
        figures.pool_kills += pool
        figures.checks += 1
        figures.problems.extend(f"after kill {figures.kills}: {p}" for p in problems)
        if due - stored:
            figures.lost.append(
                f"{script} {start}: {len(due - stored)} calls finished >1 s before "
                f"the kill are missing: {sorted(due - stored)[:5]}"
            )


def slot(root: Path, seed: int, figures: Figures, deadline: float) -> None:
    rng = random.Random(seed)
    while time.time() < deadline:
        run_one(root, rng, figures, deadline)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--slots", type=int, default=3, help="concurrent runs")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--dir", type=Path, default=None, help="project directory")
    options = parser.parse_args()
    root = options.dir or Path(tempfile.mkdtemp(prefix="autopersist-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    (root / "k.py").write_text(KILL_SCRIPT)
    (root / "pool.py").write_text(textwrap.dedent(POOL_SCRIPT))
    figures = Figures()
    started = time.time()
    deadline = started + options.minutes * 60
    print(
        f"soak: {options.minutes} min, {options.slots} slots, seed {options.seed}, in {root}"
    )
    threads = [
        threading.Thread(target=slot, args=(root, options.seed + n, figures, deadline))
        for n in range(options.slots)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = root / ".autopersist"
    final_problems = check_consistency(store)
    final = subprocess.run(
        [sys.executable, "-m", "autopersist", "run", "k.py", "0", "300"],
        cwd=root,
        env=env_for(root),
        capture_output=True,
        text=True,
    )
    calls = count(store, "SELECT count(*) FROM calls")
    distinct = count(store, "SELECT count(DISTINCT call_id) FROM calls")
    blobs = count(store, "SELECT count(*) FROM value_rows WHERE data IS NULL")
    runs = count(store, "SELECT count(*) FROM runs")
    print(
        f"soak: {time.time() - started:.0f} s, {figures.runs} runs, "
        f"{figures.kills} SIGKILLs ({figures.pool_kills} of process-pool runs), "
        f"{figures.finished_ok} runs finished with exit 0, {figures.checks + 1} "
        f"consistency checks"
    )
    print(
        f"soak: store: {calls} calls ({distinct} distinct), {blobs} blob values, "
        f"{runs} runs; final run exit {final.returncode}: "
        f"{final.stderr.strip().splitlines()[-1] if final.stderr.strip() else ''}"
    )
    bad = figures.problems + final_problems + figures.lost + figures.failures
    print(
        f"soak: inconsistencies {len(figures.problems) + len(final_problems)}, "
        f"lost finished calls {len(figures.lost)}, failed runs {len(figures.failures)}"
    )
    for line in bad[:20]:
        print("  " + line)
    return 1 if bad or final.returncode != 0 or calls != distinct else 0


if __name__ == "__main__":
    sys.exit(main())
