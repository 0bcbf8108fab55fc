"""The import hook: project modules are rewritten as they are imported.

``PersistFinder`` only decides (``should_instrument``) and swaps the loader of a
project module's spec for ``PersistLoader``. The loader rewrites marked modules
(ops + tracking) and unmarked project modules (tracking only, so their functions
count as dependencies), caches the rewritten bytecode under its own tag
(``*.autopersist-<version>.pyc``, never the plain pyc name), and binds
``__autopersist__`` before the module runs.

``activate`` creates the process's ``Session``: the store, the run record and the
``Runtime``; ``install`` puts the finder on ``sys.meta_path``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib._bootstrap_external as bootstrap_external
import json
import os
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

from autopersist._config import Config, library_prefixes, load_config
from autopersist._names import ENV_ACTIVATE, ENV_ROOT, ENV_RUN_ID, ENV_STORE
from autopersist._runtime import Runtime
from autopersist._storage import Storage
from autopersist._transform import compile_rewritten, has_marker, rewrite_source
from autopersist.errors import AlreadyImportedWarning

#: Part of the cached bytecode's name: a new release never reads an old rewrite.
CACHE_TAG = "autopersist010r1"

_original_cache_from_source = bootstrap_external.cache_from_source


def _tagged_cache_from_source(
    path: str, debug_override: Any = None, *, optimization: Any = None
) -> str:
    return _original_cache_from_source(path, optimization=CACHE_TAG)


@contextlib.contextmanager
def _our_cache_names() -> Iterator[None]:
    """Make SourceLoader read and write rewritten bytecode under our tag only."""
    bootstrap_external.cache_from_source = _tagged_cache_from_source  # type: ignore[assignment]
    try:
        yield
    finally:
        bootstrap_external.cache_from_source = _original_cache_from_source


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
        self.run_id = os.environ.get(ENV_RUN_ID) or uuid.uuid4().hex[:16]
        self.is_child = ENV_RUN_ID in os.environ
        self._runtime: Runtime | None = None
        self._library = library_prefixes()
        self._root = str(config.project_root) + os.sep
        self._finished = False
        # Child processes started by the script join this run and this store.
        os.environ[ENV_ACTIVATE] = "1"
        os.environ[ENV_RUN_ID] = self.run_id
        os.environ[ENV_STORE] = str(config.store_dir)
        os.environ[ENV_ROOT] = str(config.project_root)

    @property
    def started_runtime(self) -> bool:
        return self._runtime is not None

    @property
    def runtime(self) -> Runtime:
        """The runtime, created with the store on first use: a process that never
        imports a project module never touches the store."""
        if self._runtime is None:
            storage = Storage(self.config.store_dir)
            if not self.is_child:
                storage.execute_now(
                    "INSERT OR IGNORE INTO runs (run_id, script, argv, cwd, started, "
                    "python, pid) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        self.run_id,
                        self.script or " ".join(sys.argv),
                        json.dumps(self.argv),
                        os.getcwd(),
                        self.started,
                        sys.version.split()[0],
                        os.getpid(),
                    ),
                )
            self._runtime = Runtime(self.config, storage, self.run_id)
        return self._runtime

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

    def finish(self, status: int | None) -> None:
        """Commit everything and close the run record; safe to call twice."""
        if self._finished or self._runtime is None:
            self._finished = True
            return
        self._finished = True
        runtime = self._runtime
        counters = runtime.counters
        totals = (counters.calls, counters.reused, counters.computed, counters.failed)
        try:
            if self.is_child:
                runtime.storage.add_row(
                    "UPDATE runs SET calls = calls + ?, reused = reused + ?, "
                    "computed = computed + ?, failed = failed + ? WHERE run_id = ?",
                    (*totals, self.run_id),
                )
            else:
                runtime.storage.add_row(
                    "UPDATE runs SET ended = ?, status = ?, calls = calls + ?, "
                    "reused = reused + ?, computed = computed + ?, failed = failed + ?, "
                    "packages = ? WHERE run_id = ?",
                    (
                        time.time(),
                        status,
                        *totals,
                        json.dumps(_packages()),
                        self.run_id,
                    ),
                )
        finally:
            runtime.storage.close()


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


def deactivate(status: int | None = None) -> None:
    """Finish the session (commit, close the run record) and forget it."""
    global _session
    with _session_lock:
        session, _session = _session, None
    if session is not None:
        session.finish(status)


def _finish_at_exit() -> None:
    with contextlib.suppress(Exception):
        deactivate(None)


def _packages() -> dict[str, str]:
    """Versions of the third-party packages this run imported (their
    ``__version__``). Cheap on purpose: ``importlib.metadata`` would scan every
    installed distribution (about 100 ms) at the end of every run."""
    found: dict[str, str] = {}
    stdlib = sys.stdlib_module_names
    for name, module in list(sys.modules.items()):
        if "." in name or name.startswith("_") or name in stdlib:
            continue
        version = getattr(module, "__version__", None)
        if isinstance(version, str):
            found[name] = version
    return dict(sorted(found.items()))


class PersistLoader(SourceFileLoader):
    """Rewrites a project module's source and binds ``__autopersist__`` before it runs."""

    def __init__(self, fullname: str, path: str, session: Session) -> None:
        super().__init__(fullname, path)
        self.session = session

    def source_to_code(  # type: ignore[override]
        self, data: bytes, path: str, *, _optimize: int = -1
    ) -> CodeType:
        return instrumented_code(data, path, debug=self.session.config.debug)

    def get_code(self, fullname: str) -> CodeType | None:
        with _our_cache_names():
            return super().get_code(fullname)

    def exec_module(self, module: ModuleType) -> None:
        path = self.get_filename(module.__name__)
        self.session.runtime.new_module(
            self.session.identity(path), module.__dict__, path
        )
        super().exec_module(module)


def instrumented_code(data: bytes, path: str, *, debug: bool = False) -> CodeType:
    """Rewrite and compile one project module (ops only when it is marked)."""
    source = bootstrap_external.decode_source(data)
    rewritten = rewrite_source(source, path=path, make_ops=has_marker(data))
    if debug:
        sys.stderr.write(
            f"---- autopersist: {path} ----\n{rewritten.text}\n---- end ----\n"
        )
    return compile_rewritten(rewritten.text, path)


class PersistFinder(MetaPathFinder):
    """Finds project modules and gives their specs a ``PersistLoader``."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] == "autopersist":
            return None
        spec = PathFinder.find_spec(fullname, path, target)
        if spec is None or not isinstance(spec.loader, SourceFileLoader):
            return None
        if spec.origin is None or not self.session.is_project_file(spec.origin):
            return None
        spec.loader = PersistLoader(fullname, spec.origin, self.session)
        return spec


class HookHandle:
    """Returned by ``install``; ``uninstall()`` (or leaving a ``with`` block) removes
    the hook and commits the run."""

    def __init__(self, finder: PersistFinder) -> None:
        self.finder = finder

    def uninstall(self) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self.finder)
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
