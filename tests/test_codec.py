"""Serialization of stored values: round trips, independence, refusals."""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopersist._blobfile import MAP_FROM, MAX_MAPPINGS, read_blob
from autopersist._codec import MAGIC, OUT_OF_BAND, dumps, loads
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


# -- large buffers out of band: the framed layout ----------------------------------

BIG = 1_000_000  # float64 elements: 8 MB, far above OUT_OF_BAND


def _mapped(data: bytes, tmp_path: Path) -> memoryview:
    """``data`` through a blob file, as ``Storage.value_bytes`` returns it."""
    path = tmp_path / "blob"
    path.write_bytes(data)
    return read_blob(path)


def test_small_values_are_plain_protocol_5_pickles() -> None:
    np = pytest.importorskip("numpy")
    for value in (
        {"a": [1, 2.5, "x"], "b": b"\x00" * 1000},
        np.arange(100),
        b"\x01" * (OUT_OF_BAND - 100),
        np.zeros(OUT_OF_BAND // 8 - 1),  # one element short of out of band
    ):
        assert dumps(value) == pickle.dumps(value, 5)
        assert dumps(value)[:1] == b"\x80"


def test_big_array_round_trip_is_framed_and_aligned(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    array = np.random.default_rng(0).standard_normal(BIG)
    data = dumps(array)
    assert data[:4] == MAGIC
    assert len(data) < array.nbytes + 4096  # the data once, no copy in the pickle
    for source in (data, bytearray(data), memoryview(data), _mapped(data, tmp_path)):
        restored = loads(source)
        assert type(restored) is np.ndarray
        assert restored.dtype == array.dtype and restored.shape == array.shape
        assert np.array_equal(restored, array)
        assert restored.flags.writeable and restored.flags.aligned
        assert restored.flags.c_contiguous and not restored.flags.owndata
    assert loads(_mapped(data, tmp_path)).ctypes.data % 64 == 0


def test_dict_of_two_big_arrays_and_small_values() -> None:
    np = pytest.importorskip("numpy")
    value = {
        "x": np.arange(BIG, dtype=np.int64),
        "y": np.ones((500, 300), dtype=np.float32, order="F"),
        "name": "run",
        "n": 3,
        "small": np.arange(5),
    }
    data = dumps(value)
    assert data[:4] == MAGIC
    restored = loads(data)
    assert isinstance(restored, dict)
    assert restored.keys() == value.keys()
    for key in ("x", "y", "small"):
        assert np.array_equal(restored[key], value[key])
        assert restored[key].dtype == value[key].dtype
    assert restored["y"].flags.f_contiguous
    assert (restored["name"], restored["n"]) == ("run", 3)


def test_a_read_only_array_loads_read_only_as_after_a_plain_unpickle(
    tmp_path: Path,
) -> None:
    np = pytest.importorskip("numpy")
    array = np.arange(BIG)
    array.flags.writeable = False
    data = dumps(array)
    assert data[:4] == MAGIC
    assert not pickle.loads(pickle.dumps(array, 5)).flags.writeable
    for source in (data, _mapped(data, tmp_path)):
        restored = loads(source)
        assert not restored.flags.writeable
        assert np.array_equal(restored, array)


def test_one_array_twice_stays_one_object() -> None:
    np = pytest.importorskip("numpy")
    array = np.arange(BIG)
    first, second = loads(dumps([array, array]))  # type: ignore[misc]
    assert first is second


def test_pandas_frame_with_a_large_column() -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {"a": np.arange(BIG, dtype=np.float64), "b": ["x", None] * (BIG // 2)}
    )
    data = dumps(frame)
    assert data[:4] == MAGIC
    restored = loads(data)
    pd.testing.assert_frame_equal(restored, frame)
    restored.loc[0, "a"] = -1.0  # writable, like after an ordinary unpickle
    assert restored.loc[0, "a"] == -1.0


def test_non_contiguous_view_round_trip() -> None:
    np = pytest.importorskip("numpy")
    base = np.arange(2 * BIG, dtype=np.float64)
    for view in (base[::2], base.reshape(2000, -1)[:, ::3]):
        restored = loads(dumps(view))
        assert np.array_equal(restored, view)
        assert restored.flags.writeable


def test_big_bytes_and_zero_d_array() -> None:
    np = pytest.importorskip("numpy")
    blob = bytes(range(256)) * 4096  # 1 MiB
    assert dumps(blob) == pickle.dumps(blob, 5)  # pickle keeps bytes in band
    restored = loads(dumps(blob))
    assert type(restored) is bytes and restored == blob
    big = bytearray(blob)
    assert type(loads(dumps(big))) is bytearray and loads(dumps(big)) == big
    scalar = np.array(3.5)
    restored = loads(dumps(scalar))
    assert restored.shape == () and restored == 3.5 and restored.flags.writeable


def test_mapped_loads_are_writable_private_and_independent(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    data = dumps(np.arange(BIG, dtype=np.float64))
    path = tmp_path / "blob"
    path.write_bytes(data)
    first = loads(read_blob(path))
    second = loads(read_blob(path))
    first[:] = -1.0
    assert second[0] == 0.0 and second[-1] == BIG - 1
    assert loads(read_blob(path))[0] == 0.0
    assert path.read_bytes() == data  # the write never reached the file
    from_bytes = loads(data)
    from_bytes[0] = 5.0
    assert loads(data)[0] == 0.0  # read-only input: buffers copied per load


def test_a_live_mapping_survives_replace_and_delete(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    array = np.arange(BIG, dtype=np.float64)
    data = dumps(array)
    path = tmp_path / "blob"
    path.write_bytes(data)
    loaded = loads(read_blob(path))
    other = tmp_path / "other"
    other.write_bytes(data)
    os.replace(other, path)  # another process stores the same value again
    assert np.array_equal(loaded, array)
    path.unlink()  # gc deletes it
    assert np.array_equal(loaded, array)
    loaded[-1] = 0.0
    assert loaded[-1] == 0.0


def test_small_blobs_and_those_past_the_mapping_limit_are_read(
    tmp_path: Path,
) -> None:
    np = pytest.importorskip("numpy")
    small = tmp_path / "small"
    small.write_bytes(dumps(np.arange(OUT_OF_BAND, dtype=np.uint8)))
    first, second = loads(read_blob(small)), loads(read_blob(small))
    assert isinstance(read_blob(small).obj, bytearray)
    first[-1] = 0  # writable, and its own memory
    assert second[-1] == 255 and loads(read_blob(small))[-1] == 255
    path = tmp_path / "blob"
    path.write_bytes(dumps(np.full(MAP_FROM, 7, dtype=np.uint8)))
    held = [loads(read_blob(path)) for _ in range(MAX_MAPPINGS + 5)]
    assert all(a.flags.writeable and a[-1] == 7 for a in held)
    assert isinstance(read_blob(path).obj, bytearray)
    held.clear()
    assert not isinstance(read_blob(path).obj, bytearray)  # mappings freed


def test_empty_and_truncated_blob_files(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    path = tmp_path / "blob"
    path.write_bytes(b"")
    assert len(read_blob(path)) == 0
    data = dumps(np.arange(BIG))
    for cut in (10, 40, len(data) // 2, len(data) - 1):
        with pytest.raises(pickle.UnpicklingError):
            loads(data[:cut])
    with pytest.raises(OSError):
        read_blob(tmp_path / "missing")
