"""Settings read from the environment, once, into a frozen ``Config``."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from autopersist._names import (
    DEFAULT_STORE_DIR,
    ENV_DEBUG,
    ENV_DISABLE,
    ENV_QUIET,
    ENV_ROOT,
    ENV_STORE,
)


@dataclass(frozen=True)
class Config:
    """Where the store and the project are, and the switches that change behaviour."""

    #: The store directory (holds ``store.db`` and ``blobs/``).
    store_dir: Path
    #: Files under this directory (outside virtual environments and site-packages)
    #: belong to the project: they are instrumented and count as dependencies.
    project_root: Path
    #: ``AUTOPERSIST_DEBUG=1``: print rewritten modules and full tracebacks.
    debug: bool = False
    #: ``AUTOPERSIST_DISABLE=1``: never install the hook; scripts run as plain Python.
    disable: bool = False
    #: No end-of-run summary line.
    quiet: bool = False
    #: ``run --no-new-calls``: fail instead of computing a call that is not stored.
    no_new_calls: bool = False
    #: ``run --interactive``: ask before recomputing calls of changed functions.
    interactive: bool = False


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def store_dir_from(value: str | os.PathLike[str] | None) -> Path:
    """The store directory: ``value``, else ``$AUTOPERSIST_STORE``, else ``./.autopersist``."""
    chosen = value or os.environ.get(ENV_STORE) or DEFAULT_STORE_DIR
    return Path(chosen).expanduser().absolute()


def load_config(
    store: str | os.PathLike[str] | None = None, **overrides: object
) -> Config:
    """A ``Config`` from the environment, with explicit ``overrides`` winning."""
    root = Path(os.environ.get(ENV_ROOT) or os.getcwd()).absolute()
    values: dict[str, object] = {
        "store_dir": store_dir_from(store),
        "project_root": root,
        "debug": _flag(ENV_DEBUG),
        "disable": _flag(ENV_DISABLE),
        "quiet": _flag(ENV_QUIET),
    }
    values.update(overrides)
    return Config(**values)  # type: ignore[arg-type]


def library_prefixes() -> tuple[str, ...]:
    """Directories whose files are never project code (stdlib, site-packages, venvs)."""
    import sysconfig

    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            prefixes.add(path)
    return tuple(sorted(str(Path(p).absolute()) + os.sep for p in prefixes if p))
