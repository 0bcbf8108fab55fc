#!/usr/bin/env python
"""Differential harness: real modules behave the same plain and instrumented.

Each case names modules to force through the rewrite (pure-Python modules of the
standard library, some of their test modules, and ``tests/data/syntax_more.py``)
and what to run against them: the module's own stdlib unittest suite, or the module
as a script. Every run happens in a fresh interpreter (``differential_child.py``),
where a meta-path finder loads the chosen modules from code compiled here:

``plain``
    the original source, compiled as ``SourceFileLoader`` would;
``trace``
    ``rewrite_source(make_ops=False)``: tracking only; ``__autopersist_mark__`` is a
    real ``set.add``;
``ops``
    ``rewrite_source(make_ops=True)`` with a stand-in ``__autopersist__`` whose
    ``op()`` wraps like the runtime (``functools.wraps``) but only calls through;
``runtime``
    ``make_ops=True`` through the real ``Runtime`` and a fresh store, with reuse
    disabled (every call computes, is hashed and stored). It needs the venv, so the
    interpreter runs with ``site``; the runtime's own imports come first, so target
    modules it already imported are dropped from ``sys.modules`` and loaded again.
    When such a run differs from ``plain``, it is compared with a plain run set up
    the same way (``plain+rt``: with ``site``, runtime imported, modules reloaded).

Compared with the plain run: the outcome of every test (pass / fail / error / skip
/ ...), for failures the exception type, message and frames (file, line, end line,
columns), the script's stdout, stderr and exit status, and, for probed modules,
every function and method called with odd arguments (result or exception with its
frames) and its metadata (``__name__``, ``__qualname__``, ``__doc__``,
``__code__.co_firstlineno``, ``inspect.signature``, ``inspect.getsource``, ...).
Frames of the harness and of autopersist itself are left out of frame lists: an
op's wrapper frame is a known difference, reported separately.

A static check runs first: the rewritten text, parsed and mapped back to the
original positions by ``_transform._compile``, with the inserted statements and
decorators removed, must be the original syntax tree, positions included.

Usage::

    python scripts/differential.py                  # everything, all modes
    python scripts/differential.py --cases textwrap,json --modes trace,ops
    python scripts/differential.py --static-all     # static check of every stdlib file
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import dataclasses
import functools
import hashlib
import importlib.util
import marshal
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "differential_child.py"
DATA = REPO / "tests" / "data"
STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODES = ("trace", "ops", "runtime")
CACHE = Path(tempfile.gettempdir()) / "autopersist-differential-cache" / "v2"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Case:
    """Modules loaded through the rewrite, and what runs against them."""

    name: str
    #: Module names; ``pkg.*`` means the package and all its submodules.
    targets: tuple[str, ...]
    #: A unittest name to run, or "".
    tests: str = ""
    #: A module to run as ``__main__`` (found on ``path``), or "".
    script: str = ""
    #: Modules whose functions are probed (called with odd arguments).
    probe: tuple[str, ...] = ()
    #: Extra ``sys.path`` entries for the child.
    path: tuple[str, ...] = ()
    #: In the fast subset that CI runs.
    fast: bool = False
    timeout: float = 600


def _c(
    name: str, *targets: str, tests: str = "", probe: bool = True, **kw: Any
) -> Case:
    mods = targets or (name,)
    probed = tuple(t for t in mods if not t.startswith("test.") and "*" not in t)
    return Case(
        name,
        mods,
        tests=tests or f"test.test_{name}",
        probe=probed if probe else (),
        **kw,
    )


CASES: tuple[Case, ...] = (
    Case(
        "syntax_more",
        ("syntax_more",),
        script="syntax_more",
        probe=("syntax_more",),
        path=(str(DATA),),
        fast=True,
    ),
    Case(
        "op_wrapper_gaps",
        ("op_wrapper_gaps",),
        script="op_wrapper_gaps",
        path=(str(DATA),),
        fast=True,
    ),
    _c("textwrap", "textwrap", "test.test_textwrap", fast=True),
    _c("colorsys", "colorsys", "test.test_colorsys", fast=True),
    _c("bisect", "bisect", "test.test_bisect", fast=True),
    _c("heapq", "heapq", "test.test_heapq", fast=True),
    _c("fnmatch", "fnmatch", "test.test_fnmatch", fast=True),
    _c("shlex", "shlex", "test.test_shlex", fast=True),
    _c("string", "string", "test.test_string", fast=True),
    _c("graphlib", "graphlib", "test.test_graphlib", fast=True),
    _c("fractions", "fractions", "test.test_fractions"),
    _c("difflib", "difflib", "test.test_difflib"),
    _c("statistics", "statistics", "test.test_statistics"),
    _c("json", "json.*", "test.test_json.*", tests="test.test_json", probe=False),
    _c("csv", "csv", "test.test_csv"),
    _c("glob", "glob", "test.test_glob", probe=False),
    _c("argparse", "argparse", "test.test_argparse"),
    _c("dataclasses", "dataclasses", "test.test_dataclasses"),
    _c("enum", "enum", "test.test_enum"),
    _c("functools", "functools", "test.test_functools"),
    _c("collections", "collections", "test.test_collections"),
    _c("ipaddress", "ipaddress", "test.test_ipaddress"),
    _c("calendar", "calendar", "test.test_calendar"),
    _c("datetime", "datetime", "test.datetimetester", tests="test.test_datetime"),
    _c("decimal", "_pydecimal", tests="test.test_decimal"),
    _c("base64", "base64", "test.test_base64"),
    _c("pprint", "pprint", "test.test_pprint"),
    _c("reprlib", "reprlib", "test.test_reprlib"),
    _c("copy", "copy", "test.test_copy"),
    _c("operator", "operator", "test.test_operator"),
    _c(
        "tomllib",
        "tomllib.*",
        "test.test_tomllib.*",
        tests="test.test_tomllib",
        probe=False,
    ),
    _c(
        "html",
        "html",
        "html.parser",
        "test.test_htmlparser",
        tests="test.test_htmlparser",
    ),
    _c("urlparse", "urllib.parse", "test.test_urlparse"),
    _c("contextlib", "contextlib", "test.test_contextlib", probe=False),
    _c("abc", "_py_abc", "test.test_abc", probe=False),
    _c(
        "inspect",
        "inspect",
        "test.test_inspect.*",
        tests="test.test_inspect",
        probe=False,
    ),
    _c("traceback", "traceback", "test.test_traceback", probe=False),
    _c("tokenize", "tokenize", "test.test_tokenize", probe=False),
    _c("configparser", "configparser", "test.test_configparser", probe=False),
    _c("pickle", "pickle", "test.pickletester", "test.test_pickle", probe=False),
    _c("typing", "typing", "test.test_typing", probe=False),
    _c("email", "email.*", "test.test_email.*", tests="test.test_email", probe=False),
    _c(
        "zoneinfo",
        "zoneinfo.*",
        "test.test_zoneinfo.*",
        tests="test.test_zoneinfo",
        probe=False,
    ),
    _c("queue", "queue", "test.test_queue", probe=False),
    _c("random", "random", "test.test_random", probe=False),
    _c("uuid", "uuid", "test.test_uuid", probe=False),
    _c("plistlib", "plistlib", "test.test_plistlib", probe=False),
    _c("gettext", "gettext", "test.test_gettext", probe=False),
    _c("sched", "sched", "test.test_sched", probe=False),
    _c("posixpath", "posixpath", "test.test_posixpath", probe=False),
    _c("ast", "ast", "test.test_ast", probe=False),
    _c("dis", "dis", tests="test.test_dis", probe=False),
)


# -- building the code the child loads ------------------------------------------------


def expand_targets(targets: Iterable[str]) -> dict[str, Path]:
    """``{module name: source path}``; ``pkg.*`` stands for the package and all its
    submodules."""
    import pkgutil

    found: dict[str, Path] = {}
    for target in targets:
        name = target.removesuffix(".*")
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin == "frozen":  # posixpath, os, ...
            frozen = STDLIB / f"{name.replace('.', '/')}.py"
            found[name] = frozen
            continue
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            raise LookupError(f"no Python source for module {name!r}")
        found[name] = Path(spec.origin)
        if target.endswith(".*") and spec.submodule_search_locations:
            for info in pkgutil.walk_packages(
                spec.submodule_search_locations, name + "."
            ):
                sub = importlib.util.find_spec(info.name)
                if sub and sub.origin and sub.origin.endswith(".py"):
                    found[info.name] = Path(sub.origin)
    return found


@functools.lru_cache(maxsize=1)
def _transform_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted((REPO / "autopersist" / "_transform").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _kind(mode: str) -> str:
    """What a mode loads: ``plain`` code, or the rewrite without or with ops."""
    if mode in ("plain", "plain+rt"):
        return "plain"
    return "trace" if mode == "trace" else "ops"


def prepare(path: Path, kind: str) -> tuple[bytes, str]:
    """``(marshalled code, static check problem)`` of the module at ``path`` as
    ``kind`` loads it; cached on disk by content, kind and rewriter version."""
    from autopersist._transform import compile_rewritten, rewrite_source

    data = path.read_bytes()
    key = hashlib.sha256(
        b"\0".join(
            [data, kind.encode(), _transform_fingerprint().encode(), str(path).encode()]
        )
    ).hexdigest()
    cached = CACHE / f"{key}.bin"
    if cached.exists():
        code_bytes, problem = marshal.loads(cached.read_bytes())
        return code_bytes, problem
    problem = ""
    if kind == "plain":
        code = compile(data, str(path), "exec", dont_inherit=True)
    else:
        source = importlib.util.decode_source(data)
        try:
            text = rewrite_source(source, path=str(path), make_ops=kind == "ops").text
        except Exception as exc:
            # the child then fails to load it: reported as an error of the mode
            problem = f"rewrite failed: {type(exc).__name__}: {str(exc)[:300]}"
            code = compile(
                "raise ImportError(" + repr(problem) + ")", str(path), "exec"
            )
        else:
            problem = static_check(path, text=text)
            code = compile_rewritten(text, str(path))
    blob = marshal.dumps((marshal.dumps(code), problem))
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    tmp.replace(cached)
    return marshal.dumps(code), problem


def _prepare_star(job: tuple[Path, str]) -> tuple[Path, str, str]:
    import warnings

    warnings.simplefilter("ignore")  # SyntaxWarnings of odd stdlib test files
    return job[0], job[1], prepare(*job)[1]


def prepare_all(paths: Iterable[Path], jobs: int) -> None:
    """Rewrite and compile every module in ``jobs`` processes (fills the cache)."""
    work = [(p, k) for p in sorted(set(paths)) for k in ("plain", "trace", "ops")]
    with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
        for _ in pool.map(_prepare_star, work, chunksize=1):
            pass


# -- the static check ------------------------------------------------------------------


def _is_inserted(node: ast.AST) -> bool:
    from autopersist._names import MARK_NAME, RUNTIME_NAME

    if isinstance(node, ast.Expr):
        node = node.value
    if isinstance(node, ast.BoolOp) and len(node.values) == 2:
        node = node.values[1]  # the mark: "unseen[i] and mark(i)"
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):
        return func.id == MARK_NAME
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == RUNTIME_NAME
        and func.attr in ("register", "op")
    )


def strip_inserted(tree: ast.AST) -> ast.AST:
    """Remove the register call, the marks and the op decorators from ``tree``."""
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody", "decorator_list"):
            items = getattr(node, name, None)
            if isinstance(items, list):
                kept = [item for item in items if not _is_inserted(item)]
                if len(kept) != len(items):
                    setattr(node, name, kept)
    return tree


def _first_difference(a: ast.AST, b: ast.AST) -> str:
    """Where two trees first differ, for a readable report."""

    def walk(x: Any, y: Any, where: str) -> str | None:
        if type(x) is not type(y):
            return f"{where}: {type(x).__name__} != {type(y).__name__}"
        if isinstance(x, ast.AST):
            pos = f"{type(x).__name__}@{getattr(x, 'lineno', '?')}:{getattr(x, 'col_offset', '?')}"
            for attr in ("lineno", "col_offset", "end_lineno", "end_col_offset"):
                if getattr(x, attr, None) != getattr(y, attr, None):
                    return (
                        f"{where}/{pos}: {attr} {getattr(x, attr, None)} != "
                        f"{getattr(y, attr, None)}"
                    )
            for name, value in ast.iter_fields(x):
                found = walk(value, getattr(y, name, None), f"{where}/{pos}.{name}")
                if found:
                    return found
            return None
        if isinstance(x, list):
            if len(x) != len(y):
                return f"{where}: {len(x)} items != {len(y)}"
            for i, (p, q) in enumerate(zip(x, y, strict=True)):
                found = walk(p, q, f"{where}[{i}]")
                if found:
                    return found
            return None
        return None if x == y else f"{where}: {x!r} != {y!r}"

    return walk(a, b, "") or "?"


def static_check(path: Path, *, make_ops: bool = True, text: str | None = None) -> str:
    """ "" when the rewrite of ``path`` (or ``text``, its rewrite) maps back to the
    original syntax tree exactly, otherwise where it does not (or why the rewrite
    failed)."""
    from autopersist._transform import rewrite_source
    from autopersist._transform._compile import rewritten_tree

    data = path.read_bytes()
    source = importlib.util.decode_source(data)
    try:
        original = ast.parse(data, filename=str(path))
    except (SyntaxError, ValueError):
        return ""  # not Python 3.11 (test data): nothing to compare
    try:
        if text is None:
            text = rewrite_source(source, path=str(path), make_ops=make_ops).text
        rewritten = strip_inserted(rewritten_tree(text, str(path)))
    except Exception as exc:
        return f"rewrite failed: {type(exc).__name__}: {str(exc)[:300]}"
    if ast.dump(original, include_attributes=True) == ast.dump(
        rewritten, include_attributes=True
    ):
        return ""
    return _first_difference(original, rewritten)


# -- running and comparing -------------------------------------------------------------


@dataclass
class Run:
    mode: str
    result: dict[str, Any]
    stdout: str
    stderr: str
    returncode: int
    seconds: float


def run_child(case: Case, mode: str, modules: dict[str, Path], workdir: Path) -> Run:
    """One child interpreter running ``case`` with ``modules`` loaded as ``mode``."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / f"{mode}.spec"
    out_path = workdir / f"{mode}.out"
    runtime = mode in ("runtime", "plain+rt")
    spec = {
        "mode": "plain" if mode == "plain+rt" else mode,
        "modules": {
            name: (str(path), prepare(path, _kind(mode))[0])
            for name, path in modules.items()
        },
        "tests": case.tests,
        "script": case.script,
        "probe": list(case.probe),
        "out": str(out_path),
        "runtime": mode == "runtime",
        "purge": runtime,
        "repo": str(REPO),
        "store": str(workdir / f"store-{mode}"),
        "timeout": max(case.timeout - 15, 5),
    }
    if mode == "plain+rt":
        spec["runtime"] = True  # imported, but modules run plain
    spec_path.write_bytes(marshal.dumps(spec))
    cwd = workdir / f"cwd-{mode}"
    cwd.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUTOPERSIST", "PYTHON"))
    }
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if case.path:
        env["PYTHONPATH"] = os.pathsep.join(case.path)
    flags = ["-X", "faulthandler"]
    if not runtime:
        flags += ["-S"]
    if not case.path:
        flags += ["-I"]
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, *flags, str(CHILD), str(spec_path)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=case.timeout,
            stdin=subprocess.DEVNULL,
        )
        returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:  # the child's faulthandler failed
        returncode, stdout, stderr = (
            -9,
            str(exc.stdout or ""),
            f"timeout after {case.timeout}s",
        )
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {}
    if out_path.exists():
        result = marshal.loads(out_path.read_bytes())
    elif not stderr:
        stderr = "no result written"
    return Run(mode, result, stdout, stderr, returncode, seconds)


_NOISE = (
    (re.compile(r"0x[0-9a-fA-F]+"), "0x?"),
    (re.compile(r"@test_\d+_tmp"), "@test_PID_tmp"),
    (re.compile(r"/tmp/[A-Za-z0-9_.@/-]+"), "/tmp/T"),
    (re.compile(r"\d+\.\d+s\b"), "Ns"),
)


def normalize_output(text: str, *, runtime: bool = False) -> str:
    """``text`` without what differs between runs; with ``runtime``, also without the
    warnings autopersist gives by design (unhashable values, impure calls)."""
    if runtime:
        text = _drop_own_warnings(text)
    for pattern, replacement in _NOISE:
        text = pattern.sub(replacement, text)
    return text


def _drop_own_warnings(text: str) -> str:
    from autopersist import errors

    names = "|".join(
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.AutopersistWarning)
    )
    warning = re.compile(rf"^.*:\d+: (?:{names}): .*\n(?:  .*\n)?", re.MULTILINE)
    return warning.sub("", text)


@dataclass
class Comparison:
    """How one mode's run compares with the plain run."""

    mode: str
    tests_run: int = 0
    #: ``{aspect: [difference, ...]}``; aspects: tests, failures, output, exit, calls,
    #: attrs, error.
    diffs: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: ``{attribute: functions}`` differing only because an op is a wrapper.
    wrapper_attrs: dict[str, int] = field(default_factory=dict)

    def add(self, aspect: str, text: str) -> None:
        self.diffs.setdefault(aspect, []).append(text)

    @property
    def behaviour_equal(self) -> bool:
        return not self.diffs


#: Function metadata an op wrapper (``functools.wraps``) cannot make equal.
WRAPPER_ATTRS = frozenset(
    {
        "__wrapped__",
        "co_firstlineno",
        "co_name",
        "co_filename",
        "__defaults__",
        "__kwdefaults__",
    }
)


def _unstable(first: dict[str, Any], second: dict[str, Any]) -> set[str]:
    return {k for k in set(first) | set(second) if first.get(k) != second.get(k)}


def compare(plain: Run, other: Run, unstable: dict[str, set[str]]) -> Comparison:
    comp = Comparison(other.mode, seconds=other.seconds)
    p, o = plain.result, other.result
    if "error" in o or "error" in p or not o or not p:
        timeout = "Timeout (0:" in other.stderr
        comp.add(
            "timeout" if timeout else "error",
            f"plain: {p.get('error') or plain.stderr[-300:]!r} / "
            f"{other.mode}: {o.get('error') or other.stderr[-1500:]!r}",
        )
        return comp
    if o.get("unregistered"):
        comp.add(
            "instrumented",
            "rewrite left out the register call: " + ", ".join(o["unregistered"]),
        )
    if "tests" in p:
        pt, ot = p["tests"], o.get("tests", {})
        comp.tests_run = ot.get("run", 0)
        skip = unstable.get("tests", set())
        po, oo = pt["outcomes"], ot.get("outcomes", {})
        for key in sorted(set(po) | set(oo)):
            if key in skip:
                continue
            if po.get(key) != oo.get(key):
                detail = ot.get("details", {}).get(key)
                comp.add(
                    "tests",
                    f"{key}: {po.get(key)} -> {oo.get(key)}"
                    + (
                        f" [{detail[0]}: {detail[1][:200]} at {detail[2][-3:]}]"
                        if detail
                        else ""
                    ),
                )
            elif (
                key in pt["details"]
                and pt["details"][key] != ot["details"].get(key)
                and key not in unstable.get("details", set())
            ):
                comp.add(
                    "failures",
                    f"{key}: {pt['details'][key]} -> {ot['details'].get(key)}",
                )
    if "exit" in p and p["exit"] != o.get("exit"):
        comp.add("exit", f"{p['exit']} -> {o.get('exit')}")
    if case_compares_output(p):
        for stream in ("stdout", "stderr"):
            a = normalize_output(getattr(plain, stream))
            b = normalize_output(
                getattr(other, stream), runtime=other.mode == "runtime"
            )
            if a != b:
                comp.add("output", f"{stream} differs:\n" + _text_diff(a, b))
    pc, oc = p.get("calls", {}), o.get("calls", {})
    skip = unstable.get("calls", set())
    for key in sorted(set(pc) | set(oc)):
        if key not in skip and pc.get(key) != oc.get(key):
            comp.add("calls", f"{key}: {pc.get(key)} -> {oc.get(key)}")
    pa, oa = p.get("attrs", {}), o.get("attrs", {})
    for key in sorted(set(pa) | set(oa)):
        a, b = pa.get(key, {}), oa.get(key, {})
        for attr in sorted(set(a) | set(b)):
            if a.get(attr) != b.get(attr):
                if (
                    attr in WRAPPER_ATTRS
                    and b.get("__wrapped__")
                    and not a.get("__wrapped__")
                ):
                    comp.wrapper_attrs[attr] = comp.wrapper_attrs.get(attr, 0) + 1
                else:
                    comp.add(
                        "attrs", f"{key} {attr}: {a.get(attr)!r} -> {b.get(attr)!r}"
                    )
    if o.get("preloaded"):
        comp.notes.append("reloaded after the runtime: " + ", ".join(o["preloaded"]))
    return comp


def case_compares_output(result: dict[str, Any]) -> bool:
    """Scripts' output is compared exactly; test suites' output only via outcomes
    (tests print timings, warnings with addresses, ...)."""
    return "exit" in result


def _text_diff(a: str, b: str, limit: int = 40) -> str:
    import difflib

    lines = list(
        difflib.unified_diff(
            a.splitlines(), b.splitlines(), "plain", "other", lineterm=""
        )
    )
    return "\n".join(lines[:limit])


@dataclass
class CaseReport:
    case: Case
    lines: int
    modules: int
    static: list[str]
    plain_tests: int = 0
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    error: str = ""


def _count_lines(paths: Iterable[Path]) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in paths)


def run_case(
    case: Case, modes: Iterable[str], workroot: Path, *, repeat_plain: bool = True
) -> CaseReport:
    """Static check, a plain run (twice, to find unstable tests), and each mode."""
    try:
        modules = case_modules(case)
    except LookupError as exc:
        return CaseReport(case, 0, 0, [], error=str(exc))
    report = CaseReport(case, _count_lines(modules.values()), len(modules), [])
    for name, path in modules.items():
        for kind in ("trace", "ops"):
            problem = prepare(path, kind)[1]
            if problem:
                report.static.append(f"{name} ({kind}): {problem}")
    workdir = workroot / case.name
    plain = run_child(case, "plain", modules, workdir)
    if "error" in plain.result or not plain.result:
        report.error = (
            f"plain run failed: {plain.result.get('error') or plain.stderr[-500:]}"
        )
        return report
    report.plain_tests = plain.result.get("tests", {}).get("run", 0)
    unstable: dict[str, set[str]] = {}
    if repeat_plain:
        again = run_child(case, "plain", modules, workdir / "again")
        if "tests" in plain.result and "tests" in again.result:
            unstable["tests"] = _unstable(
                plain.result["tests"]["outcomes"], again.result["tests"]["outcomes"]
            )
            unstable["details"] = _unstable(
                plain.result["tests"]["details"], again.result["tests"]["details"]
            )
        unstable["calls"] = _unstable(
            plain.result.get("calls", {}), again.result.get("calls", {})
        )
    for mode in modes:
        other = run_child(case, mode, modules, workdir)
        comp = compare(plain, other, unstable)
        if mode == "runtime" and not comp.behaviour_equal:
            # the runtime needs the venv (no -S): compare with a plain run that has
            # it too, and imports the runtime and reloads the modules the same way
            control = run_child(case, "plain+rt", modules, workdir)
            comp = compare(control, other, unstable)
            comp.notes.append(
                "compared with plain+rt (runtime imported, modules reloaded)"
            )
        report.comparisons[mode] = comp
    return report


def case_modules(case: Case) -> dict[str, Path]:
    """``{module name: path}`` of the modules ``case`` loads through the rewrite."""
    if not case.path:
        return expand_targets(case.targets)
    found: dict[str, Path] = {}
    for target in case.targets:
        for entry in case.path:
            path = Path(entry) / f"{target.replace('.', '/')}.py"
            if path.exists():
                found[target] = path
                break
        else:
            raise LookupError(f"no file for {target!r} on {case.path}")
    return found


# -- reporting -------------------------------------------------------------------------


def _cell(comp: Comparison | None) -> str:
    if comp is None:
        return "-"
    if "error" in comp.diffs:
        return "ERROR"
    if "timeout" in comp.diffs:
        return "TIMEOUT"
    if not comp.behaviour_equal:
        return f"NO ({sum(len(v) for v in comp.diffs.values())})"
    return "yes"


def print_table(
    reports: list[CaseReport], modes: tuple[str, ...], out: Any = None
) -> None:
    out = out or sys.stdout
    header = ["case", "modules", "lines", "tests", "static", *modes]
    rows = [header]
    for r in reports:
        rows.append(
            [
                r.case.name,
                str(r.modules),
                str(r.lines),
                str(r.plain_tests) if r.case.tests else "script",
                "ERROR"
                if r.error
                else ("yes" if not r.static else f"NO ({len(r.static)})"),
                *(_cell(r.comparisons.get(m)) if not r.error else "-" for m in modes),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)
    total_lines = sum(r.lines for r in reports)
    total_tests = sum(r.plain_tests for r in reports)
    print(
        f"\n{len(reports)} cases, {sum(r.modules for r in reports)} modules, "
        f"{total_lines} lines, {total_tests} tests",
        file=out,
    )
    for mode in modes:
        comps = [r.comparisons[mode] for r in reports if mode in r.comparisons]
        equal = [c for c in comps if c.behaviour_equal]
        print(
            f"{mode}: behaviour equal in {len(equal)}/{len(comps)} cases, "
            f"{sum(c.tests_run for c in equal)} tests",
            file=out,
        )


def print_details(reports: list[CaseReport], out: Any = None, limit: int = 12) -> None:
    out = out or sys.stdout
    for r in reports:
        lines = []
        if r.error:
            lines.append(f"  error: {r.error}")
        lines += [f"  static: {s}" for s in r.static[:limit]]
        for mode, comp in r.comparisons.items():
            for note in comp.notes:
                lines.append(f"  {mode}: note: {note}")
            if comp.wrapper_attrs:
                shown = ", ".join(
                    f"{k} x{v}" for k, v in sorted(comp.wrapper_attrs.items())
                )
                lines.append(f"  {mode}: note: op wrappers differ in {shown}")
            for aspect, items in comp.diffs.items():
                for item in items[:limit]:
                    lines.append(f"  {mode}: {aspect}: {item}")
                if len(items) > limit:
                    lines.append(f"  {mode}: {aspect}: ... {len(items) - limit} more")
        if lines:
            print(f"\n== {r.case.name}", file=out)
            print("\n".join(lines), file=out)


def iter_stdlib_files() -> Iterator[Path]:
    skip = (
        "site-packages",
        "lib2to3/tests/data",
        "test/badsyntax",
        "test/tokenizedata",
    )
    for path in sorted(STDLIB.rglob("*.py")):
        if not any(part in str(path) for part in skip):
            yield path


def static_all(jobs: int) -> int:
    """The static check over every file of the standard library."""
    files = list(iter_stdlib_files())
    failures = 0
    lines = 0
    started = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
        for path, problems, n in pool.map(_static_one, files, chunksize=4):
            lines += n
            for problem in problems:
                failures += 1
                print(f"{path}: {problem}", flush=True)
    print(
        f"static check: {len(files)} files, {lines} lines, {failures} problems, "
        f"{time.perf_counter() - started:.0f}s"
    )
    return 1 if failures else 0


def _static_one(path: Path) -> tuple[Path, list[str], int]:
    import warnings

    warnings.simplefilter("ignore")
    problems = []
    for make_ops in (False, True):
        problem = static_check(path, make_ops=make_ops)
        if problem:
            problems.append(f"make_ops={make_ops}: {problem}")
            break
    return path, problems, len(path.read_bytes().splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--fast", action="store_true", help="only the CI subset")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--details", type=int, default=12, help="differences shown per aspect"
    )
    parser.add_argument(
        "--static-all", action="store_true", help="static check of the stdlib"
    )
    parser.add_argument("--no-repeat", action="store_true", help="run plain once only")
    parser.add_argument("--timeout", type=float, help="seconds per run (default 600)")
    args = parser.parse_args(argv)
    if args.static_all:
        return static_all(args.jobs)
    modes = tuple(m for m in args.modes.split(",") if m)
    cases = [c for c in CASES if not args.fast or c.fast]
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = [c for c in cases if c.name in wanted]
    if args.timeout:
        cases = [dataclasses.replace(c, timeout=args.timeout) for c in cases]
    reports: list[CaseReport] = []
    paths = []
    for case in cases:
        try:
            paths += (case_modules(case)).values()
        except LookupError:
            pass
    prepare_all(paths, args.jobs)
    print(f"prepared {len(set(paths))} modules", file=sys.stderr, flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="differential-") as tmp,
        concurrent.futures.ThreadPoolExecutor(args.jobs) as pool,
    ):
        futures = {
            pool.submit(
                run_case, c, modes, Path(tmp), repeat_plain=not args.no_repeat
            ): c
            for c in cases
        }
        for future in concurrent.futures.as_completed(futures):
            report = future.result()
            reports.append(report)
            print(f"done: {report.case.name}", file=sys.stderr, flush=True)
    order = {c.name: i for i, c in enumerate(cases)}
    reports.sort(key=lambda r: order[r.case.name])
    print_table(reports, modes)
    print_details(reports, limit=args.details)
    ok = all(
        not r.error
        and not r.static
        and all(c.behaviour_equal for c in r.comparisons.values())
        for r in reports
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
