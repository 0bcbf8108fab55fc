"""Serialization of stored values: round trips, independence, refusals."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from autopersist._codec import dumps, loads
from autopersist.errors import HashingError


class Record:
    """A user class defined at module level, so pickle can find it by name."""

    def __init__(self, name: str, values: list[int]) -> None:
        self.name = name
        self.values = values

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and (self.name, self.values) == (
            other.name,
            other.values,
        )

    __hash__ = None  # type: ignore[assignment]


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**100),
        1.5,
        1 + 2j,
        "héllo",
        b"\x00\xff",
        bytearray(b"ab"),
        (1, "a", None),
        [1, [2, [3, {"k": (4, 5)}]]],
        {"a": {1, 2}, "b": frozenset({"x"}), 3: [None]},
        Record("r", [1, 2]),
        [Record("a", []), {"nested": Record("b", [3])}],
    ],
    ids=repr,
)
def test_round_trip(value: object) -> None:
    data = dumps(value)
    assert isinstance(data, bytes)
    restored = loads(data)
    assert restored == value
    assert type(restored) is type(value)


def test_round_trip_numpy() -> None:
    np = pytest.importorskip("numpy")
    for array in (
        np.arange(12, dtype=np.float64).reshape(3, 4),
        np.arange(12).reshape(3, 4).T,  # not C-contiguous
        np.array(["a", "bc"]),
        np.zeros(0),
        np.array([1, "x", None], dtype=object),
    ):
        restored = loads(dumps(array))
        assert restored.dtype == array.dtype
        assert restored.shape == array.shape
        assert np.array_equal(restored, array) or array.dtype == object
        assert list(restored.ravel()) == list(array.ravel())


def test_round_trip_pandas() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    pd.testing.assert_frame_equal(loads(dumps(frame)), frame)


def test_loads_returns_independent_objects() -> None:
    data = dumps({"values": [1, 2], "record": Record("r", [1])})
    first = loads(data)
    second = loads(data)
    assert first == second
    assert first is not second
    assert isinstance(first, dict) and isinstance(second, dict)
    first["values"].append(3)
    first["record"].values.append(2)
    assert second == {"values": [1, 2], "record": Record("r", [1])}
    assert loads(data) == second


def test_loads_independent_numpy_arrays() -> None:
    np = pytest.importorskip("numpy")
    data = dumps(np.arange(4))
    first = loads(data)
    second = loads(data)
    first[0] = 100
    assert second[0] == 0
    assert loads(data)[0] == 0


def _generator() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("make", "type_name"),
    [
        (threading.Lock, "_thread.lock"),
        (_generator, "generator"),
        (lambda: [1, lambda: 2], "list"),
    ],
    ids=["lock", "generator", "nested-lambda"],
)
def test_unpicklable_values_raise_hashing_error(make: object, type_name: str) -> None:
    value = make()  # type: ignore[operator]
    with pytest.raises(HashingError, match=f"'{type_name}'") as info:
        dumps(value)
    assert "cannot be pickled" in str(info.value)
    assert info.value.__cause__ is not None


def test_local_class_raises_hashing_error() -> None:
    class Local:
        pass

    with pytest.raises(HashingError, match="Local"):
        dumps(Local())
