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
``sys.modules``, which only holds them if the user's program imported them already
(a half-imported one is ignored).

Hashing must not change what the program does, and the runtime hashes a mutable
argument twice (before the call and after it, to see in-place changes). So nothing
is read from an instance that its type can answer (class attributes are read from
``type`` and the MRO's class dicts, never through ``getattr`` on the value, so no
property or ``__getattr__`` runs), and an instance of a *plain* class - one that
does not customize pickling anywhere in its MRO but ``object`` (``__reduce__``,
``__reduce_ex__``, ``__getstate__``, ``__getnewargs(_ex)__``, a copyreg reducer)
and keeps its state in ``__dict__`` and ``__slots__`` only - is encoded by walking
that state through the slot and dict descriptors: module and qualname of its class,
then its dict and slot values. Such a class must be reachable by that name (a class
defined in a function, or replaced by a later definition, is another class of the
same name: it is refused, as pickling refuses it). An instance met again inside its
own state (a parent pointer) is a back reference, like a recursive closure;
containers that contain themselves are refused. Dataclasses are plain; classes that
customize pickling (namedtuples, enums, exceptions, most library types) are hashed by
pickling their state with ``joblib.hash`` (imported on first use), so their custom
``__reduce__``/``__getstate__`` runs: the state they choose is their identity.

A value's hash includes what a program can tell apart by looking at it: a function's
``__module__``, ``__qualname__`` and ``__name__`` (and the names of the code objects
it contains), besides its code (or the resolver's version), defaults and closure; an
exception's frames (file, function, line, instruction offset of each traceback
entry), ``__cause__``, ``__context__`` and ``__suppress_context__``, besides its
pickled type, args and attributes (rather than refusing raised exceptions: a call
handed the same failure from the same place is still reused). A function's line
numbers are left out on purpose: code versions ignore formatting too.

Changing any encoding below changes the hash of existing values and so invalidates
every stored call of every user: the digests pinned in ``tests/test_hashing.py``
guard against doing so by accident.
"""

from __future__ import annotations

import _thread
import copyreg
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
    "combine_encoded",
    "content_hash",
    "encode_part",
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
_T_OBJECT = b"O"  # module + qualname + instance dict + slot values (plain classes)
_T_OBJECT_BACKREF = b"o"  # an instance met again inside its own state
_T_UNSET = b"U"  # a slot that holds no value
_T_EXCEPTION = b"X"  # pickled exception + traceback frames + cause + context
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
    # The commonest arguments and outputs, hashed on every memoized call: their
    # encoding without the encoder's buffer and dispatch (the same bytes as _enc).
    kind = type(obj)
    if kind is int:
        try:
            return sha256(_int64(_T_INT, obj)).hexdigest()[:_HEX_LEN]
        except _struct_error:
            pass  # beyond 64 bits: the encoder's form
    elif kind is str:
        b = obj.encode("utf-8", "surrogatepass")  # type: ignore[attr-defined]
        if len(b) <= _LARGE:
            return sha256(_hdr(_T_STR, len(b)) + b).hexdigest()[:_HEX_LEN]
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
    except HashingError:
        raise
    except Exception as exc:
        # A value whose parts misbehave (a half-imported library, an attribute of
        # an unexpected type): the call runs unmemoized, never crashes on hashing.
        raise HashingError(
            f"cannot hash a value of type {_type_name(type(obj))!r}: "
            f"reading it failed ({type(exc).__name__}: {_exc_summary(exc)})"
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


def encode_part(part: str) -> bytes:
    """The encoding of one part of ``combine`` (length-prefixed UTF-8): callers
    that combine the same strings again and again (an op's id, its parameter
    names) keep it, and pass the joined parts to ``combine_encoded``."""
    b = part.encode("utf-8", "surrogatepass")
    return _u64(len(b)) + b


def combine_encoded(count: int, encoded: bytes) -> str:
    """``combine(*parts)`` given ``len(parts)`` and the parts' ``encode_part``
    forms joined in order."""
    return sha256(_hdr(_DOMAIN_COMBINE, count) + encoded).hexdigest()[:_HEX_LEN]


_IMMUTABLE_LEAVES = frozenset({type(None), bool, int, float, complex, str, bytes})
_IMMUTABLE_MAX_DEPTH = 16


def is_immutable(obj: object) -> bool:
    """True when ``obj`` cannot change in place (so it need not be re-hashed)."""
    if type(obj) in _IMMUTABLE_LEAVES:
        return True  # most values asked about: answered without a second call
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


# Attributes of classes read through ``type``'s own descriptors: a metaclass or a
# class body cannot put a property (user code) in the way of these reads.
_type_dict: Callable[[type], Any] = type.__dict__["__dict__"].__get__
_type_mro: Callable[[type], tuple[type, ...]] = type.__dict__["__mro__"].__get__
_type_qualname: Callable[[type], str] = type.__dict__["__qualname__"].__get__
_type_module_attr: Callable[[type], Any] = type.__dict__["__module__"].__get__
_type_name_attr: Callable[[type], str] = type.__dict__["__name__"].__get__
_type_basicsize: Callable[[type], int] = type.__dict__["__basicsize__"].__get__
_type_itemsize: Callable[[type], int] = type.__dict__["__itemsize__"].__get__
_type_dictoffset: Callable[[type], int] = type.__dict__["__dictoffset__"].__get__
_type_weakrefoffset: Callable[[type], int] = type.__dict__["__weakrefoffset__"].__get__
_module_dict: Callable[[types.ModuleType], dict[str, Any]] = vars(types.ModuleType)[
    "__dict__"
].__get__


def _type_module(t: type) -> str | None:
    """``t.__module__`` when it is a str (it can be anything), else None."""
    try:
        module = _type_module_attr(t)
    except Exception:
        return None
    return module if type(module) is str else None


def _type_name(t: type) -> str:
    """``module.qualname`` of a class for messages; never raises, runs no user code."""
    try:
        qualname = _type_qualname(t)
    except Exception:
        qualname = "?"
    module = _type_module(t)
    if not module or module == "builtins":
        return qualname
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
    # Parameter names matter (keyword calls), and so do the code's names (a nested
    # def gives them to the function it makes, where a program can read them);
    # other local names, line numbers and the file name do not.
    nparams = (
        code.co_argcount
        + code.co_kwonlyargcount
        + bool(flags & _CO_VARARGS)
        + bool(flags & _CO_VARKEYWORDS)
    )
    _enc(code.co_varnames[:nparams], sub, 0)
    _enc_name(sub, _T_STR, code.co_name)
    _enc_name(sub, _T_STR, code.co_qualname)
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
        # The names are part of the value: a program can read them (``__name__``
        # in a registry, a log line), so two functions of one code but different
        # names are different arguments.
        _enc((fn.__module__, fn.__qualname__, fn.__name__), buf, depth)
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
    qualname = _type_qualname(obj)
    if "<locals>" in qualname:
        # Every call of the enclosing function makes another class of this name,
        # with its own closures: the name does not tell them apart.
        raise HashingError(
            f"cannot hash the class {_type_name(obj)!r}: it is defined inside a "
            "function, so its name does not identify it"
        )
    module = _type_module(obj)
    if module is None:
        raise HashingError(
            f"cannot hash the class {qualname!r}: its __module__ is not a string"
        )
    _enc_name(buf, _T_CLASS, f"{module}.{qualname}")


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
    try:
        text = str(exc.args[0]) if exc.args else str(exc)
    except Exception:
        text = ""
    text = text.splitlines()[0] if text else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _refuse_non_values(obj: Any, buf: bytearray, depth: int) -> None:
    """Refuse open files, modules, sockets and locks, by their type alone.

    ``issubclass(type(obj), ...)`` rather than ``isinstance``: isinstance may read
    ``obj.__class__``, which a class can make a property.
    """
    t = type(obj)
    if issubclass(t, io.IOBase):
        _reject_stream(obj, buf, depth)
    if issubclass(t, types.ModuleType):
        _reject_module(obj, buf, depth)
    socket = sys.modules.get("socket")
    socket_type = getattr(socket, "socket", None) if socket is not None else None
    if type(socket_type) is type and issubclass(t, socket_type):
        _reject_socket(obj, buf, depth)
    if _type_module(t) in _SYNC_MODULES:
        # joblib would hash an Event or a Semaphore by its attributes although it
        # cannot be pickled: refuse them here with a clear reason.
        _reject_lock(obj, buf, depth)


def _enc_fallback(obj: Any, buf: bytearray, depth: int) -> None:
    """joblib.hash of the pickled state, plus the exact type."""
    global _joblib_hash
    _refuse_non_values(obj, buf, depth)
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


# ------------------------------------------------------- instances, exceptions

# Defining any of these (anywhere in the MRO but ``object``) customizes what pickling
# saves, so such a class is hashed by pickling: its custom state is its identity.
_PICKLE_HOOKS = (
    "__reduce_ex__",
    "__reduce__",
    "__getstate__",
    "__getnewargs_ex__",
    "__getnewargs__",
)
_POINTER = struct.calcsize("P")
_OBJECT_SIZE = object.__basicsize__
_GetSet = types.GetSetDescriptorType
_Member = types.MemberDescriptorType

# (the instance dict's descriptor or None, the slots' member descriptors)
_Layout = tuple[Any, tuple[Any, ...]]


def _plain_layout(t: type) -> _Layout | None:
    """Where the state of a plain class's instances lives, or None if not plain.

    Plain: nothing in the MRO but ``object`` customizes pickling, no reducer is
    registered with copyreg, and the instance layout holds nothing but the instance
    dict, the weakref list and ``__slots__``: the same size rule CPython applies
    before it pickles an object by its dict and slots (a list or dict subclass, or a
    C type with fields, is not plain). Only class dicts are read, never instances.
    """
    if t in copyreg.dispatch_table or _type_itemsize(t):
        return None
    dict_descr = None
    dict_seen = False
    slots: list[Any] = []
    for c in _type_mro(t)[:-1]:
        ns = _type_dict(c)
        for hook in _PICKLE_HOOKS:
            if hook in ns:
                return None
        if not dict_seen and "__dict__" in ns:
            dict_seen = True
            dict_descr = ns["__dict__"]
            if type(dict_descr) is not _GetSet:
                return None
        declared = ns.get("__slots__")
        if declared is None:
            continue
        if type(declared) is str:
            declared = (declared,)
        elif type(declared) not in (tuple, list, dict):
            return None
        for name in declared:
            if type(name) is not str:
                return None
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                stripped = _type_name_attr(c).lstrip("_")
                if stripped:
                    name = f"_{stripped}{name}"
            member = ns.get(name)
            if type(member) is not _Member or member.__objclass__ is not c:
                return None
            slots.append(member)
    size = _OBJECT_SIZE + _POINTER * len(slots)
    dictoffset = _type_dictoffset(t)
    if dictoffset > 0:
        size += _POINTER  # else none, or managed (stored before the object)
    if _type_weakrefoffset(t) > 0:
        size += _POINTER
    if _type_basicsize(t) != size or (dictoffset and dict_descr is None):
        return None
    return dict_descr, tuple(slots)


def _named_class(t: type) -> tuple[str, str] | None:
    """(module, qualname) when that name leads to ``t`` itself, else None.

    A class defined in a function, built by ``type()`` under a name it is not bound
    to, or replaced by a newer definition shares its name with other classes; those
    stay with pickling, which refuses them. Reads module and class dicts only.
    """
    module = _type_module(t)
    if module is None:
        return None
    qualname = _type_qualname(t)
    found: Any = sys.modules.get(module)
    if not issubclass(type(found), types.ModuleType):
        return None
    ns: Any = _module_dict(found)
    for part in qualname.split("."):
        found = ns.get(part)
        if not issubclass(type(found), type):
            return None
        ns = _type_dict(found)
    return (module, qualname) if found is t else None


def _enc_instance(obj: Any, buf: bytearray, depth: int) -> None:
    """An instance of a class with no handler of its own.

    Plain classes are encoded by walking their state (instance dict and slots)
    without running any of their code; other classes are pickled (joblib.hash).
    """
    t = type(obj)
    _refuse_non_values(obj, buf, depth)
    try:
        layout = _plain_layout(t)
        name = _named_class(t) if layout is not None else None
    except Exception:  # a class dict holding something unexpected
        layout = name = None
    if layout is not None and name is None:
        qualname = _type_qualname(t)
        if "<locals>" in qualname or _type_module(t) is None:
            # Pickling would fail on the class name too, after running code.
            raise HashingError(
                f"cannot hash a value of type {_type_name(t)!r}: its class is "
                + (
                    "defined inside a function"
                    if "<locals>" in qualname
                    else "not in a module (its __module__ is not a string)"
                )
                + ", so its name does not identify it"
            )
    if layout is None or name is None:
        _enc_fallback(obj, buf, depth)
        return
    if depth >= _MAX_DEPTH:
        raise _TooDeep
    # An instance reached again through its own state (a parent pointer): a back
    # reference to its place on the current path, as for recursive closures.
    stack: list[Any] | None = getattr(_tls, "objects", None)
    if stack is None:
        stack = _tls.objects = []
    elif stack:
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is obj:
                buf += _hdr(_T_OBJECT_BACKREF, len(stack) - i)
                return
    dict_descr, slots = layout
    module, qualname = name
    _enc_name(buf, _T_OBJECT, module)
    _enc_name(buf, _T_STR, qualname)
    stack.append(obj)
    try:
        if dict_descr is None:
            buf += _T_NONE
        else:  # one nesting level with the instance: its dict counts it
            _enc(dict_descr.__get__(obj, t), buf, depth)
        depth += 1
        buf += _u64(len(slots))
        for member in slots:
            try:
                value = member.__get__(obj, t)
            except AttributeError:
                buf += _T_UNSET
                continue
            _enc(value, buf, depth)
    finally:
        stack.pop()


_exc_traceback = BaseException.__dict__["__traceback__"].__get__
_exc_cause = BaseException.__dict__["__cause__"].__get__
_exc_context = BaseException.__dict__["__context__"].__get__
_exc_suppress = BaseException.__dict__["__suppress_context__"].__get__


def _enc_exception(exc: BaseException, buf: bytearray, depth: int) -> None:
    """An exception: its pickled type, args and attributes, and where it was raised.

    Pickling leaves out the traceback and the chained exceptions, which a program
    can read (``traceback.extract_tb``, ``raise ... from``), so they are added: the
    (file name, function name, line, instruction offset) of every frame of the
    traceback, then ``__cause__``, ``__context__`` and ``__suppress_context__``. An
    exception never raised, without them, keeps the plain pickled encoding.
    """
    tb = _exc_traceback(exc)
    cause = _exc_cause(exc)
    context = _exc_context(exc)
    if tb is None and cause is None and context is None:
        _enc_fallback(exc, buf, depth)
        return
    if depth >= _MAX_DEPTH:
        raise _TooDeep
    buf += _T_EXCEPTION
    _enc_fallback(exc, buf, depth)
    frames = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, code.co_name, tb.tb_lineno, tb.tb_lasti))
        tb = tb.tb_next
    depth += 1
    _enc(frames, buf, depth)
    _enc(cause, buf, depth)
    _enc(context, buf, depth)
    buf += _T_TRUE if _exc_suppress(exc) else _T_FALSE


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


def _library_types(name: str, *attrs: str) -> tuple[type, ...] | None:
    """Classes of an imported library, or None if it is absent or half-imported.

    Read from the module dict, so a module ``__getattr__`` is never called.
    """
    module = sys.modules.get(name)
    if module is None or not issubclass(type(module), types.ModuleType):
        return None
    ns = _module_dict(module)
    found = tuple(ns.get(attr) for attr in attrs)
    for t in found:
        if not issubclass(type(t), type):
            return None  # mid-import: not defined yet
    return found  # type: ignore[return-value]


_HEAPTYPE = 1 << 9
_type_flags: Callable[[type], int] = type.__dict__["__flags__"].__get__


def _classify(t: type) -> _Handler:
    """The handler of a type not in _DISPATCH (library types are cached).

    Never raises: whatever cannot be classified goes to the generic path.
    """
    try:
        return _classify_type(t)
    except Exception:
        return _enc_instance


def _classify_type(t: type) -> _Handler:
    module = _type_module(t) or ""
    if module == "numpy" or module.startswith("numpy."):
        np = _library_types("numpy", "ndarray", "generic")
        if np is not None:
            if t is np[0]:
                _DISPATCH[t] = _enc_ndarray
                return _enc_ndarray
            if issubclass(t, np[1]):
                _DISPATCH[t] = _enc_npscalar
                return _enc_npscalar
    elif module == "pandas" or module.startswith("pandas."):
        pd = _library_types("pandas", "DataFrame", "Series", "Index")
        if pd is not None and issubclass(t, pd):
            _DISPATCH[t] = _enc_pandas
            return _enc_pandas
    if issubclass(t, type):
        return _enc_class  # classes with a metaclass (ABCMeta, EnumMeta, ...)
    if issubclass(t, BaseException):
        if not _type_flags(t) & _HEAPTYPE:
            _DISPATCH[t] = _enc_exception  # a builtin exception: lives forever
        return _enc_exception
    # Not cached: user classes may be created dynamically and must not be kept
    # alive here, and a class may gain pickling methods after its first use.
    return _enc_instance


def _contains_itself(obj: object) -> bool:
    """Whether a container reaches itself (only used to word an error).

    Instances of plain classes are looked through; reaching one of them again is
    not counted, since the encoder refers back to it.
    """
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
        is_container = type(node) in containers
        if key in on_path:
            if is_container:
                return True
            continue
        if key in done:
            continue
        children = node if is_container else _children(node)
        if children is None:
            continue
        on_path.add(key)
        stack.append((node, True))
        if type(node) is dict:
            children = node.values()
        stack.extend((child, False) for child in children)
    return False


def _children(obj: object) -> list[Any] | None:
    """The values in the dict and slots of a plain class's instance, else None."""
    t = type(obj)
    try:
        layout = _plain_layout(t)
    except Exception:
        return None
    if layout is None:
        return None
    dict_descr, slots = layout
    children: list[Any] = []
    if dict_descr is not None:
        state = dict_descr.__get__(obj, t)
        if type(state) is dict:
            children.extend(state.values())
    for member in slots:
        try:
            children.append(member.__get__(obj, t))
        except AttributeError:
            pass
    return children
