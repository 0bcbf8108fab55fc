"""``autopersist run``: execute a script or module as ``__main__`` with the hook on.

The main script is compiled here rather than through ``runpy`` because it must be
instrumented like any project module and get ``__autopersist__`` bound before it
runs. An uncaught exception in the script is printed the way Python prints it,
without autopersist's own frames, and gives exit status 1.
"""

from __future__ import annotations

import importlib.util
import os
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
from autopersist._runtime import strip_own_frames
from autopersist.errors import AutopersistError, StorageError, TransformError


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


def _script_code(session: Session, path: str) -> CodeType:
    if not os.access(path, os.R_OK):
        msg = f"cannot read script {path}; check its permissions."
        raise TransformError(msg)
    if session.is_project_file(path):
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


def run(
    config: Config, target: str, args: Sequence[str], *, as_module: bool = False
) -> RunResult:
    """Run ``target`` (a script path, or a module name with ``as_module``) as
    ``__main__`` with the hook on, and return the summary.

    :raises AutopersistError: the store cannot be used, or the script cannot be
        found or instrumented (nothing of the script ran).
    """
    start = time.perf_counter()
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
    session = activate(config, script=display, argv=list(args))
    handle = install()
    status = 0
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
        try:
            exec(code, module.__dict__)
        except SystemExit as exc:
            status = _exit_status(exc.code)
        except KeyboardInterrupt:
            status = 130
            traceback.print_exception(
                KeyboardInterrupt, KeyboardInterrupt(), None, file=sys.stderr
            )
        except AutopersistError:
            status = 1
            raise
        except BaseException as exc:  # the script's own error: print it like Python
            status = 1
            tb = strip_own_frames(exc.__traceback__)
            traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
    except (AutopersistError, StorageError):
        status = 1
        raise
    finally:
        counters = session.runtime.counters
        store = str(session.config.store_dir)
        _remove_finder(handle)
        deactivate(status)
    return RunResult(
        status=status,
        calls=counters.calls,
        reused=counters.reused,
        computed=counters.computed,
        failed=counters.failed,
        seconds=time.perf_counter() - start,
        store=store,
    )


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
