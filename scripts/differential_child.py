"""One run of the differential harness, in a fresh interpreter (see differential.py).

Started as ``python -S -I differential_child.py SPEC`` (``-S`` and no ``-I`` for the
``runtime`` mode, which needs the venv's packages). ``SPEC`` is a marshal file written
by ``differential.py``:

* ``mode``: ``plain`` | ``trace`` | ``ops`` | ``runtime``;
* ``modules``: ``{name: (path, marshalled code)}``, the modules to load from the given
  code instead of their source: the original compiled (``plain``) or the rewrite;
* ``tests``: a unittest name (``test.test_textwrap``) to run, or ``""``;
* ``script``: a module name to run as ``__main__`` instead, or ``""``;
* ``probe``: module names whose functions are called with odd arguments and whose
  metadata (``__name__``, ``inspect.signature``, ...) is recorded;
* ``out``: where to write the marshalled result.

Nothing may be imported before the finder is installed (a module imported early
could not be replaced), hence no imports at module level but ``sys`` and ``marshal``,
and the hand-written ``update_wrapper`` below.
"""

import marshal
import sys

_EXTERNAL = sys.modules["_frozen_importlib_external"]
_CANDIDATES = (None, -1, "a", [1, 2])
_SKIP_NAMES = frozenset({"main", "_main", "_test", "test", "_demo", "demo"})


class _Timeout(BaseException):
    pass


class _Sample:
    """A value only joblib can hash (see ``_make_runtime``)."""


def _update_wrapper(wrapper, func):
    """``functools.update_wrapper`` of Python 3.11, without importing functools."""
    for attr in (
        "__module__",
        "__name__",
        "__qualname__",
        "__doc__",
        "__annotations__",
    ):
        try:
            value = getattr(func, attr)
        except AttributeError:
            pass
        else:
            setattr(wrapper, attr, value)
    wrapper.__dict__.update(getattr(func, "__dict__", {}))
    wrapper.__wrapped__ = func
    return wrapper


class StandIn:
    """``__autopersist__`` without a store: ``op`` wraps like the runtime does
    (``functools.wraps``) but only calls the function."""

    def __init__(self, ops):
        self.ops = ops
        self.registered = False

    def register(self, prefix, rows):
        self.registered = True

    def op(self, index, ignore=(), always=False):
        if not self.ops:
            raise AssertionError("an op decorator in a module rewritten without ops")

        def decorate(func):
            def wrapper(*args, **kwargs):
                return func(*args, **kwargs)

            return _update_wrapper(wrapper, func)

        return decorate


def _make_runtime(spec):
    """The real runtime with a fresh store, every call computed (no reuse)."""
    sys.path.insert(0, spec["repo"])
    from autopersist._config import load_config
    from autopersist._runtime import Runtime
    from autopersist._storage import Storage

    config = load_config(spec["store"])
    storage = Storage(config.store_dir)
    runtime = Runtime(config, storage, "differential")
    runtime._lookup = lambda info, inputs_id: None  # reuse disabled
    # The runtime imports joblib on the first value its own encoders do not cover;
    # do it now, before target modules are replaced, not inside the first op call.
    from autopersist._codec import dumps
    from autopersist._hashing import content_hash

    for value in (_Sample(), [1, "a", 2.0, None, (b"x",), {1: {2}}]):
        content_hash(value)
        dumps(value)
    for name in ("numpy", "cloudpickle"):
        try:
            __import__(name)
        except ImportError:
            pass
    return runtime, storage


class _Flags:
    """What instrumented code reads as ``__autopersist_unseen__[i]``: ``value`` at
    every index (a class of its own: importing collections here would keep the
    harness from testing it, see the module docstring)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __getitem__(self, index):
        return self.value


def _install(spec, runtime):
    modules = spec["modules"]
    mode = spec["mode"]
    seen = set()
    loaded = []
    if mode != "plain":
        # As autopersist.install() does: a function rebuilt from instrumented code
        # with other globals finds a no-op mark in builtins.
        import builtins

        builtins.__autopersist_mark__ = id
        builtins.__autopersist_unseen__ = _Flags(False)

    def bind(name, namespace, path):
        if mode == "plain":
            return
        if runtime is not None:
            state = runtime.new_module(name, namespace, path)
            loaded.append((name, lambda: id(namespace) in runtime._by_namespace))
        else:
            state = namespace["__autopersist__"] = StandIn(ops=mode == "ops")
            namespace["__autopersist_mark__"] = seen.add
            namespace["__autopersist_unseen__"] = _Flags(True)
            loaded.append((name, lambda: state.registered))

    bind.loaded = loaded

    class Loader(_EXTERNAL.SourceFileLoader):
        def get_code(self, fullname):
            return marshal.loads(modules[fullname][1])

        def exec_module(self, module):
            bind(module.__name__, module.__dict__, self.path)
            super().exec_module(module)

    class Finder:
        @staticmethod
        def find_spec(fullname, path=None, target=None):
            entry = modules.get(fullname)
            if entry is None:
                return None
            spec = _EXTERNAL.PathFinder.find_spec(fullname, path, target)
            if spec is None or spec.origin != entry[0]:
                return None
            spec.loader = Loader(fullname, spec.origin)
            return spec

        @staticmethod
        def invalidate_caches():
            pass

    sys.meta_path.insert(0, Finder)
    return bind


def _norm(text, limit=400):
    """Drop what differs between two runs of the same program (addresses, pids)."""
    import re

    text = re.sub(r"0x[0-9a-fA-F]+", "0x?", text)
    text = re.sub(r"@test_\d+_tmp", "@test_PID_tmp", text)
    text = re.sub(r"/tmp/[A-Za-z0-9_.@-]+", "/tmp/T", text)
    return text if len(text) <= limit else text[:limit] + "..."


def _skip_frame(filename):
    return filename == __file__ or "/autopersist/" in filename


def _frames(tb):
    import traceback

    return [
        (f.filename, f.lineno, f.end_lineno, f.colno, f.end_colno, f.name)
        for f in traceback.extract_tb(tb)
        if not _skip_frame(f.filename)
    ]


def _describe(exc):
    """Type, message, own frames, and the chain's types, of an exception."""
    chain = []
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(chain) < 5:
        chain.append(type(cause).__qualname__)
        cause = cause.__cause__ or cause.__context__
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable>"
    return (
        type(exc).__module__ + "." + type(exc).__qualname__,
        _norm(message),
        _frames(exc.__traceback__),
        tuple(chain),
    )


def _run_tests(name):
    import io
    import unittest

    try:
        from test import support

        support.use_resources = []  # no network, cpu-heavy or large-file tests
    except ImportError:
        pass

    outcomes = {}
    details = {}

    class Recorder(unittest.TextTestResult):
        def _record(self, test, outcome, err=None):
            key = test.id() if hasattr(test, "id") else str(test)
            if key in outcomes and outcomes[key] != "pass":
                return  # a failing subtest decides
            outcomes[key] = outcome
            if err is not None and not isinstance(err, str):
                details[key] = _describe(err[1])

        def addSuccess(self, test):
            super().addSuccess(test)
            self._record(test, "pass")

        def addError(self, test, err):
            super().addError(test, err)
            self._record(test, "error", err)

        def addFailure(self, test, err):
            super().addFailure(test, err)
            self._record(test, "fail", err)

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            self._record(test, "skip")

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            self._record(test, "xfail")

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            self._record(test, "xpass")

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            if err is not None:
                outcome = (
                    "fail" if issubclass(err[0], test.failureException) else "error"
                )
                self._record(subtest, outcome, err)
                outcomes.setdefault(test.id(), "pass")

    suite = unittest.defaultTestLoader.loadTestsFromName(name)
    runner = unittest.TextTestRunner(
        stream=io.StringIO(), resultclass=Recorder, verbosity=0
    )
    result = runner.run(suite)
    return {
        "outcomes": outcomes,
        "details": details,
        "run": result.testsRun,
    }


def _functions(name):
    """``(key, function)`` for the functions and methods a module defines."""
    import types

    module = sys.modules.get(name)
    if module is None:
        import importlib

        module = importlib.import_module(name)
    found = []
    for attr, obj in sorted(vars(module).items()):
        if isinstance(obj, types.FunctionType) and obj.__module__ == name:
            found.append((f"{name}:{attr}", obj))
        elif isinstance(obj, type) and obj.__module__ == name:
            for member, value in sorted(vars(obj).items()):
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                elif isinstance(value, property):
                    value = value.fget
                if isinstance(value, types.FunctionType):
                    found.append((f"{name}:{attr}.{member}", value))
    return found


def _attrs(func):
    import inspect

    code = func.__code__
    record = {
        "__name__": func.__name__,
        "__qualname__": func.__qualname__,
        "__module__": func.__module__,
        "__doc__": func.__doc__,
        "__defaults__": _norm(repr(func.__defaults__)),
        "__kwdefaults__": _norm(repr(func.__kwdefaults__)),
        "__annotations__": _norm(repr(func.__annotations__)),
        "__wrapped__": hasattr(func, "__wrapped__"),
        "co_firstlineno": code.co_firstlineno,
        "co_name": code.co_name,
        "co_filename": code.co_filename,
    }
    try:
        record["signature"] = _norm(str(inspect.signature(func)))
    except (TypeError, ValueError) as exc:
        record["signature"] = type(exc).__name__
    try:
        lines, start = inspect.getsourcelines(func)
        record["getsource"] = "".join(lines)
        record["getsourcelines_start"] = start
    except (OSError, TypeError) as exc:
        record["getsource"] = type(exc).__name__
    return record


def _call(func, candidate):
    import inspect
    import io

    target = inspect.unwrap(func)
    code = target.__code__
    defaults = len(target.__defaults__ or ())
    positional = code.co_argcount - defaults
    kwonly = code.co_varnames[
        code.co_argcount : code.co_argcount + code.co_kwonlyargcount
    ]
    keywords = {k: candidate for k in kwonly if k not in (target.__kwdefaults__ or {})}
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = captured = io.StringIO()
    try:
        value = func(*[candidate] * positional, **keywords)
        if inspect.isgenerator(value):
            value = [item for _, item in zip(range(20), value, strict=False)]
        elif inspect.iscoroutine(value):
            value.close()
        outcome = ("ok", _norm(repr(value), 200))
    except _Timeout:
        outcome = ("timeout",)
    except BaseException as exc:  # SystemExit too
        outcome = ("raise", *_describe(exc))
    finally:
        sys.stdout, sys.stderr = stdout, stderr
    return (*outcome, _norm(captured.getvalue(), 200))


def _probe(names, runtime):
    import signal

    if runtime is not None:
        import warnings

        from autopersist.errors import AutopersistWarning

        # its warnings about unstorable values and impure calls are by design
        warnings.filterwarnings("ignore", category=AutopersistWarning)

    def alarm(signum, frame):
        raise _Timeout

    signal.signal(signal.SIGALRM, alarm)
    attrs = {}
    calls = {}
    for name in names:
        for key, func in _functions(name):
            attrs[key] = _attrs(func)
            if func.__name__ in _SKIP_NAMES:
                continue
            for index, candidate in enumerate(_CANDIDATES):
                signal.setitimer(signal.ITIMER_REAL, 2.0)
                try:
                    calls[f"{key}#{index}"] = _call(func, candidate)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
    return attrs, calls


def _run_script(name, bind):
    import runpy

    spec = sys.meta_path[0].find_spec(name)
    namespace = {}
    bind("__main__", namespace, spec.origin)
    try:
        runpy.run_module(
            name, init_globals=namespace, run_name="__main__", alter_sys=True
        )
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        sys.stdout.flush()
        print(f"uncaught {_describe(exc)}", file=sys.stderr)
        return 1
    return 0


def main():
    with open(sys.argv[1], "rb") as handle:
        spec = marshal.load(handle)
    if spec.get("timeout"):
        import faulthandler

        # before the parent kills it: where it was (in stderr), and out
        faulthandler.dump_traceback_later(spec["timeout"], exit=True)
    result = {"mode": spec["mode"]}
    runtime = storage = None
    if spec["runtime"]:
        runtime, storage = _make_runtime(spec)
    present = sorted(name for name in spec["modules"] if name in sys.modules)
    result["preloaded"] = present
    if present and not spec["purge"]:
        result["error"] = "already imported at startup: " + ", ".join(present)
    else:
        for name in present:
            del sys.modules[name]
        bind = _install(spec, runtime)
        if spec["script"]:
            result["exit"] = _run_script(spec["script"], bind)
        if spec["tests"]:
            result["tests"] = _run_tests(spec["tests"])
        if spec["probe"]:
            result["attrs"], result["calls"] = _probe(spec["probe"], runtime)
        result["unregistered"] = sorted({n for n, ok in bind.loaded if not ok()})
        if runtime is not None:
            counters = runtime.counters
            result["counters"] = (counters.calls, counters.computed, counters.failed)
    if storage is not None:
        storage.close()
    sys.stdout.flush()
    sys.stderr.flush()
    with open(spec["out"], "wb") as handle:
        marshal.dump(result, handle)


if __name__ == "__main__":
    main()
