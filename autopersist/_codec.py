"""Serialization of values for the store: pickle protocol 5, large buffers apart.

A value without large buffers is an ordinary protocol-5 pickle (it starts with
``b"\\x80"``). A value holding buffers of at least ``OUT_OF_BAND`` bytes (what
objects hand pickle as a ``PickleBuffer``: numpy arrays, so pandas columns too;
``bytes`` and ``bytearray`` always stay in the pickle) is written in a framed
layout instead, so that loading it needs no copy of those buffers::

    b"APB1"                  magic; "A" is no pickle opcode, so it never starts one
    pickle length, count     little-endian u64, u32
    count x (offset, length) little-endian u64 pairs, offsets from the start
    pickle bytes             the pickle, its large buffers left out (protocol 5)
    buffers                  each buffer's raw bytes at an offset that is a
                             multiple of 64 (numpy is fastest on aligned data)

``loads`` hands the pickle slices of its input as those buffers. Over a private
copy-on-write mapping of a blob file (``_blobfile.read_blob``) the rebuilt arrays
then use the mapped pages themselves: nothing is read until touched, and writes
stay in the process. Every ``loads`` builds a new object graph, so a caller that
mutates a reused result never changes what the store or the next caller gets
(memoization rule 2). Only the standard library is imported here.
"""

from __future__ import annotations

import pickle
import struct

from autopersist.errors import HashingError

__all__ = ["MAGIC", "OUT_OF_BAND", "dumps", "loads"]

_PROTOCOL = 5
_dumps = pickle.dumps
_loads = pickle.loads

#: Buffers at least this large are written out of band (the store's inline limit:
#: a value holding one is in a blob file, which ``loads`` reads without copies).
OUT_OF_BAND = 64 * 1024
MAGIC = b"APB1"
_ALIGN = 64
_HEAD = struct.Struct("<4sQI")  # magic, pickle length, buffer count
_ENTRY = struct.Struct("<QQ")  # a buffer's offset and length


#: Types that never hand pickle a buffer: serialized without the callback (most
#: arguments and results of small ops; making the callback costs ~0.3 µs a value).
_NO_BUFFERS = frozenset({int, float, str, bytes, bool, complex, type(None)})


def dumps(obj: object) -> bytes:
    """Serialize ``obj``; raise HashingError naming its type if it cannot be."""
    if type(obj) in _NO_BUFFERS:
        return _dumps(obj, _PROTOCOL)
    buffers: list[memoryview] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        """False (out of band) for a large contiguous buffer, True to keep it in."""
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: pickle copies it in band
            return True
        if raw.nbytes < OUT_OF_BAND:
            raw.release()
            return True
        buffers.append(raw)
        return False

    try:
        data = _dumps(obj, _PROTOCOL, buffer_callback=out_of_band)
    except Exception as exc:
        # pickle raises TypeError, PicklingError, AttributeError (local classes and
        # functions) or RecursionError (too deep); the caller needs one error type.
        raise HashingError(_refusal(obj, exc)) from exc
    if not buffers:
        return data
    return _framed(data, buffers)


def _refusal(obj: object, exc: Exception) -> str:
    t = type(obj)
    name = t.__qualname__
    if t.__module__ not in (None, "builtins"):
        name = f"{t.__module__}.{name}"
    detail = str(exc.args[0]) if exc.args else type(exc).__name__
    detail = detail.splitlines()[0] if detail else type(exc).__name__
    if len(detail) > 160:
        detail = detail[:157] + "..."
    return f"cannot store a value of type {name!r}: it cannot be pickled ({detail})"


def _framed(data: bytes, buffers: list[memoryview]) -> bytes:
    """The framed layout of a pickle and its out-of-band buffers (one copy of each
    buffer: ``bytes.join`` sizes the result once)."""
    position = _HEAD.size + _ENTRY.size * len(buffers) + len(data)
    entries: list[bytes] = []
    parts: list[bytes | memoryview] = [b"", data]  # the header goes first
    for buffer in buffers:
        padding = -position % _ALIGN
        parts.append(bytes(padding))
        position += padding
        entries.append(_ENTRY.pack(position, buffer.nbytes))
        parts.append(buffer)
        position += buffer.nbytes
    parts[0] = _HEAD.pack(MAGIC, len(data), len(buffers)) + b"".join(entries)
    try:
        return b"".join(parts)
    finally:
        for buffer in buffers:
            buffer.release()


def loads(data: bytes | bytearray | memoryview) -> object:
    """Rebuild a value from ``dumps`` output; a new, independent object each call.

    Out-of-band buffers of writable ``data`` (a ``bytearray``, a copy-on-write
    mapping) are used in place: the rebuilt arrays share its memory, so it must be
    a fresh buffer for every load, as ``Storage.value_bytes`` returns. Those of
    read-only ``data`` (``bytes``) are copied, so the arrays are writable as after
    an ordinary unpickle.

    Errors of pickle itself propagate unchanged (for instance when the class of a
    stored value no longer exists); a damaged frame raises ``UnpicklingError``; the
    store decides how to report them.
    """
    if data[: len(MAGIC)] != MAGIC:  # a plain pickle (every reuse of a small value)
        return _loads(data)
    view = memoryview(data)
    size = len(view)
    if size < _HEAD.size:
        raise pickle.UnpicklingError("the stored value's frame is truncated")
    _, pickle_length, count = _HEAD.unpack_from(view)
    start = _HEAD.size + _ENTRY.size * count
    end = start + pickle_length
    if end > size:
        raise pickle.UnpicklingError("the stored value's frame is truncated")
    buffers: list[bytearray | memoryview] = []
    for index in range(count):
        offset, length = _ENTRY.unpack_from(view, _HEAD.size + _ENTRY.size * index)
        if offset < end or offset + length > size:
            raise pickle.UnpicklingError("the stored value's frame is damaged")
        part = view[offset : offset + length]
        buffers.append(bytearray(part) if view.readonly else part)
    return _loads(view[start:end], buffers=buffers)
