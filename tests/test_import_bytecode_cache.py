"""The rewritten bytecode cached beside the source (``_importhook._cached_code``):
read back only for exactly the source it was made from, and any damaged or
foreign file is ignored (the module is then rewritten again)."""

from __future__ import annotations

import importlib._bootstrap_external as bootstrap_external
import sys
from pathlib import Path

import pytest

from autopersist import _importhook
from autopersist._importhook import CACHE_TAG, _cached_code, _write_cached_code

SOURCE = b"# persist\ndef f(x):\n    return x + 1\n"


@pytest.fixture
def cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.setattr(sys, "pycache_prefix", None)
    path = tmp_path / "mod.py"
    path.write_bytes(SOURCE)
    code = _importhook.instrumented_code(SOURCE, str(path))
    _write_cached_code(str(path), SOURCE, code)
    cache = Path(
        bootstrap_external.cache_from_source(str(path), optimization=CACHE_TAG)
    )
    assert cache.is_file()
    return str(path), cache


def test_cached_code_is_the_code_written(cached):
    path, _ = cached
    code = _cached_code(path, SOURCE)
    assert code == _importhook.instrumented_code(SOURCE, path)


def test_another_source_of_the_same_size_is_not_served(cached):
    path, _ = cached
    edited = SOURCE.replace(b"x + 1", b"x + 2")
    assert len(edited) == len(SOURCE)
    assert _cached_code(path, edited) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"",  # empty: cannot even be mapped
        lambda data: data[:10],  # shorter than the header
        lambda data: data[:16],  # header only
        lambda data: data[: len(data) // 2],  # cut in the middle of the code
        lambda data: b"\0\0\0\0" + data[4:],  # another magic number
        lambda data: data[:4] + b"\0\0\0\0" + data[8:],  # a timestamp pyc
        lambda data: data[:16] + b"garbage" * 10,
        lambda data: data[:16] + b"N",  # valid marshal data, not code
    ],
)
def test_a_damaged_cache_is_ignored(cached, damage):
    path, cache = cached
    cache.write_bytes(damage(cache.read_bytes()))
    assert _cached_code(path, SOURCE) is None


def test_read_without_a_mapping_where_the_file_system_has_none(cached, monkeypatch):
    path, _ = cached

    def no_mapping(*args, **kwargs):
        raise OSError(19, "No such device")

    monkeypatch.setattr(_importhook.mmap, "mmap", no_mapping)
    assert _cached_code(path, SOURCE) == _importhook.instrumented_code(SOURCE, path)


def test_no_cache_file(tmp_path):
    path = tmp_path / "other.py"
    path.write_bytes(SOURCE)
    assert _cached_code(str(path), SOURCE) is None


def test_a_cache_replaced_while_loaded_modules_use_it(cached):
    """A new cache file is renamed over the old one: the code read before stays
    valid (nothing of it lives in the file any more)."""
    path, _ = cached
    code = _cached_code(path, SOURCE)
    edited = SOURCE.replace(b"x + 1", b"x + 3")
    _write_cached_code(path, edited, _importhook.instrumented_code(edited, path))
    namespace: dict[str, object] = {}

    class Plain:
        def register(self, prefix, rows):
            return None

        def op(self, index, **options):
            return lambda func: func

    namespace["__autopersist__"] = Plain()
    namespace["__autopersist_mark__"] = id
    namespace["__autopersist_unseen__"] = [True] * 8
    assert code is not None
    exec(code, namespace)
    assert namespace["f"](1) == 2  # type: ignore[operator]
    assert _cached_code(path, edited) is not None
    assert _cached_code(path, SOURCE) is None
