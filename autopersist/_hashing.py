"""Content hashes of values: equal content gives the same id in every process and run.

Every value is encoded into a byte stream that starts with a one-byte type tag and
length-prefixes everything of variable size, so two values of different types or
shapes can never produce the same stream; the stream is then hashed with sha256 and
truncated to 16 bytes (32 hex characters). Nothing depends on ``hash()``, ``id()``
or PYTHONHASHSEED.

The common small values (None, bool, int, float, complex, str, bytes, containers of
them) are encoded by hand, because the runtime hashes every argument of every call
and this has to cost about a microsecond. numpy and pandas are never imported here:
their types are recognised by ``type(obj).__module__`` and looked up in
``sys.modules``, which only holds them if the user's program imported them already.
Everything else goes to ``joblib.hash`` (imported on first use).

Changing any encoding below changes the hash of existing values and so invalidates
every stored call of every user: the digests pinned in ``tests/test_hashing.py``
guard against doing so by accident.
"""

from __future__ import annotations

import _thread
import io
import struct
import sys
import types
import weakref
from collections.abc import Callable
from functools import partial
from hashlib import sha256
from typing import Any

from autopersist.errors import HashingError

__all__ = [
    "combine",
    "content_hash",
    "hash_bytes",
    "is_immutable",
    "set_function_resolver",
]

# --------------------------------------------------------------------------- format
#
# Type tags, one byte each. Each value's encoding begins with exactly one of these,
# which keeps the types apart (1, 1.0, True, "1", b"1" all differ) and makes every
# encoding self-delimiting, so concatenations of encodings are unambiguous.
# hash_bytes and combine start their streams with b"\x01" and b"\x02", bytes that no
# value encoding starts with, so the three kinds of hashes can never coincide.
_T_NONE = b"N"
_T_TRUE = b"T"
_T_FALSE = b"F"
_T_ELLIPSIS = b"E"
_T_INT = b"i"  # fits in 64 bits: 8 bytes, little-endian, signed
_T_BIGINT = b"I"  # length + two's complement bytes
_T_FLOAT = b"f"
_T_COMPLEX = b"c"
_T_STR = b"s"  # length + utf-8 (surrogatepass)
_T_STR_LARGE = b"u"  # length + sha256 of the utf-8: avoids copying large text
_T_BYTES = b"b"
_T_BYTES_LARGE = b"h"
_T_BYTEARRAY = b"y"
_T_BYTEARRAY_LARGE = b"Y"
_T_TUPLE = b"t"  # count + elements
_T_LIST = b"l"
_T_DICT = b"d"  # count + item encodings sorted bytewise (any key types)
_T_DICT_STRKEYS = b"D"  # count + (key, value) in key order (all keys are str)
_T_SET = b"z"  # count + element encodings sorted bytewise
_T_SET_NATURAL = b"w"  # count + elements in natural order (all str or all int)
_T_FROZENSET = b"Z"
_T_FROZENSET_NATURAL = b"W"
_T_NDARRAY = b"A"  # dtype + shape + sha256 of the C-order buffer
_T_NPSCALAR = b"g"  # dtype + raw bytes
_T_PANDAS = b"P"  # then a sub-tag: frame, series, index
_T_FUNCTION = b"L"
_T_FUNCTION_BACKREF = b"R"  # a function met again inside its own closure
_T_CODE = b"C"  # sha256 of the normalized code object
_T_VERSION = b"v"  # a code version given by the resolver hook
_T_CLOSURE = b"k"
_T_EMPTY_CELL = b"e"
_T_METHOD = b"M"
_T_BUILTIN = b"B"
_T_PARTIAL = b"p"
_T_CLASS = b"K"
_T_FALLBACK = b"J"  # type name + joblib.hash

_DOMAIN_BYTES = b"\x01"
_DOMAIN_COMBINE = b"\x02"

_HEX_LEN = 32
_LARGE = 1 << 16  # bytes-like values above this are hashed apart instead of copied
_MAX_DEPTH = 200  # nesting levels; deeper (or self-containing) values are refused

_hdr = struct.Struct("<cQ").pack  # tag + length or count
_int64 = struct.Struct("<cq").pack
_float = struct.Struct("<cd").pack
_u64 = struct.Struct("<Q").pack
_code_hdr = struct.Struct("<c6q").pack
_struct_error = struct.error

_NAN = b"\x00\x00\x00\x00\x00\x00\xf8\x7f"  # one NaN, whatever the payload or sign
_FLOAT_NAN = _T_FLOAT + _NAN


class _TooDeep(Exception):
    """Internal: nesting exceeded _MAX_DEPTH (deep or self-referential data)."""


# ------------------------------------------------------------------- public helpers


def content_hash(obj: object) -> str:
    """The content hash of ``obj``: 32 lowercase hex characters.

    Raises HashingError for values whose content has no stable hash (generators,
    open files, locks, modules, self-referential containers, unpicklable objects).
    """
    buf = bytearray()
    try:
        _enc(obj, buf, 0)
    except _TooDeep:
        reason = (
            "it contains itself"
            if _contains_itself(obj)
            else f"it is nested more than {_MAX_DEPTH} levels deep"
        )
        raise HashingError(
            f"cannot hash a value of type {_type_name(type(obj))!r}: {reason}"
        ) from None
    except RecursionError as exc:
        raise HashingError(
            f"cannot hash a value of type {_type_name(type(obj))!r}: "
            "it is nested too deeply to encode"
        ) from exc
    return sha256(buf).hexdigest()[:_HEX_LEN]


def hash_bytes(data: bytes, tag: bytes = b"") -> str:
    """A 32-hex hash of raw bytes (any bytes-like object), separated by ``tag``."""
    h = sha256(_hdr(_DOMAIN_BYTES, len(tag)) + tag)
    h.update(data)
    return h.hexdigest()[:_HEX_LEN]


def combine(*parts: str) -> str:
    """A 32-hex hash of an ordered sequence of strings (length-prefixed)."""
    buf = bytearray(_hdr(_DOMAIN_COMBINE, len(parts)))
    for part in parts:
        b = part.encode("utf-8", "surrogatepass")
        buf += _u64(len(b))
        buf += b
    return sha256(buf).hexdigest()[:_HEX_LEN]


_IMMUTABLE_LEAVES = frozenset({type(None), bool, int, float, complex, str, bytes})
_IMMUTABLE_MAX_DEPTH = 16


def is_immutable(obj: object) -> bool:
    """True when ``obj`` cannot change in place (so it need not be re-hashed)."""
    return _immutable(obj, 0)


def _immutable(obj: object, depth: int) -> bool:
    t = type(obj)
    if t in _IMMUTABLE_LEAVES:
        return True
    if t is tuple or t is frozenset:
        if depth >= _IMMUTABLE_MAX_DEPTH:
            return False  # unknown, so the caller re-hashes: always safe
        depth += 1
        for x in obj:  # type: ignore[attr-defined]
            if type(x) not in _IMMUTABLE_LEAVES and not _immutable(x, depth):
                return False
        return True
    return False


# The runtime computes code versions from normalized syntax trees; when set, this
# hook lets function values be identified by that version instead of bytecode.
_resolver: Callable[[types.FunctionType], str | None] | None = None


def set_function_resolver(
    resolver: Callable[[types.FunctionType], str | None] | None,
) -> None:
    """Use ``resolver(fn)`` (when it returns a string) as the code identity of ``fn``.

    Defaults and closure values are hashed as well either way. ``None`` removes it.
    """
    global _resolver
    _resolver = resolver


# ------------------------------------------------------------------------ encoder


def _enc(obj: Any, buf: bytearray, depth: int) -> None:
    """Append the encoding of ``obj`` to ``buf``.

    The most common types are tested inline, in order of frequency, because a
    dispatch call costs as much as encoding a small int.
    """
    t = type(obj)
    if t is str:
        b = obj.encode("utf-8", "surrogatepass")
        if len(b) <= _LARGE:
            buf += _hdr(_T_STR, len(b))
            buf += b
        else:
            buf += _hdr(_T_STR_LARGE, len(b))
            buf += sha256(b).digest()
        return
    if t is int:
        try:
            buf += _int64(_T_INT, obj)
        except _struct_error:
            _enc_bigint(obj, buf)
        return
    if t is float:
        if obj == obj:
            buf += _float(_T_FLOAT, obj)
        else:
            buf += _FLOAT_NAN
        return
    if t is tuple or t is list:
        if depth >= _MAX_DEPTH:
            raise _TooDeep
        buf += _hdr(_T_TUPLE if t is tuple else _T_LIST, len(obj))
        depth += 1
        for x in obj:
            tx = type(x)
            if tx is int:
                try:
                    buf += _int64(_T_INT, x)
                    continue
                except _struct_error:
                    pass
            elif tx is str and len(x) < 256:
                b = x.encode("utf-8", "surrogatepass")
                buf += _hdr(_T_STR, len(b))
                buf += b
                continue
            _enc(x, buf, depth)
        return
    if t is dict:
        _enc_dict(obj, buf, depth)
        return
    if obj is None:
        buf += _T_NONE
        return
    if t is bool:
        buf += _T_TRUE if obj else _T_FALSE
        return
    handler = _DISPATCH.get(t)
    if handler is None:
        handler = _classify(t)
    handler(obj, buf, depth)


def _enc_bigint(obj: int, buf: bytearray) -> None:
    b = obj.to_bytes(obj.bit_length() // 8 + 1, "little", signed=True)
    buf += _hdr(_T_BIGINT, len(b))
    buf += b


def _enc_complex(obj: complex, buf: bytearray, depth: int) -> None:
    buf += _T_COMPLEX
    for part in (obj.real, obj.imag):
        buf += _float(_T_FLOAT, part) if part == part else _FLOAT_NAN


def _blob(buf: bytearray, small: bytes, large: bytes, data: Any) -> None:
    n = len(data)
    if n <= _LARGE:
        buf += _hdr(small, n)
        buf += data
    else:
        buf += _hdr(large, n)
        buf += sha256(data).digest()


def _enc_bytes(obj: bytes, buf: bytearray, depth: int) -> None:
    _blob(buf, _T_BYTES, _T_BYTES_LARGE, obj)


def _enc_bytearray(obj: bytearray, buf: bytearray, depth: int) -> None:
    _blob(buf, _T_BYTEARRAY, _T_BYTEARRAY_LARGE, obj)


def _enc_ellipsis(obj: object, buf: bytearray, depth: int) -> None:
    buf += _T_ELLIPSIS


def _enc_dict(obj: dict[Any, Any], buf: bytearray, depth: int) -> None:
    if depth >= _MAX_DEPTH:
        raise _TooDeep
    depth += 1
    for k in obj:
        if type(k) is not str:
            break
    else:
        # All keys are str (the common case): sorting the keys themselves gives a
        # canonical order without encoding each item separately.
        buf += _hdr(_T_DICT_STRKEYS, len(obj))
        for k in sorted(obj):
            kb = k.encode("utf-8", "surrogatepass")
            buf += _u64(len(kb))
            buf += kb
            v = obj[k]
            if type(v) is int:
                try:
                    buf += _int64(_T_INT, v)
                    continue
                except _struct_error:
                    pass
            _enc(v, buf, depth)
        return
    # Keys of mixed or unorderable types: sort the items by their encodings, which
    # are unique per key and self-delimiting, so the order is canonical.
    items = []
    for k, v in obj.items():
        sub = bytearray()
        _enc(k, sub, depth)
        _enc(v, sub, depth)
        items.append(sub)
    items.sort()
    buf += _hdr(_T_DICT, len(items))
    for sub in items:
        buf += sub


def _enc_anyset(
    obj: set[Any] | frozenset[Any],
    buf: bytearray,
    depth: int,
    natural_tag: bytes,
    generic_tag: bytes,
) -> None:
    if depth >= _MAX_DEPTH:
        raise _TooDeep
    depth += 1
    first = None
    for x in obj:
        tx = type(x)
        if first is None:
            if tx is not str and tx is not int:
                break
            first = tx
        elif tx is not first:
            break
    else:
        # All str or all int: their natural order is canonical and cheap.
        buf += _hdr(natural_tag, len(obj))
        for x in sorted(obj):
            _enc(x, buf, depth)
        return
    parts = []
    for x in obj:
        sub = bytearray()
        _enc(x, sub, depth)
        parts.append(sub)
    parts.sort()
    buf += _hdr(generic_tag, len(parts))
    for sub in parts:
        buf += sub


def _enc_set(obj: set[Any], buf: bytearray, depth: int) -> None:
    _enc_anyset(obj, buf, depth, _T_SET_NATURAL, _T_SET)


def _enc_frozenset(obj: frozenset[Any], buf: bytearray, depth: int) -> None:
    _enc_anyset(obj, buf, depth, _T_FROZENSET_NATURAL, _T_FROZENSET)


def _enc_name(buf: bytearray, tag: bytes, name: str) -> None:
    b = name.encode("utf-8", "surrogatepass")
    buf += _hdr(tag, len(b))
    buf += b


def _type_name(t: type) -> str:
    module = getattr(t, "__module__", None)
    qualname = getattr(t, "__qualname__", None) or getattr(t, "__name__", "?")
    if not module or module == "builtins":
        return str(qualname)
    return f"{module}.{qualname}"


# ---------------------------------------------------------------- functions, code

# Python 3.14 marks code objects that carry a docstring; before that, the first
# constant of a ``def`` is always its docstring or None.
_CO_HAS_DOCSTRING = 0x4000000
_HAS_DOCSTRING_FLAG = sys.version_info >= (3, 14)
_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08
_CO_NEWLOCALS = 0x02

# id(code) -> (weak reference, digest). Keyed by id, checked by identity: hashing a
# code object is the expensive part of hashing a lambda and code objects live long.
_code_cache: dict[int, tuple[weakref.ref[types.CodeType], bytes]] = {}


def _forget_code(key: int) -> Callable[[object], None]:
    def drop(_ref: object) -> None:
        _code_cache.pop(key, None)

    return drop


def _code_digest(code: types.CodeType) -> bytes:
    key = id(code)
    hit = _code_cache.get(key)
    if hit is not None and hit[0]() is code:
        return hit[1]
    flags = code.co_flags
    consts: tuple[Any, ...] = code.co_consts
    # Docstrings do not change behaviour: drop a def's docstring slot (docstring or
    # None). Lambdas and comprehensions are named "<...>" and have no such slot.
    if consts and flags & _CO_NEWLOCALS and not code.co_name.startswith("<"):
        if _HAS_DOCSTRING_FLAG:
            if flags & _CO_HAS_DOCSTRING:
                consts = consts[1:]
            flags &= ~_CO_HAS_DOCSTRING
        elif consts[0] is None or type(consts[0]) is str:
            consts = consts[1:]
    sub = bytearray(
        _code_hdr(
            _T_CODE,
            code.co_argcount,
            code.co_posonlyargcount,
            code.co_kwonlyargcount,
            flags,
            len(code.co_freevars),
            len(code.co_cellvars),
        )
    )
    # Parameter names matter (keyword calls); other local names, line numbers, the
    # file name and the function's own name do not.
    nparams = (
        code.co_argcount
        + code.co_kwonlyargcount
        + bool(flags & _CO_VARARGS)
        + bool(flags & _CO_VARKEYWORDS)
    )
    _enc(code.co_varnames[:nparams], sub, 0)
    _blob(sub, _T_BYTES, _T_BYTES_LARGE, code.co_code)
    _blob(sub, _T_BYTES, _T_BYTES_LARGE, getattr(code, "co_exceptiontable", b""))
    _enc(code.co_names, sub, 0)
    _enc(consts, sub, 0)  # nested code objects go through _enc_code
    digest = sha256(sub).digest()
    _code_cache[key] = (weakref.ref(code, _forget_code(key)), digest)
    return digest


def _enc_code(obj: types.CodeType, buf: bytearray, depth: int) -> None:
    buf += _T_CODE
    buf += _code_digest(obj)


# Functions being encoded on this thread: a recursive closure (a nested function
# that calls itself) refers to itself through a cell.
_tls = _thread._local()


def _enc_function(fn: types.FunctionType, buf: bytearray, depth: int) -> None:
    if depth >= _MAX_DEPTH:
        raise _TooDeep
    stack: list[types.FunctionType] | None = getattr(_tls, "functions", None)
    if stack is None:
        stack = _tls.functions = []
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is fn:
            buf += _hdr(_T_FUNCTION_BACKREF, len(stack) - i)
            return
    buf += _T_FUNCTION
    resolver = _resolver
    version = resolver(fn) if resolver is not None else None
    if version is not None:
        _enc_name(buf, _T_VERSION, version)
    else:
        buf += _T_CODE
        buf += _code_digest(fn.__code__)
    depth += 1
    stack.append(fn)
    try:
        _enc(fn.__defaults__, buf, depth)
        _enc(fn.__kwdefaults__, buf, depth)
        closure = fn.__closure__ or ()
        buf += _hdr(_T_CLOSURE, len(closure))
        for cell in closure:
            try:
                value = cell.cell_contents
            except ValueError:  # a free variable not assigned yet
                buf += _T_EMPTY_CELL
                continue
            _enc(value, buf, depth)
    finally:
        stack.pop()


def _enc_method(obj: types.MethodType, buf: bytearray, depth: int) -> None:
    if depth >= _MAX_DEPTH:
        raise _TooDeep
    buf += _T_METHOD
    _enc(obj.__func__, buf, depth + 1)
    _enc(obj.__self__, buf, depth + 1)


def _enc_builtin(obj: types.BuiltinFunctionType, buf: bytearray, depth: int) -> None:
    owner = obj.__self__
    if owner is None or isinstance(owner, types.ModuleType):
        module = getattr(obj, "__module__", None) or getattr(owner, "__name__", "")
        _enc_name(buf, _T_BUILTIN, f"{module}.{obj.__qualname__}")
        buf += _T_NONE
        return
    # A builtin bound to an object ([].append, random.random): the object matters.
    if depth >= _MAX_DEPTH:
        raise _TooDeep
    _enc_name(buf, _T_BUILTIN, obj.__qualname__)
    _enc(owner, buf, depth + 1)


def _enc_partial(obj: partial[Any], buf: bytearray, depth: int) -> None:
    if depth >= _MAX_DEPTH:
        raise _TooDeep
    buf += _T_PARTIAL
    depth += 1
    _enc(obj.func, buf, depth)
    _enc(obj.args, buf, depth)
    _enc(obj.keywords, buf, depth)


def _enc_class(obj: type, buf: bytearray, depth: int) -> None:
    _enc_name(buf, _T_CLASS, f"{obj.__module__}.{obj.__qualname__}")


# ------------------------------------------------------------------ numpy, pandas


def _dtype_descr(dtype: Any) -> str:
    # dtype.str loses field names of structured dtypes ("|V12"); descr keeps them.
    if dtype.fields is None and dtype.subdtype is None:
        return str(dtype.str)
    return repr(dtype.descr)


def _buffer_digest(arr: Any) -> bytes:
    """sha256 of a numpy array's C-order bytes, without copying when contiguous."""
    if not arr.flags.c_contiguous:
        arr = sys.modules["numpy"].ascontiguousarray(arr)
    try:
        return sha256(arr).digest()  # hashlib reads the buffer in place
    except (BufferError, TypeError, ValueError):
        return sha256(arr.tobytes()).digest()


def _enc_ndarray(arr: Any, buf: bytearray, depth: int) -> None:
    if arr.dtype.hasobject:
        _enc_fallback(arr, buf, depth)  # elements are arbitrary Python objects
        return
    _enc_name(buf, _T_NDARRAY, _dtype_descr(arr.dtype))
    buf += _u64(arr.ndim)
    for n in arr.shape:
        buf += _u64(n)
    buf += _buffer_digest(arr)


def _enc_npscalar(obj: Any, buf: bytearray, depth: int) -> None:
    if obj.dtype.hasobject:
        _enc_fallback(obj, buf, depth)
        return
    _enc_name(buf, _T_NPSCALAR, _dtype_descr(obj.dtype))
    _blob(buf, _T_BYTES, _T_BYTES_LARGE, obj.tobytes())


def _enc_pandas(obj: Any, buf: bytearray, depth: int) -> None:
    pd = sys.modules["pandas"]
    if not isinstance(obj, (pd.DataFrame, pd.Series, pd.Index)):
        _enc_fallback(obj, buf, depth)
        return
    if depth >= _MAX_DEPTH:
        raise _TooDeep
    sub = bytearray(_T_PANDAS)
    try:
        if isinstance(obj, pd.DataFrame):
            sub += b"f"
            _enc_pd_index(obj.columns, sub, depth + 1)
            _enc_pd_index(obj.index, sub, depth + 1)
            sub += _u64(obj.shape[1])
            for i in range(obj.shape[1]):
                _enc_pd_values(obj.iloc[:, i], sub, depth + 1)
        elif isinstance(obj, pd.Series):
            sub += b"s"
            _enc(obj.name, sub, depth + 1)
            _enc_pd_index(obj.index, sub, depth + 1)
            _enc_pd_values(obj, sub, depth + 1)
        else:
            sub += b"i"
            _enc_pd_index(obj, sub, depth + 1)
    except (HashingError, _TooDeep):
        raise
    except Exception:
        # An exotic extension type the paths above do not cover: joblib pickles it,
        # which is stable though not blind to the internal memory layout.
        _enc_fallback(obj, buf, depth)
        return
    buf += sub


def _enc_pd_index(idx: Any, buf: bytearray, depth: int) -> None:
    # By values, dtype and names, not the Index subclass: RangeIndex(3) and
    # Index([0, 1, 2]) label the same rows.
    _enc(list(idx.names), buf, depth)
    nlevels = idx.nlevels
    buf += _u64(nlevels)
    if nlevels == 1:
        _enc_pd_values(idx, buf, depth)
    else:
        for i in range(nlevels):
            _enc_pd_values(idx.get_level_values(i), buf, depth)


def _enc_pd_values(values: Any, buf: bytearray, depth: int) -> None:
    """The values of a Series or Index, with their dtype."""
    np = sys.modules["numpy"]
    pd = sys.modules["pandas"]
    dtype = values.dtype
    _enc_name(buf, _T_STR, str(dtype))
    if isinstance(dtype, np.dtype) and not dtype.hasobject:
        _enc_ndarray(values.to_numpy(), buf, depth)
        return
    if isinstance(dtype, np.dtype):  # object dtype
        if pd.api.types.infer_dtype(values, skipna=False) == "string":
            buf += b"x"  # only str: pandas hashes them vectorized (fixed key)
            _enc_pd_hashed(values, buf)
        else:
            buf += b"o"  # arbitrary objects: type-sensitive, element by element
            _enc(values.tolist(), buf, depth)
        return
    if isinstance(dtype, pd.CategoricalDtype):
        _enc_pd_index(dtype.categories, buf, depth)
        buf += _T_TRUE if dtype.ordered else _T_FALSE
    buf += b"e"  # an extension array: pandas' stable vectorized row hash
    _enc_pd_hashed(values, buf)


def _enc_pd_hashed(values: Any, buf: bytearray) -> None:
    pd = sys.modules["pandas"]
    if isinstance(values, pd.Index):
        values = pd.Series(values, copy=False)
    hashed = pd.util.hash_pandas_object(values, index=False).to_numpy()
    buf += _u64(len(hashed))
    buf += _buffer_digest(hashed)


# ----------------------------------------------------------- fallback and refusal


def _reject(reason: str) -> Callable[[Any, bytearray, int], None]:
    def refuse(obj: Any, buf: bytearray, depth: int) -> None:
        raise HashingError(
            f"cannot hash a value of type {_type_name(type(obj))!r}: {reason}"
        )

    return refuse


_reject_consumable = _reject("its content cannot be read without consuming it")
_reject_stream = _reject("it is an open file or stream, not a value")
_reject_lock = _reject("it is a synchronization primitive, not a value")
_reject_module = _reject("it is a module, not a value; pass the values it holds")
_reject_socket = _reject("it is an open socket, not a value")

_SYNC_MODULES = frozenset(
    {"threading", "_thread", "multiprocessing.synchronize", "asyncio.locks", "queue"}
)

_joblib_hash: Callable[[Any], str] | None = None


def _exc_summary(exc: BaseException) -> str:
    """The first line of an exception's first argument, short enough for a message."""
    text = str(exc.args[0]) if exc.args else str(exc)
    text = text.splitlines()[0] if text else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _enc_fallback(obj: Any, buf: bytearray, depth: int) -> None:
    """joblib.hash of the pickled state, plus the exact type."""
    global _joblib_hash
    if isinstance(obj, io.IOBase):
        _reject_stream(obj, buf, depth)
    if isinstance(obj, types.ModuleType):
        _reject_module(obj, buf, depth)
    socket = sys.modules.get("socket")
    if socket is not None and isinstance(obj, socket.socket):
        _reject_socket(obj, buf, depth)
    if getattr(type(obj), "__module__", None) in _SYNC_MODULES:
        # joblib would hash an Event or a Semaphore by its attributes although it
        # cannot be pickled: refuse them here with a clear reason.
        _reject_lock(obj, buf, depth)
    if _joblib_hash is None:
        from joblib import hash as joblib_hash

        _joblib_hash = joblib_hash
    try:
        digest = _joblib_hash(obj)
    except Exception as exc:
        raise HashingError(
            f"cannot hash a value of type {_type_name(type(obj))!r}: it cannot be "
            f"pickled ({_exc_summary(exc)})"
        ) from exc
    _enc_name(buf, _T_FALLBACK, _type_name(type(obj)))
    _enc_name(buf, _T_STR, str(digest))


_Handler = Callable[[Any, bytearray, int], None]

# Exact types only: a subclass (IntEnum, OrderedDict, a namedtuple) is another type
# and must not share its base's encoding; those go through _classify.
_DISPATCH: dict[type, _Handler] = {
    complex: _enc_complex,
    bytes: _enc_bytes,
    bytearray: _enc_bytearray,
    set: _enc_set,
    frozenset: _enc_frozenset,
    type(Ellipsis): _enc_ellipsis,
    types.FunctionType: _enc_function,
    types.MethodType: _enc_method,
    types.BuiltinFunctionType: _enc_builtin,
    types.CodeType: _enc_code,
    partial: _enc_partial,
    type: _enc_class,
    types.GeneratorType: _reject_consumable,
    types.CoroutineType: _reject_consumable,
    types.AsyncGeneratorType: _reject_consumable,
    types.ModuleType: _reject_module,
    _thread.LockType: _reject_lock,
    _thread.RLock: _reject_lock,
}


def _classify(t: type) -> _Handler:
    """The handler of a type not in _DISPATCH (numpy and pandas types are cached)."""
    module = getattr(t, "__module__", None) or ""
    if module == "numpy" or module.startswith("numpy."):
        np = sys.modules.get("numpy")
        if np is not None:
            if t is np.ndarray:
                _DISPATCH[t] = _enc_ndarray
                return _enc_ndarray
            if issubclass(t, np.generic):
                _DISPATCH[t] = _enc_npscalar
                return _enc_npscalar
    elif module == "pandas" or module.startswith("pandas."):
        pd = sys.modules.get("pandas")
        if pd is not None and issubclass(t, (pd.DataFrame, pd.Series, pd.Index)):
            _DISPATCH[t] = _enc_pandas
            return _enc_pandas
    if issubclass(t, type):
        return _enc_class  # classes with a metaclass (ABCMeta, EnumMeta, ...)
    # Not cached: user classes may be created dynamically and must not be kept
    # alive here; the fallback costs far more than this lookup anyway.
    return _enc_fallback


def _contains_itself(obj: object) -> bool:
    """Whether a container reaches itself (only used to word an error)."""
    containers = (list, tuple, dict, set, frozenset)
    on_path: set[int] = set()
    done: set[int] = set()
    stack: list[tuple[Any, bool]] = [(obj, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        if leaving:
            on_path.discard(key)
            done.add(key)
            continue
        if key in on_path:
            return True
        if key in done or type(node) not in containers:
            continue
        on_path.add(key)
        stack.append((node, True))
        children = node.values() if type(node) is dict else node
        stack.extend((child, False) for child in children)
    return False
