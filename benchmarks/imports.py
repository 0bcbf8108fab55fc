"""Import of a 3,000-line marked module (rewrite, then cached) and run start-up.

    python benchmarks/imports.py [--lines 3000] [--reps 10]

Every figure comes from fresh interpreters with PYTHONDONTWRITEBYTECODE unset, so
both plain Python and autopersist cache bytecode (autopersist as
``__pycache__/big.cpython-311.opt-autopersist<tag>.pyc``).

Import of ``big.py`` (a generated marked module: ops, helpers, a class, globals),
timed inside ``imp.py`` with ``perf_counter`` around ``import big``:

* first import under ``autopersist run``: the module is rewritten with libcst and
  compiled. ``imp.py`` itself is served from the bytecode cache, so libcst is
  imported inside the timed import (the case of a user who edited one module);
  the store is already open (the runner script is a project file);
* cached import under ``autopersist run``: the rewritten bytecode is read back;
* plain ``python imp.py``: the plain ``.pyc`` (and, for reference, no pyc).

Start-up: wall time of ``python -m autopersist run -q empty.py`` (empty script in
an empty project, bytecode cached, store exists) vs ``python -c pass``; median of
``--reps`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Row,
    ap_args,
    child_env,
    median,
    progress,
    run_child,
    script_main,
    write,
)

RUNNER = """\
import dataclasses  # what big.py imports: loaded before the timer in both cases
import json
import math
import time

t0 = time.perf_counter()
import big

seconds = time.perf_counter() - t0
print("BENCH " + json.dumps({"seconds": seconds, "n": len(vars(big))}))
"""

BENCH = "imports"


def generate_module(lines: int) -> str:
    """A marked module of about ``lines`` lines with a realistic mix of code."""
    out = [
        "# persist",
        '"""Generated for the import benchmark."""',
        "",
        "import math",
        "from dataclasses import dataclass",
        "",
        "SCALE = 3",
        "NAMES = ('alpha', 'beta', 'gamma')",
        "TABLE = {'a': 1, 'b': 2, 'c': 3}",
        "",
    ]
    i = 0
    while len(out) < lines - 14:
        kind = i % 5
        if kind == 0:  # an op with a loop and branches
            out += [
                "",
                f"def op_{i}(values, k=2):",
                f'    """Op number {i}."""',
                "    total = 0",
                "    for v in values:",
                "        if v % k == 0:",
                "            total += v * SCALE",
                "        else:",
                f"            total -= helper_{i + 1}(v)",
                "    return total",
                "",
            ]
        elif kind == 1:  # a helper that is also an op
            out += [
                "",
                f"def helper_{i}(x):",
                "    y = x + len(NAMES)",
                "    z = [y * j for j in range(3)]",
                "    return sum(z) + TABLE.get('a', 0)",
                "",
            ]
        elif kind == 2:  # a procedure (not an op) and a skipped function
            out += [
                "",
                f"def log_{i}(message, sink):",
                "    sink.append(f'{message}!')",
                "",
                "",
                f"def fast_{i}(a, b):  # persist: skip",
                "    return math.hypot(a, b)",
                "",
            ]
        elif kind == 3:  # a class with methods
            out += [
                "",
                "@dataclass",
                f"class Model{i}:",
                "    weight: float = 1.0",
                "    bias: float = 0.0",
                "",
                "    def predict(self, x):",
                "        return self.weight * x + self.bias",
                "",
                "    def fit(self, xs, ys):",
                "        n = len(xs)",
                "        mx, my = sum(xs) / n, sum(ys) / n",
                "        self.weight = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) or 1.0",
                "        self.bias = my - self.weight * mx",
                "        return self",
                "",
            ]
        else:  # an op calling others, with a nested function and a lambda
            out += [
                "",
                f"def pipeline_{i}(data):",
                "    def clean(v):",
                "        return v if v is not None else 0",
                "",
                "    cleaned = [clean(v) for v in data]",
                "    key = lambda v: (v % 7, v)",
                f"    model = Model{i - 1}().fit(cleaned, sorted(cleaned, key=key))",
                f"    return op_{i - 4}(cleaned), model.predict(SCALE)",
                "",
            ]
        i += 1
    return "\n".join(out) + "\n"


def _setup(d: str, lines: int) -> None:
    write(d, "big.py", generate_module(lines))
    write(d, "imp.py", RUNNER)


def _drop_ap_cache(d: str, module: str) -> None:
    for pyc in (Path(d) / "__pycache__").glob(f"{module}.*autopersist*.pyc"):
        pyc.unlink()


def _seconds(child_args: list[object], d: str, *, bytecode: bool = True) -> float:
    return float(
        run_child(child_args, d, env=child_env(bytecode=bytecode)).data["seconds"]
    )


def measure_imports(lines: int, reps: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="apbench-") as d:
        _setup(d, lines)
        # warm: caches the runner's rewritten bytecode and creates the store
        run_child(ap_args("imp.py"), d)
        if not list((Path(d) / "__pycache__").glob("big.*autopersist*.pyc")):
            raise RuntimeError("autopersist wrote no cached bytecode for big.py")
        first = []
        for _ in range(max(3, reps // 3)):
            _drop_ap_cache(d, "big")
            first.append(_seconds(ap_args("imp.py"), d))
        cached = [_seconds(ap_args("imp.py"), d) for _ in range(reps)]
        plain_nocache = [_seconds(["imp.py"], d, bytecode=False) for _ in range(3)]
        run_child(["imp.py"], d)  # writes the plain pyc
        plain = [_seconds(["imp.py"], d) for _ in range(reps)]
        libcst = [
            _seconds(["-c", _TIME_IMPORT.format(module="libcst")], d) for _ in range(3)
        ]
    return {
        "first": median(first),
        "cached": median(cached),
        "plain": median(plain),
        "plain_nocache": median(plain_nocache),
        "libcst": median(libcst),
    }


_TIME_IMPORT = (
    "import json, time; t0 = time.perf_counter(); import {module}; "
    "print('BENCH ' + json.dumps({{'seconds': time.perf_counter() - t0}}))"
)


def measure_startup(reps: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="apbench-") as d:
        write(d, "empty.py", "")
        first = run_child(ap_args("empty.py"), d).wall  # rewrite + new store
        ap = [run_child(ap_args("empty.py"), d).wall for _ in range(reps)]
        bare = [run_child(["-c", "pass"], d).wall for _ in range(reps)]
        script = [run_child(["empty.py"], d).wall for _ in range(reps)]
        imp = [run_child(["-c", "import autopersist.cli"], d).wall for _ in range(reps)]
    return {
        "first": first,
        "ap": median(ap),
        "bare": median(bare),
        "script": median(script),
        "import_cli": median(imp),
    }


def run(lines: int = 3000, reps: int = 10) -> list[Row]:
    rows: list[Row] = []
    progress(f"imports: {lines}-line marked module, {reps} reps")
    m = measure_imports(lines, reps)
    ms = {k: v * 1000 for k, v in m.items()}
    rows.append(
        Row(
            BENCH,
            f"{lines}-line marked module: first import (rewrite, incl. libcst import)",
            "ms",
            ms["first"],
            ms["plain_nocache"],
        )
    )
    rows.append(
        Row(BENCH, "  of which: import libcst (fresh process)", "ms", ms["libcst"])
    )
    diff = ms["cached"] - ms["plain"]
    rows.append(
        Row(
            BENCH,
            f"{lines}-line marked module: cached import",
            "ms",
            ms["cached"],
            ms["plain"],
            target="<= plain + 2 ms",
            met=diff <= 2.0,
        )
    )
    rows.append(Row(BENCH, "  cached import - plain import", "ms", diff))
    progress(f"imports: start-up, {reps} reps")
    startup = measure_startup(reps)
    sms = {k: v * 1000 for k, v in startup.items()}
    diff_s = sms["ap"] - sms["bare"]
    rows.append(
        Row(
            BENCH,
            "start-up: 'autopersist run -q empty.py' vs 'python -c pass'",
            "ms",
            sms["ap"],
            sms["bare"],
            target="<= plain + 150 ms",
            met=diff_s <= 150,
        )
    )
    rows.append(Row(BENCH, "  start-up difference", "ms", diff_s))
    rows.append(
        Row(
            BENCH,
            "  first run (rewrite empty.py, create store)",
            "ms",
            sms["first"],
            sms["script"],
        )
    )
    rows.append(
        Row(
            BENCH,
            "  'python -c \"import autopersist.cli\"'",
            "ms",
            sms["import_cli"],
            sms["bare"],
        )
    )
    return rows


NOTES = (
    "'plain' of the first import is plain Python compiling big.py without a pyc; "
    "of the cached import, plain Python reading its pyc. Start-up figures are wall "
    "times of whole processes (median).",
)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=10)


def main(argv: list[str] | None = None) -> int:
    return script_main(
        __doc__,
        "Imports and start-up",
        NOTES,
        _arguments,
        lambda args: run(args.lines, args.reps),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
