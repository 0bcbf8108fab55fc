"""Every runnable sample works through ``autopersist run``: it prints what plain
Python prints, and its second run computes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SCRIPTS = [
    path
    for path in sorted(SAMPLES.rglob("*.py"))
    if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")
]


@pytest.mark.parametrize(
    "script", SCRIPTS, ids=[str(p.relative_to(SAMPLES)) for p in SCRIPTS]
)
def test_sample_runs_and_second_run_reuses_everything(project, script):
    here = project.root / "sample"
    shutil.copytree(
        script.parent,
        here,
        ignore=shutil.ignore_patterns(".autopersist", "__pycache__"),
    )
    plain = project.python(script.name, cwd=here)
    first = project.cli("run", script.name, cwd=here, timeout=300)
    second = project.cli("run", script.name, cwd=here, timeout=300)
    assert plain.returncode == first.returncode == second.returncode == 0, first.stderr
    assert first.stdout == plain.stdout
    assert second.stdout == plain.stdout
    assert first.counts()["computed"] > 0
    assert second.counts()["computed"] == 0
    assert second.counts()["reused"] > 0


def test_there_are_samples():
    names = {p.name for p in SCRIPTS}
    assert {"hello.py", "pipeline.py"} <= names
