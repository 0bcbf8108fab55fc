"""Shared fixtures: scripts in temp dirs run through ``python -m autopersist``."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SUMMARY_RE = re.compile(
    r"autopersist: (?P<calls>\d+) calls, (?P<reused>\d+) reused, "
    r"(?P<computed>\d+) computed, (?P<failed>\d+) failed"
)


@dataclass
class Result:
    """A finished ``autopersist`` (or plain ``python``) subprocess."""

    returncode: int
    stdout: str
    stderr: str

    def counts(self) -> dict[str, int]:
        """The numbers of the end-of-run summary line."""
        match = SUMMARY_RE.search(self.stderr)
        assert match, f"no summary line in stderr:\n{self.stderr}"
        return {key: int(value) for key, value in match.groupdict().items()}


class Project:
    """A temporary project directory with helpers to write and run scripts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = root / ".autopersist"

    def write(self, name: str, source: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
        return path

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("AUTOPERSIST")
        }
        env["PYTHONPATH"] = str(REPO)
        env["PYTHONPYCACHEPREFIX"] = str(self.root / ".pycache")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(extra)
        return env

    def _run(
        self,
        args: list[str],
        env: dict[str, str] | None,
        timeout: float,
        cwd: Path | None = None,
    ) -> Result:
        proc = subprocess.run(
            args,
            cwd=cwd or self.root,
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def cli(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        cwd: Path | None = None,
    ) -> Result:
        """``python -m autopersist ARGS`` in the project directory (or ``cwd``)."""
        return self._run(
            [sys.executable, "-m", "autopersist", *args], env, timeout, cwd
        )

    def run(self, script: str, *args: str, **kw: object) -> Result:
        """``python -m autopersist run SCRIPT ARGS``."""
        return self.cli("run", script, *args, **kw)  # type: ignore[arg-type]

    def python(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        cwd: Path | None = None,
    ) -> Result:
        """Plain ``python ARGS`` (no autopersist) in the project directory (or ``cwd``)."""
        return self._run([sys.executable, *args], env, timeout, cwd)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.store / "store.db")

    def computed_last_run(self) -> dict[str, int]:
        """``{op_id: calls computed}`` in the most recent run."""
        with self.db() as conn:
            rows = conn.execute(
                "SELECT op_id, count(*) FROM calls WHERE status != 'failed' AND run_id = "
                "(SELECT run_id FROM runs ORDER BY started DESC LIMIT 1) GROUP BY op_id"
            ).fetchall()
        return {op: n for op, n in rows}

    def edit(self, name: str, old: str, new: str) -> None:
        """Replace ``old`` (which must occur) by ``new`` in file ``name``."""
        path = self.root / name
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new), encoding="utf-8")

    def calls_of(self, op: str) -> int:
        """Stored computed calls of ``op`` (``module:qualname``)."""
        with self.db() as conn:
            row = conn.execute(
                "SELECT count(*) FROM calls WHERE op_id = ? AND status = 'ok'", (op,)
            ).fetchone()
        return int(row[0])


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)
