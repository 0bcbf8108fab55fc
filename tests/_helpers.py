"""Helpers shared by the durability, concurrency, worker and bad-input tests (and
``scripts/soak.py``): what a store holds, file digests, killing a run mid-way."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: A marked script for kill tests: ``step(i)`` (every 7th output is a 160 KB numpy
#: array, so blob files are written), ``pair(i)`` nesting two steps; one line
#: ``i finished_at`` on stdout after each top-level call.
KILL_SCRIPT = """\
# persist
import sys
import time

import numpy as np


def step(i):
    time.sleep(0.002)
    if i % 7 == 0:
        return np.full(20_000, float(i))
    return i * i


def pair(i):
    return [step(i), step(i + 100_000)]


def main():
    start, count = int(sys.argv[1]), int(sys.argv[2])
    for i in range(start, start + count):
        pair(i)
        print(i, time.time(), flush=True)


if __name__ == "__main__":
    main()
"""


def stored_ints(store: Path, op_id: str, param: str) -> set[int]:
    """The integer values of parameter ``param`` over the stored calls of ``op_id``."""
    conn = sqlite3.connect(store / "store.db")
    try:
        rows = conn.execute(
            "SELECT r.preview FROM calls c JOIN call_values v ON v.call_id = c.call_id "
            "AND v.role = 'in' AND v.name = ? JOIN value_rows r "
            "ON r.value_id = v.value_id WHERE c.op_id = ? AND c.status = 'ok'",
            (param, op_id),
        ).fetchall()
    finally:
        conn.close()
    return {int(row[0]) for row in rows}


def count(store: Path, sql: str, *params: object) -> int:
    conn = sqlite3.connect(store / "store.db")
    try:
        return int(conn.execute(sql, params).fetchone()[0])
    finally:
        conn.close()


def tree_digest(path: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every file under ``path`` (or of ``path``)."""
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    if not path.exists():
        return {}
    return {
        str(file.relative_to(path)): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


def env_for(root: Path, **extra: str) -> dict[str, str]:
    """A subprocess environment running autopersist from this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPERSIST")}
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONPYCACHEPREFIX"] = str(root / ".pycache")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


@dataclass
class KilledRun:
    """A run killed with SIGKILL: when, and the top-level calls it had finished."""

    kill_time: float
    finished: dict[int, float] = field(default_factory=dict)
    returncode: int | None = None
    stderr: str = ""


def run_and_kill(
    args: list[str], cwd: Path, env: dict[str, str], delay: float
) -> KilledRun:
    """Start ``args``, wait until it has printed its first line plus ``delay``
    seconds, then SIGKILL it. Lines read are ``i finished_at``."""
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    killed = KilledRun(kill_time=0.0)
    first = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if len(parts) == 2:
                killed.finished[int(parts[0])] = float(parts[1])
                first.set()
        first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    first.wait(60)
    time.sleep(delay)
    killed.kill_time = time.time()
    with_signal(proc, signal.SIGKILL)
    proc.wait(30)
    reader.join(30)
    assert proc.stderr is not None
    killed.stderr = proc.stderr.read()
    killed.returncode = proc.returncode
    return killed


def with_signal(proc: subprocess.Popen[str], sig: int) -> None:
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass


def autopersist_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "autopersist", *args]


def can_mount_tmpfs(where: Path) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
        capture_output=True,
    )
    return proc.returncode == 0


def umount(where: Path) -> None:
    subprocess.run(["umount", str(where)], capture_output=True)


def make_immutable(path: Path, on: bool) -> bool:
    """``chattr +i`` (or ``-i``): read-only even for root, where chmod is not."""
    proc = subprocess.run(
        ["chattr", "+i" if on else "-i", str(path)], capture_output=True
    )
    return proc.returncode == 0
