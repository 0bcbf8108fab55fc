"""autopersist: plain Python scripts whose function calls save, reuse, version and
query themselves.

Mark a module with a ``# persist`` line and run it with ``autopersist run``; or call
``autopersist.install()`` to turn the import hook on in this process.

>>> import autopersist as ap
>>> store = ap.Store()          # doctest: +SKIP
>>> store.calls("train")        # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autopersist.errors import (
    AlreadyImportedWarning,
    AutopersistError,
    AutopersistWarning,
    HashingError,
    HotOpWarning,
    ImpureCallWarning,
    NoNewCallsError,
    QueryError,
    SchemaVersionError,
    StorageError,
    TransformError,
    UnhashableArgumentWarning,
)

if TYPE_CHECKING:
    from autopersist._importhook import HookHandle

__version__ = "0.1.0"

__all__ = [
    "AlreadyImportedWarning",
    "AutopersistError",
    "AutopersistWarning",
    "ComputationFrame",
    "HashingError",
    "HotOpWarning",
    "ImpureCallWarning",
    "NoNewCallsError",
    "QueryError",
    "SchemaVersionError",
    "StorageError",
    "Store",
    "TransformError",
    "UnhashableArgumentWarning",
    "__version__",
    "install",
    "uninstall",
]


def install(store: str | None = None) -> HookHandle:
    """Turn the import hook on in this process (notebooks, tests, REPLs).

    Marked modules imported afterwards are instrumented; their calls are memoized
    into ``store`` (default ``./.autopersist`` or ``$AUTOPERSIST_STORE``).
    Idempotent.

    :returns: a handle; ``handle.uninstall()`` turns the hook off and commits.

    >>> handle = install()       # doctest: +SKIP
    >>> import pipeline          # doctest: +SKIP
    """
    from autopersist._importhook import install as _install

    return _install(store)


def uninstall() -> None:
    """Turn the import hook off and commit the run; a no-op when it is off."""
    import sys

    from autopersist._importhook import PersistFinder, deactivate

    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, PersistFinder)]
    deactivate(0)


def __getattr__(name: str) -> Any:
    # Query classes import pandas and networkx: load them only when asked for.
    if name == "Store":
        from autopersist._query import Store

        return Store
    if name == "ComputationFrame":
        from autopersist._frame import ComputationFrame

        return ComputationFrame
    raise AttributeError(f"module 'autopersist' has no attribute {name!r}")
