"""Errors and warnings raised by autopersist.

Hierarchy::

    AutopersistError
    ├── TransformError            a marked module cannot be parsed or instrumented
    ├── StorageError              the store cannot be opened, read or written
    │   └── SchemaVersionError    the store was written by a newer autopersist
    ├── HashingError (TypeError)  a value has no stable content hash
    ├── QueryError (ValueError)   a query names something that does not exist
    └── NoNewCallsError           ``run --no-new-calls`` met a call it would compute

    AutopersistWarning (UserWarning)
    ├── UnhashableArgumentWarning an op ran unmemoized: an input or output cannot be stored
    ├── ImpureCallWarning         an op call will not be reused: it changed state
    ├── HotOpWarning              a cheap op called very often runs unmemoized for the run
    └── AlreadyImportedWarning    a marked module was imported before the hook was on

Messages say what went wrong, to which object, and what to do about it.
"""

from __future__ import annotations


class AutopersistError(Exception):
    """Base class of every error autopersist raises on purpose."""


class TransformError(AutopersistError):
    """A marked module cannot be parsed or instrumented."""


class StorageError(AutopersistError):
    """The store cannot be opened, read or written."""


class SchemaVersionError(StorageError):
    """The store was written by a newer autopersist than this one."""


class HashingError(AutopersistError, TypeError):
    """A value has no stable content hash or cannot be serialized."""


class QueryError(AutopersistError, ValueError):
    """A query names an op, function, version or value that does not exist."""


class NoNewCallsError(AutopersistError):
    """``run --no-new-calls`` met a call that is not stored and would be computed."""


class AutopersistWarning(UserWarning):
    """Base class of every warning autopersist emits."""


class UnhashableArgumentWarning(AutopersistWarning):
    """An op call ran as plain Python because a value could not be hashed or stored."""


class ImpureCallWarning(AutopersistWarning):
    """An op call changed an argument or a global, so it will never be reused."""


class HotOpWarning(AutopersistWarning):
    """A cheap op called very often was switched to plain execution for this run."""


class AlreadyImportedWarning(AutopersistWarning):
    """A marked module was already imported when the import hook was installed."""
