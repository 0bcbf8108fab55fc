"""Hashing never runs user code and tells apart what a program can tell apart (#5).

* plain user classes are hashed by walking their dict and slots, not by pickling, so
  neither ``__getstate__`` nor ``__getattr__`` nor properties run; classes that
  customize pickling still go through it;
* classifying a type never raises (odd ``__module__``, half-imported numpy/pandas);
* functions are told apart by name, exceptions by traceback and chained exceptions.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import sys
import types
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from autopersist import _hashing
from autopersist._hashing import content_hash
from autopersist.errors import HashingError

# ------------------------------------------------------------- plain user classes


class Point:
    def __init__(self, x: object, y: object) -> None:
        self.x = x
        self.y = y


class Slotted:
    __slots__ = ("__hidden", "a")

    def __init__(self, a: object) -> None:
        self.a = a


class Recorder:
    """Records every attribute lookup that reaches ``__getattr__`` or a property."""

    __slots__ = ("__dict__", "unset", "value")
    seen: list[str] = []
    value: int
    unset: int

    def __getattr__(self, name: str) -> Any:
        Recorder.seen.append(name)
        raise AttributeError(name)

    @property
    def computed(self) -> int:
        Recorder.seen.append("computed")
        return 1


@dataclasses.dataclass
class Record:
    name: str
    values: list[int]


@dataclasses.dataclass(slots=True)
class SlottedRecord:
    name: str


class Node:
    def __init__(self, value: int, parent: Node | None = None) -> None:
        self.value = value
        self.parent = parent
        self.children: list[Node] = []
        if parent is not None:
            parent.children.append(self)


class CountsGetstate:
    """Customizes pickling: hashed through it, so __getstate__ runs (documented)."""

    calls = 0

    def __init__(self, keep: int, cache: int) -> None:
        self.keep = keep
        self.cache = cache

    def __getstate__(self) -> dict[str, int]:
        CountsGetstate.calls += 1
        return {"keep": self.keep}


class Pair(NamedTuple):
    a: int
    b: int


class Color(enum.Enum):
    RED = 1


class Items(list[int]):
    pass


@pytest.fixture
def no_pickling(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Fails the test if a value reaches joblib.hash; returns what did."""
    reached: list[object] = []

    def spy(obj: object) -> str:
        reached.append(obj)
        return "0" * 32

    monkeypatch.setattr(_hashing, "_joblib_hash", spy)
    return reached


def test_plain_instances_are_walked_not_pickled(no_pickling: list[object]) -> None:
    values = [
        Point(1, "a"),
        Slotted(2),
        Record("r", [1, 2]),
        SlottedRecord("s"),
        Point(Point(1, 2), [Slotted(3)]),
        Recorder(),
    ]
    first = [content_hash(v) for v in values]
    assert [content_hash(v) for v in values] == first
    assert no_pickling == []


def test_plain_instances_by_class_and_state() -> None:
    assert content_hash(Point(1, 2)) == content_hash(Point(1, 2))
    assert content_hash(Point(1, 2)) != content_hash(Point(2, 1))
    assert content_hash(Point(1, 2)) != content_hash(Point(1, 2.0))
    assert content_hash(Point(1, 2)) != content_hash({"x": 1, "y": 2})
    assert content_hash(Record("r", [1])) != content_hash(Record("r", [2]))
    a, b = Slotted(1), Slotted(1)
    assert content_hash(a) == content_hash(b)
    b._Slotted__hidden = 0  # type: ignore[attr-defined]
    assert content_hash(a) != content_hash(b)  # an unset slot differs from a set one
    extra = Point(1, 2)
    extra.z = 3  # type: ignore[attr-defined]
    assert content_hash(extra) != content_hash(Point(1, 2))


def test_getstate_in_the_instance_dict_is_not_called() -> None:
    # Pickling looks __getstate__ up on the instance and calls what it finds.
    calls: list[int] = []
    obj = Point(1, 2)

    def getstate() -> dict[str, int]:
        calls.append(1)
        return {}

    obj.__getstate__ = getstate  # type: ignore[method-assign]
    content_hash(obj)
    content_hash(obj)
    assert calls == []


def test_getattr_and_properties_are_not_probed() -> None:
    Recorder.seen.clear()
    obj = Recorder()
    obj.value = 1  # the slot "unset" stays empty: pickling reads it via getattr
    obj.extra = [1]  # type: ignore[attr-defined]
    first = content_hash(obj)
    assert content_hash(obj) == first
    assert Recorder.seen == []
    obj.unset = 2
    assert content_hash(obj) != first
    assert Recorder.seen == []


def test_class_attribute_lookups_avoid_the_instance() -> None:
    seen: list[str] = []

    class Lying:
        @property  # type: ignore[misc]
        def __class__(self) -> type:
            seen.append("__class__")
            return int

        @property
        def __module__(self) -> str:  # type: ignore[override]
            seen.append("__module__")
            return "x"

    # Not nameable (a local class with a __module__ that is not a str): refused,
    # without reading anything from the instance.
    with pytest.raises(HashingError):
        content_hash(Lying())
    assert seen == []


def test_custom_pickling_still_pickles() -> None:
    CountsGetstate.calls = 0
    a, b = CountsGetstate(1, cache=10), CountsGetstate(1, cache=20)
    assert content_hash(a) == content_hash(b)  # only the custom state counts
    assert content_hash(a) != content_hash(CountsGetstate(2, cache=10))
    assert CountsGetstate.calls == 4


@pytest.mark.parametrize(
    "value",
    [Pair(1, 2), Color.RED, Items([1, 2]), collections.OrderedDict(a=1)],
    ids=["namedtuple", "enum", "list-subclass", "OrderedDict"],
)
def test_classes_with_pickled_state_keep_pickling(
    value: object, no_pickling: list[object]
) -> None:
    content_hash(value)
    assert no_pickling == [value]


def test_items_of_a_list_subclass_matter() -> None:
    assert content_hash(Items([1, 2])) != content_hash(Items([1, 3]))


def test_bare_exception_digest_is_unchanged() -> None:
    assert content_hash(ZeroDivisionError("x")) == "642cd112ae7724b0106d9e58888b768e"


def test_parent_pointers_are_back_references() -> None:
    def tree(leaf: int) -> Node:
        root = Node(0)
        Node(leaf, Node(1, root))
        return root

    assert content_hash(tree(2)) == content_hash(tree(2))
    assert content_hash(tree(2)) != content_hash(tree(3))
    loop = Point(1, None)
    loop.y = loop
    other = Point(1, None)
    other.y = Point(1, other)
    assert content_hash(loop) != content_hash(other)


def test_self_containing_containers_are_still_refused() -> None:
    lst: list[object] = [1]
    lst.append(lst)
    with pytest.raises(HashingError, match="contains itself"):
        content_hash(Point(lst, 1))


def test_unhashable_state_is_refused() -> None:
    with pytest.raises(HashingError, match="generator"):
        content_hash(Point((i for i in range(2)), 1))


def test_local_and_replaced_classes_are_refused() -> None:
    def make(k: int) -> Any:
        class Local:
            def get(self) -> int:
                return k

        return Local

    one, two = make(1), make(2)
    for value in (one, one(), [two()]):
        with pytest.raises(HashingError):
            content_hash(value)

    module = types.ModuleType("replaced_mod")
    exec("class A:\n    pass\nold = A()\nclass A:\n    pass\n", module.__dict__)
    sys.modules["replaced_mod"] = module
    try:
        content_hash(module.A())
        with pytest.raises(HashingError):
            content_hash(module.old)  # its class is no longer replaced_mod.A
    finally:
        del sys.modules["replaced_mod"]


# -------------------------------------------------------------- robust classifying


def _hash_or_refuse(value: object) -> str | None:
    try:
        return content_hash(value)
    except HashingError:
        return None


@pytest.mark.parametrize("module", [3, None, ["m"], property(lambda self: "m")])
def test_non_str_module_never_crashes(module: object) -> None:
    cls = type("X", (), {"__module__": module})
    assert _hashing._classify(cls) is _hashing._enc_instance
    _hash_or_refuse(cls())
    _hash_or_refuse(cls)
    _hash_or_refuse([cls(), {"k": cls}])


@pytest.mark.parametrize("library", ["numpy", "pandas"])
def test_half_imported_library_never_crashes(
    library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module in sys.modules that is still being imported: no ndarray, DataFrame...
    monkeypatch.setitem(sys.modules, library, types.ModuleType(library))
    cls = type("Thing", (), {"__module__": f"{library}.core"})
    assert _hashing._classify(cls) is _hashing._enc_instance
    _hash_or_refuse(cls())
    _hash_or_refuse(cls)
    assert content_hash(Point(1, 2)) == content_hash(Point(1, 2))


def test_unexpected_errors_become_hashing_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(t: type) -> Callable[[Any, bytearray, int], None]:
        def handler(obj: Any, buf: bytearray, depth: int) -> None:
            raise KeyError("boom")

        return handler

    monkeypatch.setattr(_hashing, "_classify", broken)
    with pytest.raises(HashingError, match="boom"):
        content_hash(object())


# ------------------------------------------------------------ functions, exceptions


def a() -> None:
    pass


def b() -> None:
    pass


def test_functions_of_one_code_but_other_names_differ() -> None:
    assert a.__code__.co_code == b.__code__.co_code
    assert content_hash(a) != content_hash(b)
    moved = types.FunctionType(a.__code__, a.__globals__, "a")
    assert content_hash(moved) == content_hash(a)
    moved.__module__ = "elsewhere"
    assert content_hash(moved) != content_hash(a)
    moved = types.FunctionType(a.__code__, a.__globals__, "a")
    moved.__qualname__ = "Other.a"
    assert content_hash(moved) != content_hash(a)


def test_nested_function_names_count() -> None:
    def outer_one() -> str:
        def inner() -> None:
            pass

        return inner.__name__

    def outer_two() -> str:
        def other() -> None:
            pass

        return other.__name__

    outer_two.__name__, outer_two.__qualname__ = "outer_one", outer_one.__qualname__
    assert content_hash(outer_one) != content_hash(outer_two)


class Twice:
    def one(self) -> int:
        return 1

    def uno(self) -> int:
        return 1


def test_bound_methods_by_instance_and_name() -> None:
    twice = Twice()
    assert content_hash(twice.one) == content_hash(Twice().one)
    assert content_hash(twice.one) != content_hash(twice.uno)
    assert content_hash(Slotted(1).__init__) != content_hash(Slotted(2).__init__)  # type: ignore[misc]


def _fail(x: int) -> float:
    return 1 / x


def _caught(where: int) -> ZeroDivisionError:
    try:
        if where == 0:
            _fail(0)
        else:
            1 / 0  # noqa: B018
    except ZeroDivisionError as exc:
        return exc
    raise AssertionError


def test_exceptions_differ_by_traceback() -> None:
    assert str(_caught(0)) == str(_caught(1))
    assert content_hash(_caught(0)) == content_hash(_caught(0))
    assert content_hash(_caught(0)) != content_hash(_caught(1))
    assert content_hash(_caught(0)) != content_hash(
        ZeroDivisionError("division by zero")
    )


def test_exceptions_differ_by_cause_and_context() -> None:
    def chained(cause: bool) -> ValueError:
        try:
            try:
                raise KeyError("k")
            except KeyError as inner:
                if cause:
                    raise ValueError("v") from inner
                raise ValueError("v")  # noqa: B904
        except ValueError as exc:
            return exc
        raise AssertionError

    assert content_hash(chained(True)) == content_hash(chained(True))
    assert content_hash(chained(True)) != content_hash(chained(False))
    bare = ValueError("v")
    with_cause = ValueError("v")
    with_cause.__cause__ = KeyError("k")
    assert content_hash(bare) != content_hash(with_cause)


# ------------------------------------------------------------------- through run

_PROBES = """
    # persist
    import sys


    class Config:
        __slots__ = ("lr", "note")
        probes = 0

        def __init__(self, lr):
            self.lr = lr

        def __getattr__(self, name):
            Config.probes += 1
            raise AttributeError(name)


    def scaled(config, x):
        return config.lr * x


    config = Config(0.5)
    print([scaled(config, x) for x in range(5)])
    print(Config.probes, file=sys.stderr)
"""


@pytest.mark.slow
@pytest.mark.subprocess
def test_hashing_runs_no_user_code_under_run(project: Any) -> None:
    project.write("probes.py", _PROBES)
    plain = project.python("probes.py")
    assert plain.stderr.splitlines()[-1] == "0"
    for reused in (0, 5):
        run = project.run("probes.py")
        assert run.stdout == plain.stdout, run.stderr
        assert run.counts()["reused"] == reused, run.stderr
        # Hashing (twice per computed call) reads no attribute: the one probe left
        # comes from pickling the argument once to store it (the runtime's codec).
        assert int(run.stderr.splitlines()[0]) <= 1, run.stderr


# ----------------------------------------------------------------- pinned digests


def test_pinned_plain_instance_digests() -> None:
    # New encodings (#5): plain instances were hashed by joblib before.
    assert Point.__module__ == "tests.test_hashing_faithful"
    assert content_hash(Point(1, "a")) == "da2338dd428208034ee223040f110a6b"
    assert content_hash(Slotted(2)) == "c42699a12e194d41694e803642d48bc2"
