"""``autopersist run``: execute a script or module as ``__main__`` with the hook on.

The main script is compiled here rather than through ``runpy`` because it must be
instrumented like any project module and get ``__autopersist__`` bound before it
runs. An uncaught exception in the script is printed the way Python prints it,
without autopersist's own frames, and gives exit status 1.

``run_main_in_place`` does the same for ``AUTOPERSIST=1 python main.py``: the
start-up hook calls it when the interpreter is about to run a marked project
script, so that the script's own functions are ops there too.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import runpy
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from types import CodeType, ModuleType

from autopersist._config import Config
from autopersist._importhook import (
    PersistFinder,
    PersistLoader,
    Session,
    activate,
    current_session,
    deactivate,
    install,
)
from autopersist._names import ENV_DEBUG, ENV_RUN_ID
from autopersist._runtime import strip_own_frames
from autopersist.errors import AutopersistError, TransformError


@dataclass
class RunResult:
    """What the end-of-run summary line reports."""

    status: int
    calls: int
    reused: int
    computed: int
    failed: int
    seconds: float
    store: str
    #: ``AUTOPERSIST_DISABLE=1``: the script ran as plain Python; no summary.
    disabled: bool = False
    #: The script forked and this is the child leaving ``run``: no summary.
    forked: bool = False

    def summary(self) -> str:
        return (
            f"autopersist: {self.calls} calls, {self.reused} reused, "
            f"{self.computed} computed, {self.failed} failed in {self.seconds:.2f}s "
            f"(store: {self.store})"
        )


def _main_module(path: str | None) -> ModuleType:
    module = ModuleType("__main__")
    module.__dict__["__builtins__"] = __builtins__
    if path is not None:
        module.__file__ = path
    sys.modules["__main__"] = module
    return module


def _script_code(session: Session | None, path: str) -> CodeType:
    if not os.access(path, os.R_OK):
        msg = f"cannot read script {path}; check its permissions."
        raise TransformError(msg)
    if session is not None and session.is_project_file(path):
        # Through the loader, so the rewritten script is cached like any module.
        code = PersistLoader("__main__", path, session).get_code("__main__")
    else:
        with open(path, "rb") as handle:
            code = compile(handle.read(), path, "exec", dont_inherit=True)
    assert code is not None
    return code


def _module_code(session: Session, name: str) -> tuple[CodeType, str]:
    """Code and file of ``python -m name`` (a package runs its ``__main__``)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        msg = f"cannot find module {name!r} ({exc}); check the name and sys.path."
        raise TransformError(msg) from exc
    if spec is None:
        msg = f"no module named {name!r}; check the name and that you run from the right directory."
        raise TransformError(msg)
    if spec.submodule_search_locations is not None:
        return _module_code(session, f"{name}.__main__")
    loader = spec.loader
    if loader is None or spec.origin is None or not hasattr(loader, "get_code"):
        msg = f"module {name!r} has no code to run."
        raise TransformError(msg)
    code = loader.get_code(name)
    if code is None:
        msg = f"module {name!r} has no code to run."
        raise TransformError(msg)
    return code, spec.origin


def _execute(code: CodeType, namespace: dict[str, object]) -> int:
    """Run ``code`` as the main program; its exit status, as Python would give it.

    :raises AutopersistError: autopersist itself failed (the message says why).
    """
    try:
        exec(code, namespace)
    except SystemExit as exc:
        return _exit_status(exc.code)
    except KeyboardInterrupt:
        traceback.print_exception(
            KeyboardInterrupt, KeyboardInterrupt(), None, file=sys.stderr
        )
        return 130
    except AutopersistError:
        raise
    except BaseException as exc:  # the script's own error: print it like Python
        tb = strip_own_frames(exc.__traceback__)
        traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
        return 1
    return 0


def run(
    config: Config, target: str, args: Sequence[str], *, as_module: bool = False
) -> RunResult:
    """Run ``target`` (a script path, or a module name with ``as_module``) as
    ``__main__`` with the hook on, and return the summary.

    :raises AutopersistError: the store cannot be used, or the script cannot be
        found or instrumented (nothing of the script ran).
    """
    start = time.perf_counter()
    pid = os.getpid()
    if not as_module:
        script = os.path.abspath(target)
        if not os.path.isfile(script):
            msg = (
                f"no such script: {target}; check the path "
                f"(to run a module, use 'run -m {target}')."
            )
            raise AutopersistError(msg)
        sys.path.insert(0, os.path.dirname(script))
        display = target
    else:
        sys.path.insert(0, os.getcwd())
        display = f"-m {target}"
    _replace_idle_session()
    if config.disable:
        status = _run_plain(target, args, as_module=as_module)
        return RunResult(
            status, 0, 0, 0, 0, time.perf_counter() - start, "", disabled=True
        )
    # An explicit 'run' is a run of its own, even when started by another run.
    os.environ.pop(ENV_RUN_ID, None)
    session = activate(config, script=display, argv=list(args))
    handle = install()
    status = 0
    discard = False
    try:
        if as_module:
            code, path = _module_code(session, target)
        else:
            path = script
            code = _script_code(session, script)
        module = _main_module(path)
        if as_module:
            module.__dict__["__spec__"] = importlib.util.find_spec(target)
        sys.argv = [path, *args]
        if session.is_project_file(path):
            session.runtime.new_module(session.identity(path), module.__dict__, path)
        _collect_start_up_garbage()
        status = _execute(code, module.__dict__)
    except AutopersistError:
        status = 1
        # Bad input met before any call (a syntax error in a marked module, a
        # store that cannot be used): the store stays exactly as it was.
        discard = not _made_calls(session)
        raise
    finally:
        counters = session.runtime.counters if session.started_runtime else None
        store = str(session.config.store_dir)
        _remove_finder(handle)
        deactivate(status, discard=discard)
    totals = session.totals
    if totals is None and counters is not None:
        totals = (counters.calls, counters.reused, counters.computed, counters.failed)
    calls, reused, computed, failed = totals or (0, 0, 0, 0)
    return RunResult(
        status=status,
        calls=calls,
        reused=reused,
        computed=computed,
        failed=failed,
        seconds=time.perf_counter() - start,
        store=store,
        forked=os.getpid() != pid,
    )


def _made_calls(session: Session) -> bool:
    return session.started_runtime and session.runtime.counters.calls > 0


def _run_plain(target: str, args: Sequence[str], *, as_module: bool) -> int:
    """``AUTOPERSIST_DISABLE=1``: run the script exactly as ``python`` would."""
    if as_module:
        sys.argv = [target, *args]
        try:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            return _exit_status(exc.code)
        except KeyboardInterrupt:
            return 130
        except BaseException as exc:
            traceback.print_exception(
                type(exc), exc, exc.__traceback__, file=sys.stderr
            )
            return 1
        return 0
    path = os.path.abspath(target)
    code = _script_code(None, path)
    module = _main_module(path)
    sys.argv = [path, *args]
    return _execute(code, module.__dict__)


def run_main_in_place(path: str) -> int:
    """Run the marked project script ``path`` instrumented in the ``__main__``
    module the interpreter prepared (``AUTOPERSIST=1 python main.py``); the exit
    status. Errors of autopersist itself are one line on stderr, status 1."""
    session = current_session()
    module = sys.modules["__main__"]
    module.__dict__.setdefault("__builtins__", __builtins__)
    module.__file__ = path
    module.__dict__["__cached__"] = None
    try:
        code = _script_code(session, path)
        if session is not None and session.is_project_file(path):
            session.runtime.new_module(session.identity(path), module.__dict__, path)
        _collect_start_up_garbage()
        status = _execute(code, module.__dict__)
    except AutopersistError as exc:
        if os.environ.get(ENV_DEBUG):
            raise
        sys.stderr.write(f"autopersist: {exc}\n")
        status = 1
        if session is not None:
            deactivate(status, discard=not _made_calls(session))
    if session is not None:
        session.exit_status = status
    return status


def _collect_start_up_garbage() -> None:
    """One full collection before the script starts (~1-2 ms).

    autopersist's start-up (its modules, the store, the runtime) leaves the
    collector close to a pass over the older generations, which would otherwise
    fall in the script's first imports or loop: ~0.7 ms in every cached import of
    a marked module, where a plain ``python`` start-up has none.
    """
    gc.collect()


def _replace_idle_session() -> None:
    """Drop a session the startup hook (``AUTOPERSIST=1``) opened before the command
    line was read, so that ``run``'s options (``--store``) apply."""
    session = current_session()
    if session is not None and not session.started_runtime:
        sys.meta_path[:] = [
            f for f in sys.meta_path if not isinstance(f, PersistFinder)
        ]
        deactivate(None)


def _remove_finder(handle: object) -> None:
    finder = getattr(handle, "finder", None)
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
