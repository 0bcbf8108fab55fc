# persist
"""Every Python 3.11 construct the rewriter must leave behaving as before."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

COUNTER = 0
LOG: list[str] = []
SCALE = 3


def bump():
    global COUNTER
    COUNTER += 1
    return COUNTER


def record(msg):
    LOG.append(msg)
    return len(LOG)


def traced(func):
    @functools.wraps(func)
    def inner(*args, **kwargs):
        LOG.append(f"call {func.__name__}")
        return func(*args, **kwargs)

    return inner


@traced
def decorated(x):
    return x * SCALE


@functools.lru_cache(maxsize=None)
def cached(n):
    return n * n


@dataclass
class Point:
    x: int
    y: int = 0

    def norm1(self):
        return abs(self.x) + abs(self.y)

    @property
    def swapped(self):
        return Point(self.y, self.x)

    @classmethod
    def origin(cls):
        return cls(0, 0)

    @staticmethod
    def unit():
        return Point(1, 1)

    class Inner:
        def hello(self):
            return "inner"


def make_counter(start):
    count = start

    def step(by=1):
        nonlocal count
        count += by
        return count

    return step


def comprehensions(n):
    squares = [i * i for i in range(n)]
    evens = {i for i in squares if i % 2 == 0}
    index = {i: str(i) for i in range(n) if i}
    gen_total = sum(x for x in range(n))
    nested = [[j for j in range(i)] for i in range(3)]
    return squares, sorted(evens), index, gen_total, nested


def walrus(values):
    if (n := len(values)) > 2:
        return [y for x in values if (y := x * 2) > 2], n
    return [], n


def star_args(*args, sep="-", **kwargs):
    return sep.join(str(a) for a in args) + "|" + ",".join(f"{k}={v}" for k, v in sorted(kwargs.items()))


def kw_only(a, /, b, *, c=3):
    return a + b + c


def matcher(command):
    match command:
        case {"action": "move", "dx": dx, "dy": dy}:
            return f"move {dx},{dy}"
        case [first, *rest]:
            return f"list {first} {rest}"
        case Point(x=0, y=0):
            return "origin"
        case Point(x=x, y=y) if x == y:
            return f"diagonal {x}"
        case str() as text:
            return f"text {text}"
        case _:
            return "other"


def uses_exceptions(x):
    try:
        if x < 0:
            raise ValueError("negative")
        return 1 / x
    except ZeroDivisionError:
        return "inf"
    except ValueError as exc:
        return f"error {exc}"
    finally:
        LOG.append("finally")


def gen_numbers(n):
    yield from range(n)


async def async_double(x):
    await asyncio.sleep(0)
    return x * 2


async def gather_all(n):
    return await asyncio.gather(*(async_double(i) for i in range(n)))


def lambdas(values):
    key = lambda v: -v  # noqa: E731
    return sorted(values, key=key), list(map(lambda v: v + 1, values))


def one_liner(x): return x + 1


def with_docstring(x):
    """A docstring stays the docstring."""
    return with_docstring.__doc__, x


def conditional_import(x):
    import math

    return math.floor(x)


def chained(a, b):
    return 0 < a < b, a if a > b else b, not a, a and b, a or b


def fstrings(name, width):
    return f"{name!r:>{width}}|{name=}|{width:04d}"


def procedure(x):
    LOG.append(f"procedure {x}")


def main():
    print("bump", bump(), bump(), COUNTER)
    print("record", record("a"), record("a"))
    print("decorated", decorated(2), decorated(2))
    print("cached", cached(4), cached(4))
    p = Point(3, -4)
    print("point", p, p.norm1(), p.swapped, Point.origin(), Point.unit(), Point.Inner().hello())
    counter = make_counter(10)
    print("closure", counter(), counter(5), counter())
    print("comprehensions", comprehensions(5))
    print("walrus", walrus([1, 2, 3]), walrus([1]))
    print("star", star_args(1, 2, 3, sep="+", z=1, a=2), star_args(*[4, 5], **{"k": "v"}))
    print("kwonly", kw_only(1, 2), kw_only(1, b=2, c=4))
    for cmd in ({"action": "move", "dx": 1, "dy": 2}, [1, 2, 3], Point(0, 0), Point(2, 2), "hi", 3.5):
        print("match", matcher(cmd))
    print("exceptions", uses_exceptions(2), uses_exceptions(0), uses_exceptions(-1))
    print("generator", list(gen_numbers(4)))
    print("async", asyncio.run(gather_all(3)))
    print("lambdas", lambdas([3, 1, 2]))
    print("one_liner", one_liner(1))
    print("docstring", with_docstring(1), with_docstring.__name__)
    print("import", conditional_import(2.7))
    print("chained", chained(1, 2), chained(3, 2))
    print("fstrings", fstrings("ab", 6))
    print("procedure", procedure(1), procedure(1))
    print("names", decorated.__name__, cached.__name__, Point.norm1.__qualname__)
    print("log", LOG)


if __name__ == "__main__":
    main()
