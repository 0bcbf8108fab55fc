# persist
"""Every Python 3.11 syntax form, run plain and instrumented: the output must match.

Ops here return values and print nothing (a reused op does not print), so the output
is also the same on a second ``autopersist run``. Procedures and ``show*`` functions
print. Line and column numbers of tracebacks are printed for frames of this file.
"""; from __future__ import annotations; import sys

import asyncio
import contextlib
import dataclasses
import enum
import functools
import inspect
import traceback
import typing
from collections.abc import AsyncIterator, Callable, Iterator

global MODULE_GLOBAL
MODULE_GLOBAL: int = 1
COUNT = 0
SCALE: typing.Final = 3
WEIRD = "__autopersist_mark__('not code')"  # text that looks like inserted code
PAGE = "ab"; FEED = "page"  # noqa: E702  (a raw form feed in the string)
UNICODE_LINE = "x y"  # raw separators in a string and a comment:    


# Not ops: a reused call would answer for another exception or function with the same
# content (tests/test_differential.py::test_reuse_keys_*).
def frames(exc: BaseException) -> list[tuple[object, ...]]:  # persist: skip
    """Frames of this file: (line, end line, column, end column, function)."""
    return [
        (f.lineno, f.end_lineno, f.colno, f.end_colno, f.name)
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename == __file__
    ]


def show(label: str, *values: object) -> None:
    print(label, *values)


def show_raise(label: str, func: Callable[..., object], *args: object) -> None:
    try:
        func(*args)
    except BaseException as exc:  # noqa: BLE001
        print(label, type(exc).__name__, exc, frames(exc))
    else:
        print(label, "no exception")


def lines_of(func: Callable[..., object]) -> list[int]:  # persist: skip
    """Line numbers the function's code reports (for tracers and coverage)."""
    code = inspect.unwrap(func).__code__
    return sorted({line for _, _, line in code.co_lines() if line is not None})


# ---- one-line and minimal definitions ----------------------------------------------


def one_line(x): return 10 // x
def one_line_doc(): "Doc of a one-liner."; return 1
def ellipsis_only(): ...
def pass_only(): pass


def doc_only():
    """Only a docstring."""


def doc_then_code():
    "Docstring, then code on the same line."; return 2


def doc_concatenated():
    "Concatenated " "docstring."
    return 3


def not_a_docstring():
    f"{'f-strings are never docstrings'}"
    return 4


def bytes_first():
    b"bytes are never docstrings"
    return 5


@functools.lru_cache(maxsize=None)
def decorated_one_line(x): return x * 2


def parenthesized_doc():
    ("Parenthesized docstring.")
    return 6


def raises_after_doc(x):
    """Raises on its second line."""
    return [1, 2][x]



# ---- decorators ---------------------------------------------------------------------


def repeat(times: int) -> Callable[[Callable[..., int]], Callable[..., int]]:
    def decorator(func: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(func)
        def inner(*args: object, **kwargs: object) -> int:
            return sum(func(*args, **kwargs) for _ in range(times))

        return inner

    return decorator


def tag(label: str):
    def decorator(obj):
        obj.tag = label
        return obj

    return decorator


@repeat(2)
@tag("stacked")
def stacked(x: int) -> int:
    """Stacked decorators with arguments."""
    return x + 1


@tag("class")
@dataclasses.dataclass(order=True)
class Version:
    major: int
    minor: int = 0
    labels: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = [*self.labels, "v"]

    def bump(self) -> Version:
        return dataclasses.replace(self, minor=self.minor + 1)


@functools.total_ordering
class Money:
    __slots__ = ("cents",)

    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and self.cents == other.cents

    def __lt__(self, other: Money) -> bool:
        return self.cents < other.cents

    def __repr__(self) -> str: return f"Money({self.cents})"


@functools.singledispatch
def describe(value: object) -> str:
    return "object"


@describe.register
def _(value: int) -> str:
    return f"int {value}"


@describe.register(str)
def _describe_str(value):
    return f"str {value}"


# ---- classes --------------------------------------------------------------------------


class Meta(type):
    @classmethod
    def __prepare__(mcs, name, bases, **kwargs):
        return {"prepared": True}

    def __new__(mcs, name, bases, namespace, **kwargs):
        namespace["created_by"] = "Meta"
        extra = {k: v for k, v in kwargs.items() if k != "flavour"}
        return super().__new__(mcs, name, bases, namespace, **extra)

    def __init__(cls, name, bases, namespace, **kwargs):
        super().__init__(name, bases, namespace)
        cls.flavour = kwargs.get("flavour", "plain")


class Base(metaclass=Meta, flavour="base"):
    """A base class."""

    kind: typing.ClassVar[str] = "base"

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def __init_subclass__(cls, /, suffix: str = "", **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.suffix = suffix

    def describe(self) -> str:
        return f"{type(self).__name__}({self.value})"

    @property
    def double(self) -> int:
        return self.value * 2

    @double.setter
    def double(self, new: int) -> None:
        self.value = new // 2

    @classmethod
    def make(cls, value: int) -> Base:
        return cls(value)

    @staticmethod
    def helper(x: int) -> int: return x - 1

    @functools.cached_property
    def cached(self) -> list[int]:
        return [self.value]


class Child(Base, suffix="!"):
    def __init__(self, value: int = 1) -> None:
        "Zero-argument super() after a docstring."
        super().__init__(value + 1)

    def describe(self) -> str: return super().describe() + self.suffix

    @classmethod
    def make(cls, value: int) -> Base:
        obj = super().make(value)
        return obj

    @property
    def double(self) -> int:
        return super().double + 1

    def uses_class_cell(self) -> str:
        return __class__.__name__

    class Nested:
        class Deeper:
            def where(self) -> str:
                return type(self).__qualname__

            def deeper_super(self) -> str:
                return super().__repr__()[:1]

    def raises(self) -> None:
        return super().missing()  # type: ignore[attr-defined]


class Colour(enum.Enum):
    RED = 1
    GREEN = 2

    @property
    def pretty(self) -> str:
        return self.name.title()

    @classmethod
    def parse(cls, text: str) -> Colour:
        return cls[text.upper()]


class Pair(typing.NamedTuple):
    left: int
    right: int = 0

    def total(self) -> int:
        return self.left + self.right


class Sized(typing.Protocol):
    def size(self) -> int: ...


T = typing.TypeVar("T")


class Box(typing.Generic[T]):
    def __init__(self, item: T) -> None:
        self.item = item

    def get(self) -> T:
        return self.item

    def __class_getitem__(cls, params):
        return super().__class_getitem__(params)


class WithSlots:
    __slots__ = ("a", "b")

    def __init__(self) -> None:
        self.a, self.b = 1, 2

    def swap(self) -> tuple[int, int]:
        self.a, self.b = self.b, self.a
        return self.a, self.b


# ---- closures, nonlocal, global, del ---------------------------------------------------


def counter(start: int) -> Callable[[], int]:
    count = start

    def step() -> int:
        nonlocal count
        count += 1
        return count

    return step


def bump_global() -> None:
    global COUNT, MODULE_GLOBAL
    COUNT += 1
    MODULE_GLOBAL = COUNT * 10


def make_and_delete() -> list[object]:
    global TEMP
    TEMP = 1
    del TEMP
    items = {"a": 1, "b": 2}
    del items["a"]
    obj = Base(3)
    del obj.value
    x = 5
    del x
    return [items, hasattr(obj, "value"), "TEMP" in globals()]


def late_binding() -> list[int]:
    funcs = [lambda i=i: i * i for i in range(4)]
    late = [lambda: i for i in range(3)]  # noqa: B023
    return [f() for f in funcs] + [f() for f in late]


# ---- comprehensions, generators ----------------------------------------------------------


def comprehensions(n: int) -> tuple[object, ...]:
    lst = [i * i for i in range(n) if i % 2 for _ in range(1)]
    st = {i % 3 for i in range(n)}
    dct = {i: [j for j in range(i)] for i in range(3)}
    gen = sum(i for i in range(n))
    nested = [(i, j) for i in range(3) for j in range(i) if (i + j) % 2]
    walrus = [y for x in range(n) if (y := x * 3) % 2]
    last = [last_seen := v for v in range(3)]
    return lst, sorted(st), dct, gen, nested, walrus, last, last_seen


def fib_gen(limit: int) -> Iterator[int]:
    a, b = 0, 1
    while a < limit:
        received = yield a
        if received:
            a, b = 0, 1
            continue
        a, b = b, a + b
    return "done"


def delegating() -> Iterator[int]:
    result = yield from fib_gen(10)
    yield len(result)


def generator_protocol() -> list[object]:
    gen = fib_gen(100)
    out = [next(gen), next(gen), next(gen), gen.send(True), next(gen)]
    try:
        gen.throw(ValueError("thrown"))
    except ValueError as exc:
        out.append(str(exc))
    gen.close()
    return out + [list(delegating())]


# ---- async ------------------------------------------------------------------------------


class AsyncResource:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def __aenter__(self) -> AsyncResource:
        self.log.append("enter")
        return self

    async def __aexit__(self, *exc: object) -> bool:
        self.log.append("exit")
        return False


async def agen(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


async def async_all(n: int) -> tuple[object, ...]:
    log: list[str] = []
    async with AsyncResource(log) as res, AsyncResource(log):
        log.append(type(res).__name__)
    total = 0
    async for value in agen(n):
        total += value
    comp = [v async for v in agen(n) if v % 2 == 0]
    awaited = [await double(v) for v in range(n)]
    gathered = await asyncio.gather(*(double(i) for i in range(n)))
    return log, total, comp, awaited, gathered


# ---- match -----------------------------------------------------------------------------------


class Point:
    __match_args__ = ("x", "y")

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


class Shape(enum.Enum):
    SQUARE = "square"
    CIRCLE = "circle"


def matcher(subject: object) -> str:
    match subject:
        case None:
            return "none"
        case True | False as flag:
            return f"bool {flag}"
        case 0 | 1 | -1:
            return "small int"
        case 1.5 | 2j:
            return "float or complex"
        case "a" "b":
            return "concatenated string"
        case Shape.SQUARE:
            return "value pattern"
        case [] | ():
            return "empty sequence"
        case [x]:
            return f"one {x}"
        case [int(a), str(b), *rest] if len(rest) < 2:
            return f"int str {a} {b} {rest}"
        case [first, *_, last]:
            return f"first {first} last {last}"
        case {"type": "point", "at": (x, y)}:
            return f"mapped point {x},{y}"
        case {"type": str() as kind, **others}:
            return f"kind {kind} others {sorted(others)}"
        case Point(0, 0):
            return "origin"
        case Point(x=0, y=yy) | Point(x=yy, y=0):
            return f"on an axis {yy}"
        case Point(x, y) if x == y:
            return f"diagonal {x}"
        case Point(x=px, y=(1 | 2) as py):
            return f"low {px} {py}"
        case {**rest} if not rest:
            return "empty mapping"
        case str(text) if (n := len(text)) > 3:
            return f"long text {n}"
        case int() | float() as number if number > 100:
            return "big number"
        case _:
            return "other"


def guard_raises(subject: object) -> str:
    match subject:
        case [x] if 1 / x:
            return "never"
    return "no match"


# ---- exceptions, with ----------------------------------------------------------------------


def groups() -> list[str]:
    seen: list[str] = []
    try:
        raise ExceptionGroup("many", [ValueError("v"), TypeError("t"), KeyError("k")])
    except* ValueError as eg:
        seen.append(f"value {[str(e) for e in eg.exceptions]}")
    except* (TypeError, KeyError) as eg:
        seen.append(f"other {len(eg.exceptions)}")
    finally:
        seen.append("finally")
    return seen


def nested_try(x: int) -> str:
    try:
        try:
            return str(10 // x)
        except ZeroDivisionError as exc:
            raise ValueError("zero") from exc
        else:
            pass
        finally:
            pass
    except ValueError as exc:
        return f"{exc} caused by {type(exc.__cause__).__name__}"


def with_statements() -> list[object]:
    out: list[object] = []
    with contextlib.nullcontext(1) as a, contextlib.nullcontext(2) as b:
        out.append(a + b)
    with (
        contextlib.nullcontext(3) as c,
        contextlib.nullcontext(4) as d,
    ):
        out.append(c * d)
    with contextlib.suppress(KeyError):
        {}["missing"]
    with (contextlib.nullcontext(5)):
        out.append("parenthesized single")
    return out


@contextlib.contextmanager
def managed(log: list[str]) -> Iterator[str]:
    log.append("setup")
    try:
        yield "resource"
    finally:
        log.append("teardown")


# ---- arguments, f-strings, lambdas, operators ----------------------------------------------


def params(a, b=2, /, c=3, *args, d, e=5, **kwargs) -> tuple[object, ...]:
    return a, b, c, args, d, e, sorted(kwargs.items())


def mutable_default(x: int, bucket: list[int] = []) -> int:  # noqa: B006
    bucket.append(x)
    return len(bucket)


def star_expressions() -> tuple[object, ...]:
    first, *middle, last = range(6)
    merged = [*middle, *"ab"]
    mapping = {**{"a": 1}, **{"b": 2}, "c": 3}
    return first, middle, last, merged, mapping, (*merged[:2],)


def fstrings(name: str, width: int, value: float) -> str:
    inner = f"{name!r:>{width}}"
    return f"{inner}|{value=:.2f}|{name=!s}|{f'{width:03d}'}|{'nested ' + f'{value:{width}.{1}f}'}|{{}}"


def operators(a: int, b: int, c: int) -> tuple[object, ...]:
    return (
        a < b <= c != a,
        a is not None,
        b not in (a, c),
        not a or b and c,
        a if a > b else c,
        -a ** 2,
        ~b,
        a // b, a % b, a @ b if False else None,  # noqa: E231
        (a << 2) | (b >> 1) ^ (c & 7),
    )


def lambdas() -> list[object]:
    adder = lambda x, y=2, *rest, k=3, **kw: x + y + k + len(rest) + len(kw)  # noqa: E731
    keyed = sorted([3, 1, 2], key=lambda v: -v)
    return [adder(1), adder(1, 1, 1, 1, k=0, z=9), keyed, (lambda: (yield))]


def annotated(values: list[int], *, scale: float = 1.0) -> dict[str, float]:
    total: float = 0
    count: int
    for v in values:
        total += v * scale
    count = len(values)
    return {"total": total, "mean": total / count}


def recursive(n: int) -> int:
    return 1 if n <= 1 else n * recursive(n - 1)


# ---- conditional and nested definitions ----------------------------------------------------

if sys.version_info >= (3, 11):

    def conditional() -> str:
        return "new"

else:

    def conditional() -> str:
        return "old"


try:
    from _nonexistent_module import thing  # type: ignore[import-not-found]
except ImportError:

    def thing() -> str:
        return "fallback"


with contextlib.suppress(Exception):

    def in_with() -> str:
        return "defined in with"


for _index in range(1):

    def in_loop() -> int:
        return _index


def factory(kind: str) -> Callable[[int], int]:
    if kind == "double":

        def impl(x: int) -> int:
            return x * 2

    else:

        def impl(x: int) -> int:
            return -x

    return impl


def raising_places() -> None:
    def nested(x):
        return {}[x]

    show_raise("raise nested", nested, "k")
    show_raise("raise lambda", lambda: 1 / 0)
    show_raise("raise comprehension", lambda: [1 // v for v in (1, 0)])
    show_raise("raise generator", lambda: list(v.missing for v in (1,)))
    show_raise("raise one-liner", one_line, 0)
    show_raise("raise after doc", raises_after_doc, 5)
    show_raise("raise method super", Child().raises)
    show_raise("raise in match guard", guard_raises, [0])
    show_raise("raise multi-line", lambda: (
        1
        + None  # type: ignore[operator]
    ))


# ---- the program --------------------------------------------------------------------------


OPS = (one_line, one_line_doc, doc_then_code, doc_concatenated, parenthesized_doc, recursive)
PLAIN = (doc_only, ellipsis_only, pass_only, show, Base.describe, Child.describe)


def metadata() -> None:
    for func in OPS + PLAIN + (stacked, Child.Nested.Deeper.where, conditional):
        print(
            "meta",
            func.__name__,
            func.__qualname__,
            func.__module__,
            repr(func.__doc__),
            inspect.signature(func),
            inspect.getsourcelines(func)[1],
            len(inspect.getsource(func)),
            lines_of(func),
        )
    for func in PLAIN:
        print("code", func.__name__, func.__code__.co_firstlineno, func.__code__.co_name)


def program() -> None:
    show("module", __doc__[:20], PAGE, FEED, UNICODE_LINE, WEIRD[:10], MODULE_GLOBAL)
    show("one-liners", one_line(3), one_line_doc(), ellipsis_only(), pass_only())
    show("docs", doc_only(), doc_then_code(), doc_concatenated(), not_a_docstring())
    show("more docs", bytes_first(), parenthesized_doc(), decorated_one_line(4))
    show("doc values", doc_only.__doc__, one_line_doc.__doc__, doc_then_code.__doc__)
    show("doc values", doc_concatenated.__doc__, not_a_docstring.__doc__)
    show("doc values", bytes_first.__doc__, parenthesized_doc.__doc__)
    show("stacked", stacked(1), stacked.tag, stacked.__doc__)
    v = Version(1, labels=["x"])
    show("dataclass", v, v.bump(), v < v.bump(), Version.tag)
    show("total_ordering", Money(1) <= Money(2), Money(3) > Money(2), Money(5))
    show("singledispatch", describe(1), describe("s"), describe(1.5))
    c = Child()
    show("class", Base.prepared, Base.created_by, Base.flavour, Child.flavour)
    show("child", c.describe(), c.double, Child.make(4).describe(), Child.helper(3))
    b = Base(1)
    b.double = 10
    show("setter", b.value, c.cached, c.uses_class_cell(), Child.suffix)
    deeper = Child.Nested.Deeper()
    show("nested", deeper.where(), deeper.deeper_super())
    show("enum", Colour.RED.pretty, Colour.parse("green"), list(Colour))
    show("namedtuple", Pair(1, 2).total(), Pair(3), Box[int](5).get(), Box(1).get())
    show("slots", WithSlots().swap(), Money.__slots__)
    step = counter(5)
    show("closure", step(), step(), counter(0)())
    bump_global()
    bump_global()
    show("global", COUNT, MODULE_GLOBAL, make_and_delete(), late_binding())
    show("comprehensions", comprehensions(6))
    show("generators", generator_protocol())
    show("async", asyncio.run(async_all(4)))
    subjects = [
        None, True, 0, 1.5, 2j, "ab", Shape.SQUARE, [], (), [7], [1, "s"], [1, "s", 2, 3],
        [1, 2, 3, 4], {"type": "point", "at": (1, 2)}, {"type": "k", "z": 1},
        Point(0, 0), Point(0, 5), Point(4, 0), Point(3, 3), Point(9, 2), {}, "hello",
        500, 5.5, "ok",
    ]
    for subject in subjects:
        show("match", repr(subject) if not isinstance(subject, Point) else "Point", matcher(subject))
    show("except*", groups())
    show("try", nested_try(2), nested_try(0))
    log: list[str] = []
    with managed(log) as res:
        log.append(res)
    show("with", with_statements(), log)
    show("params", params(1, d=4), params(1, 2, 3, 4, 5, d=6, z=7))
    show("mutable default", mutable_default(1), mutable_default(2), mutable_default(3, [0]))
    show("star", star_expressions())
    show("fstrings", fstrings("ab", 6, 3.14159))
    show("operators", operators(3, 4, 5))
    adder, keyed, _, gen_lambda = lambdas()[0], lambdas()[2], None, lambdas()[3]
    show("lambdas", adder, keyed, type(gen_lambda()).__name__)
    show("annotations", annotated([1, 2, 3], scale=2.0), annotated.__annotations__)
    show("module annotations", __annotations__)
    show("recursive", recursive(10))
    show("conditional", conditional(), thing(), in_with(), in_loop(), factory("double")(4))
    raising_places()
    metadata()


if __name__ == "__main__":
    program()
