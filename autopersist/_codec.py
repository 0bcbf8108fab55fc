"""Serialization of values for the store: pickle protocol 5.

Protocol 5 writes numpy arrays and other large buffers without an extra copy of
their data. Every ``loads`` builds a new object graph, so a caller that mutates a
reused result never changes what the store or the next caller gets (memoization
rule 2). Only the standard library is imported here.
"""

from __future__ import annotations

import pickle

from autopersist.errors import HashingError

__all__ = ["dumps", "loads"]

_PROTOCOL = 5
_dumps = pickle.dumps
_loads = pickle.loads


def dumps(obj: object) -> bytes:
    """Serialize ``obj``; raise HashingError naming its type if it cannot be."""
    try:
        return _dumps(obj, _PROTOCOL)
    except Exception as exc:
        # pickle raises TypeError, PicklingError, AttributeError (local classes and
        # functions) or RecursionError (too deep); the caller needs one error type.
        t = type(obj)
        name = t.__qualname__
        if t.__module__ not in (None, "builtins"):
            name = f"{t.__module__}.{name}"
        detail = str(exc.args[0]) if exc.args else type(exc).__name__
        detail = detail.splitlines()[0] if detail else type(exc).__name__
        if len(detail) > 160:
            detail = detail[:157] + "..."
        raise HashingError(
            f"cannot store a value of type {name!r}: it cannot be pickled ({detail})"
        ) from exc


def loads(data: bytes) -> object:
    """Rebuild a value from ``dumps`` output; a new, independent object each call.

    Errors of pickle itself propagate unchanged (for instance when the class of a
    stored value no longer exists); the store decides how to report them.
    """
    return _loads(data)
