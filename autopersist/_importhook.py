"""The import hook: project modules are rewritten as they are imported.

``PersistFinder`` only decides (``should_instrument``) and swaps the loader of a
project module's spec for ``PersistLoader``. The loader rewrites marked modules
(ops + tracking) and unmarked project modules (tracking only, so their functions
count as dependencies), caches the rewritten bytecode under its own tag
(``*.autopersist-<version>.pyc``, never the plain pyc name), and binds
``__autopersist__`` before the module runs.

``activate`` creates the process's ``Session``: the store, the run record and the
``Runtime``; ``install`` puts the finder on ``sys.meta_path``.

Child processes (docs/durability.md): the session exports ``AUTOPERSIST=1``, the
run id, the store and the project root, and, when autopersist's start-up ``.pth``
is not installed in a site directory (a source checkout on ``PYTHONPATH``),
prepends ``hooks/child-startup`` (a chaining ``sitecustomize``) to ``PYTHONPATH``,
so every Python child turns the hook on and joins the run. A forked child gets
fresh store connections and commits each call at once (workers leave through
``os._exit``). Code rewritten here can also run outside ``PersistLoader`` (``python
-m`` through ``runpy``, ``multiprocessing``'s spawn re-running the main script
through ``runpy.run_path``): ``builtins.__autopersist__`` then binds the module on
its first line.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import gc
import importlib._bootstrap_external as bootstrap_external
import json
import marshal
import mmap
import os
import runpy
import site
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Sequence
from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader
from importlib.util import MAGIC_NUMBER, source_hash
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

from autopersist._config import Config, library_prefixes, load_config
from autopersist._names import (
    ENV_ACTIVATE,
    ENV_ROOT,
    ENV_RUN_ID,
    ENV_STORE,
    MARK_NAME,
    UNSEEN_NAME,
)
from autopersist._ops import ModuleState
from autopersist._runtime import Runtime
from autopersist._storage import Storage
from autopersist._transform import (
    compile_rewritten,
    has_marker,
    rewrite_source,
    source_syntax_error,
)
from autopersist._transform import instrumented_code as instrumented_code_of
from autopersist.errors import AlreadyImportedWarning, AutopersistError, TransformError

#: The start-up hook file installed into site-packages with the package.
STARTUP_PTH = "autopersist-startup.pth"
#: A ``sitecustomize`` that activates the hook in children when the ``.pth`` is not
#: installed (a source checkout used through ``PYTHONPATH``).
CHILD_STARTUP_DIR = Path(__file__).resolve().parent.parent / "hooks" / "child-startup"

#: Part of the cached bytecode's name: a new release never reads an old rewrite.
CACHE_TAG = "autopersist010r5"


def _cached_code(path: str, data: bytes) -> CodeType | None:
    """The rewritten code cached for exactly this source, if any.

    The cache is checked by a hash of the source, not by its mtime and size: an
    edit within the same second that keeps the size (``x * 2`` -> ``x * 3``) must
    never run a stale rewrite, whose code versions would let stale results be reused.
    """
    try:
        cache = bootstrap_external.cache_from_source(path, optimization=CACHE_TAG)
        pyc = _read_cache(cache)
    except (OSError, ValueError, NotImplementedError):
        return None
    try:
        if (
            len(pyc) < 16
            or pyc[:4] != MAGIC_NUMBER
            or int.from_bytes(pyc[4:8], "little") != 0b11  # hash-based, checked
            or pyc[8:16] != source_hash(data)
        ):
            return None
        with memoryview(pyc) as whole, whole[16:] as body:
            code = marshal.loads(body)  # copies all it keeps out of the buffer
    except (EOFError, ValueError, TypeError):
        return None
    finally:
        if not isinstance(pyc, bytes):
            pyc.close()  # the mapping
    return code if isinstance(code, CodeType) else None


def _read_cache(path: str) -> mmap.mmap | bytes:
    """A cache file's content, mapped read-only where the file system allows it.

    Reading a pyc (~200 kB for a 3,000-line module) into a new buffer cost about
    0.1 ms of page faults and copying at every import; a mapping reads the page
    cache in place. Safe because a cache file is only ever replaced by renaming
    a new file over it (``_write_atomic``), never truncated under a reader.

    :raises OSError: the file cannot be opened or read.
    """
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        try:
            return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except ValueError:
            return b""  # empty: not a pyc either
        except OSError:  # no mappings on this file system
            with open(fd, "rb", closefd=False) as handle:
                return handle.read()
    finally:
        os.close(fd)


def _write_cached_code(path: str, data: bytes, code: CodeType) -> None:
    if sys.dont_write_bytecode:
        return
    try:
        cache = bootstrap_external.cache_from_source(path, optimization=CACHE_TAG)
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        payload = (
            MAGIC_NUMBER
            + (0b11).to_bytes(4, "little")
            + source_hash(data)
            + marshal.dumps(code)
        )
        # Written under a temporary name and renamed: readers see all or nothing.
        bootstrap_external._write_atomic(cache, payload, 0o644)  # type: ignore[attr-defined]
    except (OSError, ValueError, NotImplementedError):
        pass  # a read-only tree: rewrite again next time


def module_identity(path: str, root: Path) -> str:
    """``pkg/sub/mod.py`` under ``root`` -> ``pkg.sub.mod``; ``pkg/__init__.py`` -> ``pkg``."""
    relative = Path(path).absolute().relative_to(root)
    parts = list(relative.with_suffix("").parts)
    if parts and parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


class Session:
    """Everything one process needs while autopersist is active in it."""

    def __init__(self, config: Config, *, script: str, argv: Sequence[str]) -> None:
        self.config = config
        self.script = script
        self.argv = list(argv)
        self.started = time.time()
        #: A process started (spawned or forked) by a run joins that run.
        self.is_child = bool(os.environ.get(ENV_RUN_ID))
        self.run_id = os.environ.get(ENV_RUN_ID) or uuid.uuid4().hex[:16]
        #: The exit status to record when the session ends at interpreter exit.
        self.exit_status: int | None = None
        #: ``(calls, reused, computed, failed)`` of the whole run, children
        #: included, read back from the store by ``finish``.
        self.totals: tuple[int, int, int, int] | None = None
        self._runtime: Runtime | None = None
        self._library = library_prefixes()
        self._root = str(config.project_root) + os.sep
        self._finished = False
        export_to_children(config, self.run_id)

    @property
    def root(self) -> str:
        """The project root, ending with a separator."""
        return self._root

    @property
    def started_runtime(self) -> bool:
        return self._runtime is not None

    @property
    def runtime(self) -> Runtime:
        """The runtime, created with the store on first use: a process that never
        imports a project module never touches the store."""
        if self._runtime is None:
            storage = Storage(self.config.store_dir)
            if self.is_child:
                # Workers exit through os._exit: each call commits when it ends,
                # with its counts added to the run's row.
                storage.commit_each_call(self.run_id)
            # Buffered like everything else: a run that fails before it stores
            # anything (a syntax error in a marked module) leaves the store as it was.
            storage.add_row(*self._run_row())
            self._runtime = Runtime(self.config, storage, self.run_id)
        return self._runtime

    def _run_row(self) -> tuple[str, tuple[Any, ...]]:
        """The statement creating this run's row (a child's never overwrites)."""
        row = (
            self.run_id,
            self.script or " ".join(sys.argv),
            json.dumps(self.argv),
            os.getcwd(),
            self.started,
            sys.version.split()[0],
            os.getpid(),
        )
        conflict = " ON CONFLICT (run_id) DO NOTHING" if self.is_child else _UPSERT_RUN
        return _INSERT_RUN + conflict, row

    def after_fork_in_child(self) -> None:
        """A forked child joins the run as a worker (its ``Storage`` has already
        reopened its connections, see ``_storage``)."""
        self.is_child = True
        runtime = self._runtime
        if runtime is None:
            return
        runtime.after_fork_in_child()
        runtime.versions_after_fork()
        runtime.storage.commit_each_call(self.run_id)
        # The parent may not have committed the run's row yet: the counts need it.
        runtime.storage.add_row(*self._run_row())

    def is_project_file(self, path: str) -> bool:
        absolute = os.path.abspath(path)
        return (
            absolute.endswith(".py")
            and absolute.startswith(self._root)
            and not absolute.startswith(self._library)
            and f"{os.sep}site-packages{os.sep}" not in absolute
            and not absolute.startswith(_PACKAGE_ROOT)
        )

    def identity(self, path: str) -> str:
        return module_identity(path, self.config.project_root)

    def finish(self, status: int | None, *, discard: bool = False) -> None:
        """Commit everything and close the run record; safe to call twice.

        :param discard: drop what is not committed yet instead (a run that failed
            on bad input before making any call leaves the store untouched).
        :raises StorageError: the store could not be written (during the run or now).
        """
        if self._finished or self._runtime is None:
            self._finished = True
            return
        self._finished = True
        runtime = self._runtime
        storage = runtime.storage
        if status is None:
            status = self.exit_status
        if discard:
            storage.discard_uncommitted()
        try:
            if not discard:
                # A run that used no op has not recorded its modules' versions yet.
                runtime.record_versions()
            if not discard and not self.is_child:  # children counted as they committed
                counters = runtime.counters
                storage.add_row(
                    "UPDATE runs SET ended = ?, status = ?, calls = calls + ?, "
                    "reused = reused + ?, computed = computed + ?, failed = failed + ?, "
                    "packages = ? WHERE run_id = ?",
                    (
                        time.time(),
                        status,
                        counters.calls,
                        counters.reused,
                        counters.computed,
                        counters.failed,
                        json.dumps(_packages()),
                        self.run_id,
                    ),
                )
                storage.flush()
                self.totals = storage.run_totals(self.run_id)
        finally:
            storage.close()


_INSERT_RUN = (
    "INSERT INTO runs (run_id, script, argv, cwd, started, python, pid) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# A child may have created the row first (its parent opened the store later).
_UPSERT_RUN = (
    " ON CONFLICT (run_id) DO UPDATE SET script = excluded.script, argv = "
    "excluded.argv, cwd = excluded.cwd, started = excluded.started, "
    "python = excluded.python, pid = excluded.pid"
)


def export_to_children(config: Config, run_id: str) -> None:
    """Environment for processes the script starts: they turn the hook on (through
    the start-up ``.pth``, or the ``sitecustomize`` in ``CHILD_STARTUP_DIR`` when
    the ``.pth`` is not installed) and join this run and store."""
    os.environ[ENV_ACTIVATE] = "1"
    os.environ[ENV_RUN_ID] = run_id
    os.environ[ENV_STORE] = str(config.store_dir)
    os.environ[ENV_ROOT] = str(config.project_root)
    if (
        startup_pth_installed()
        or not (CHILD_STARTUP_DIR / "sitecustomize.py").is_file()
    ):
        return
    entry = str(CHILD_STARTUP_DIR)
    current = os.environ.get("PYTHONPATH", "")
    if entry not in current.split(os.pathsep):
        os.environ["PYTHONPATH"] = entry + (os.pathsep + current if current else "")


def startup_pth_installed() -> bool:
    """Whether site.py runs our start-up ``.pth`` in new interpreters."""
    # While site.py is still processing a virtual environment's .pth files (this
    # runs from one), getsitepackages() does not name that environment yet; the
    # site directories on sys.path are also the cheap first look (getsitepackages
    # imports sysconfig).
    on_path = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    if any(os.path.isfile(os.path.join(d, STARTUP_PTH)) for d in on_path):
        return True
    directories = (
        set(site.getsitepackages()) if hasattr(site, "getsitepackages") else set()
    )
    if site.ENABLE_USER_SITE:
        directories.add(site.getusersitepackages())
    return any(
        os.path.isfile(os.path.join(d, STARTUP_PTH))
        for d in directories.difference(on_path)
    )


_PACKAGE_ROOT = str(Path(__file__).parent) + os.sep
_session: Session | None = None
_session_lock = threading.Lock()


def current_session() -> Session | None:
    return _session


def activate(
    config: Config | None = None, *, script: str = "", argv: Sequence[str] = ()
) -> Session:
    """The process's session, created on first use (opens the store, starts a run)."""
    global _session
    with _session_lock:
        if _session is None:
            _session = Session(config or load_config(), script=script, argv=argv)
            atexit.register(_finish_at_exit)
        return _session


def deactivate(status: int | None = None, *, discard: bool = False) -> None:
    """Finish the session (commit, close the run record) and forget it."""
    global _session
    with _session_lock:
        session, _session = _session, None
    if session is not None:
        session.finish(status, discard=discard)


def _finish_at_exit() -> None:
    try:
        deactivate(None)
    except Exception as exc:
        # Nobody is left to catch it: one line, so that a full disk is not silent.
        sys.stderr.write(f"autopersist: {exc}\n")


def _after_fork_in_child() -> None:
    global _session_lock
    _session_lock = threading.Lock()  # another thread may have held it at fork()
    if _session is not None:
        _session.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _packages() -> dict[str, str]:
    """Versions of the third-party packages this run imported (their
    ``__version__``). Cheap on purpose: ``importlib.metadata`` would scan every
    installed distribution (about 100 ms) at the end of every run."""
    found: dict[str, str] = {}
    stdlib = sys.stdlib_module_names
    for name, module in list(sys.modules.items()):
        if "." in name or name.startswith("_") or name in stdlib:
            continue
        version = vars(module).get("__version__")  # getattr may trigger lazy imports
        if isinstance(version, str):
            found[name] = version
    return dict(sorted(found.items()))


class PersistLoader(SourceFileLoader):
    """Rewrites a project module's source and binds ``__autopersist__`` before it runs."""

    def __init__(self, fullname: str, path: str, session: Session) -> None:
        super().__init__(fullname, path)
        self.session = session
        #: The state of the module this loader executes (``exec_module``).
        self._state: ModuleState | None = None

    def source_to_code(  # type: ignore[override]
        self, data: bytes, path: str, *, _optimize: int = -1
    ) -> CodeType:
        return instrumented_code(data, path, debug=self.session.config.debug)

    def get_code(self, fullname: str) -> CodeType | None:
        path = self.get_filename(fullname)
        data = self.get_data(path)
        code = _cached_code(path, data)
        if code is None:
            code = self.source_to_code(data, path)
            _write_cached_code(path, data, code)
            # A rewrite allocates hundreds of thousands of objects (with the
            # collector paused): collect now, on import, rather than leave that
            # work to a collection that would stall the user's code later (~10-30
            # ms in the middle of their first loop).
            gc.collect()
        if self._state is not None:
            self._state.source = data  # for new versions' source, recorded later
        return code

    def exec_module(self, module: ModuleType) -> None:
        path = self.get_filename(module.__name__)
        try:
            self._state = self.session.runtime.new_module(
                self.session.identity(path), module.__dict__, path
            )
        except AutopersistError:
            raise
        except Exception as exc:
            raise _internal_error(path, exc) from exc
        super().exec_module(module)


def instrumented_code(data: bytes, path: str, *, debug: bool = False) -> CodeType:
    """Rewrite and compile one project module (ops only when it is marked).

    :raises TransformError: the module has a syntax error, or (a bug) autopersist
        failed on it; the message says so and names the way out.
    """
    try:
        source = bootstrap_external.decode_source(data)
        if not debug:
            return instrumented_code_of(source, path=path, make_ops=has_marker(data))
        rewritten = rewrite_source(source, path=path, make_ops=has_marker(data))
        sys.stderr.write(
            f"---- autopersist: {path} ----\n{rewritten.text}\n---- end ----\n"
        )
        return compile_rewritten(rewritten.text, path)
    except TransformError:
        raise
    except SyntaxError as exc:
        # The compiler finds some errors the parser does not (a misplaced future
        # import): the user's when the source alone fails the same way.
        mistake = source_syntax_error(bootstrap_external.decode_source(data), path)
        if mistake is not None:
            raise mistake from None
        raise _internal_error(path, exc) from exc
    except Exception as exc:
        raise _internal_error(path, exc) from exc


def _internal_error(path: str, exc: Exception) -> TransformError:
    msg = (
        f"autopersist failed to instrument {path} ({type(exc).__name__}: {exc}); "
        "this is a bug in autopersist: please report it, and set "
        "AUTOPERSIST_DISABLE=1 to run your code without autopersist meanwhile."
    )
    return TransformError(msg)


#: The mark where nothing is tracked: a C-level call without effect. ``id``, not
#: a method of some object: bound in ``builtins``, it must pickle by reference
#: and have a signature like every other builtin (``test_pickle`` and
#: ``test_inspect`` of the standard library check all of them).
_NO_MARK = id


class _NeverUnseen:
    """The marks' flags where nothing is tracked: every flag is down, so the
    mark is never called. ``builtins.__autopersist_unseen__``, for the code of an
    instrumented function rebuilt with other globals (see ``install``)."""

    __slots__ = ()

    def __getitem__(self, index: int) -> bool:
        return False


_NEVER_UNSEEN = _NeverUnseen()


class _LateBinding:
    """``builtins.__autopersist__``: rewritten code executed without our loader
    (``runpy`` for ``python -m``, ``runpy.run_path`` for ``multiprocessing``'s
    spawned children) finds this instead of its module state, and its first line,
    ``register``, binds the real one into the module's globals."""

    def register(self, prefix: str, rows: tuple[tuple[Any, ...], ...]) -> None:
        namespace = sys._getframe(1).f_globals
        path = namespace.get("__file__") or sys._getframe(1).f_code.co_filename
        session = _session
        if (
            session is not None
            and isinstance(path, str)
            and session.is_project_file(path)
        ):
            state = session.runtime.new_module(session.identity(path), namespace, path)
            state.register(prefix, rows)
            return
        # autopersist is off here: the module runs as plain Python.
        namespace["__autopersist__"] = _PlainModule()
        namespace[UNSEEN_NAME] = [False] * len(rows)
        namespace[MARK_NAME] = _NO_MARK


class _PlainModule:
    """Module state for rewritten code that runs while autopersist is off."""

    def register(self, prefix: str, rows: tuple[tuple[Any, ...], ...]) -> None:
        return None

    def op(self, *args: Any, **kwargs: Any) -> Any:
        return lambda func: func


_original_run_path = runpy.run_path


def _run_path(
    path_name: str | os.PathLike[str],
    init_globals: dict[str, Any] | None = None,
    run_name: str | None = None,
) -> dict[str, Any]:
    """``runpy.run_path`` that instruments a project file like an import would:
    ``multiprocessing``'s spawn start method re-runs the main script with it."""
    session = _session
    path = (
        os.path.abspath(path_name) if isinstance(path_name, (str, os.PathLike)) else ""
    )
    run_code = getattr(runpy, "_run_module_code", None)
    if (
        session is None
        or run_code is None
        or not os.path.isfile(path)
        or not session.is_project_file(path)
    ):
        return _original_run_path(path_name, init_globals, run_name)  # type: ignore[arg-type]
    name = run_name or "<run_path>"
    code = PersistLoader(name, path, session).get_code(name)
    result: dict[str, Any] = run_code(
        code, init_globals, name, pkg_name=name.rpartition(".")[0], script_name=path
    )
    return result


class PersistFinder:
    """Finds project modules and gives their specs a ``PersistLoader`` (a meta path
    finder; not derived from ``importlib.abc.MetaPathFinder``, whose import costs a
    millisecond of every run's start-up)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        #: Package directories (``__path__`` entries) -> whether a project file can
        #: be found in them.
        self._near_project: dict[str, bool] = {}

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] == "autopersist":
            return None
        if path is not None and not any(map(self._may_hold_project_files, path)):
            # A submodule of a library package: not searched twice (here and by
            # the PathFinder that loads it).
            return None
        spec = PathFinder.find_spec(fullname, path, target)
        if spec is None or not isinstance(spec.loader, SourceFileLoader):
            return None
        if spec.origin is None or not self.session.is_project_file(spec.origin):
            return None
        spec.loader = PersistLoader(fullname, spec.origin, self.session)
        return spec

    def _may_hold_project_files(self, entry: str) -> bool:
        """Whether ``entry`` is under the project root or holds it."""
        near = self._near_project.get(entry)
        if near is None:
            if not isinstance(entry, str):
                return True  # let PathFinder decide
            directory = os.path.abspath(entry) + os.sep
            root = self.session.root
            near = directory.startswith(root) or root.startswith(directory)
            self._near_project[entry] = near
        return near


class HookHandle:
    """Returned by ``install``; ``uninstall()`` (or leaving a ``with`` block) removes
    the hook and commits the run."""

    def __init__(self, finder: PersistFinder) -> None:
        self.finder = finder

    def uninstall(self) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self.finder)
        if runpy.run_path is _run_path:
            runpy.run_path = _original_run_path
        deactivate(0)

    def __enter__(self) -> HookHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()


def install(
    store: str | os.PathLike[str] | None = None,
    *,
    script: str = "",
    argv: Sequence[str] = (),
) -> HookHandle:
    """Turn the import hook on in this process; idempotent.

    :param store: the store directory (default ``./.autopersist`` or
        ``$AUTOPERSIST_STORE``).
    :returns: a handle whose ``uninstall()`` turns it off and commits the run.
    """
    for finder in sys.meta_path:
        if isinstance(finder, PersistFinder):
            return HookHandle(finder)
    session = activate(load_config(store), script=script, argv=argv)
    finder = PersistFinder(session)
    sys.meta_path.insert(0, finder)
    builtins.__autopersist__ = _LateBinding()  # type: ignore[attr-defined]
    # A function rebuilt from an instrumented one's code with other globals
    # (``types.FunctionType(f.__code__, {"__builtins__": ...})``, as some
    # libraries do) finds the mark here, in builtins, and runs untracked, as
    # plain Python would run it, instead of raising NameError.
    setattr(builtins, MARK_NAME, _NO_MARK)
    setattr(builtins, UNSEEN_NAME, _NEVER_UNSEEN)
    runpy.run_path = _run_path
    _warn_already_imported(session)
    return HookHandle(finder)


def _warn_already_imported(session: Session) -> None:
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if (
            name != "__main__"
            and path
            and "__autopersist__" not in vars(module)
            and session.is_project_file(path)
        ):
            try:
                with open(path, "rb") as handle:
                    marked = has_marker(handle.read())
            except OSError:
                continue
            if marked:
                warnings.warn(
                    f"module {name!r} was imported before autopersist was installed, so "
                    "its calls are not memoized; install the hook before importing it "
                    "(or run the script with 'autopersist run').",
                    AlreadyImportedWarning,
                    stacklevel=3,
                )
