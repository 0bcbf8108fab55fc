"""The short cuts of the call path (issue #6) store what the generic helpers
define: ids recomputed here with ``combine`` and ``content_hash`` over the stored
rows, value rows with their type name and preview, and the encoder's hash of an int."""

from __future__ import annotations

import json
import pickle
from hashlib import sha256

import pytest

from autopersist._hashing import (
    _enc,
    combine,
    combine_encoded,
    content_hash,
    encode_part,
)

PARTS = [
    (),
    ("",),
    ("pipeline:train",),
    ("m:f", "x", "0" * 32),
    ("m:f", "é", "\ud800", "a\0b", "x" * 70_000),
]


@pytest.mark.parametrize("parts", PARTS)
def test_combine_encoded_is_combine(parts: tuple[str, ...]) -> None:
    encoded = b"".join(encode_part(part) for part in parts)
    assert combine_encoded(len(parts), encoded) == combine(*parts)


INTS = [0, 1, -1, 255, 256, -5, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**40]


@pytest.mark.parametrize("value", INTS)
def test_content_hash_of_an_int_is_the_encoders(value: int) -> None:
    buf = bytearray()
    _enc(value, buf, 0)
    assert content_hash(value) == sha256(buf).hexdigest()[:32]


class Count(int):
    pass


def test_ints_are_apart_from_bools_and_their_subclasses() -> None:
    assert content_hash(1) != content_hash(True)
    assert content_hash(0) != content_hash(False)
    assert content_hash(Count(3)) != content_hash(3)


SCRIPT = """
# persist
SCALE = 3


def inner(x, label="é"):  # persist: always
    return [x * SCALE, label]


def outer(n, items):  # persist: always
    return sum(inner(i)[0] for i in range(n)) + len(items)


print(outer(3, ["a", "b"]), inner(10**30, label="big"), inner(7, "s"))
"""


def test_stored_rows_match_the_generic_definitions(project) -> None:
    project.write("calc.py", SCRIPT)
    first = project.run("calc.py")
    assert first.returncode == 0, first.stderr
    with project.db() as conn:
        calls = conn.execute(
            "SELECT call_id, op_id, inputs_id, deps_id, output_id, status "
            "FROM calls ORDER BY rowid"
        ).fetchall()
        inputs = {
            call_id: [(name, value_id) for name, value_id in rows]
            for call_id, rows in _grouped(
                conn.execute(
                    "SELECT call_id, name, value_id FROM call_values "
                    "WHERE role = 'in' ORDER BY rowid"
                ).fetchall()
            ).items()
        }
        deps = dict(conn.execute("SELECT deps_id, data FROM deps").fetchall())
        values = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT value_id, type, preview, data FROM value_rows"
            ).fetchall()
        }
        parents = conn.execute(
            "SELECT call_id, parent_call_id FROM call_parents"
        ).fetchall()
    assert len(calls) == 6  # outer, inner x 3 nested, two inner at top level
    for call_id, op_id, inputs_id, deps_id, output_id, status in calls:
        assert status == "ok"
        parts = [op_id]
        for name, value_id in inputs[call_id]:
            parts += [name, value_id]
            # A value row holds the input's pickle, its type and its repr.
            type_name, preview, data = values[value_id]
            value = pickle.loads(data)
            assert content_hash(value) == value_id
            assert (type_name, preview) == (type(value).__name__, repr(value))
        assert inputs_id == combine(*parts)
        items = json.loads(deps[deps_id])
        assert items == sorted(items)
        assert deps_id == combine(*(part for item in items for part in item))
        assert call_id == combine(op_id, inputs_id, deps_id)
        output = pickle.loads(values[output_id][2])
        assert content_hash(output) == output_id
        assert values[output_id][:2] == (type(output).__name__, repr(output))
    (outer_id,) = [call[0] for call in calls if call[1] == "calc:outer"]
    nested = [call_id for call_id, parent in parents if parent == outer_id]
    assert len(nested) == 3 and len(parents) == 3
    # The inputs are those the script passed, defaults applied.
    by_inputs = sorted(
        repr([pickle.loads(values[v][2]) for _, v in inputs[c[0]]]) for c in calls
    )
    expected = [[3, ["a", "b"]], [0, "é"], [1, "é"], [2, "é"], [10**30, "big"]]
    assert by_inputs == sorted(map(repr, [*expected, [7, "s"]]))
    second = project.run("calc.py")
    assert second.stdout == first.stdout
    assert second.counts()["computed"] == 0


def _grouped(rows: list[tuple[str, str, str]]) -> dict[str, list[tuple[str, str]]]:
    grouped: dict[str, list[tuple[str, str]]] = {}
    for call_id, name, value_id in rows:
        grouped.setdefault(call_id, []).append((name, value_id))
    return grouped


STRINGS = ["", "a", "é", "\ud800", "x" * 65_536, "é" * 40_000]


@pytest.mark.parametrize("value", STRINGS)
def test_content_hash_of_a_str_is_the_encoders(value: str) -> None:
    buf = bytearray()
    _enc(value, buf, 0)
    assert content_hash(value) == sha256(buf).hexdigest()[:32]


REBOUND = """
# persist
LIMIT = 10


def helper(x):
    return x + LIMIT


def op(x):  # persist: always
    return helper(x)


print(op(1))
LIMIT = 20
print(op(1))
LIMIT = 10
print(op(1))
"""


def test_a_global_rebound_between_calls_is_a_new_dependency(project) -> None:
    # The dependencies of a function that ran are kept while the globals it
    # reads are the same objects: rebinding one must be seen at the next call.
    project.write("rebound.py", REBOUND)
    first = project.run("rebound.py")
    assert first.stdout == "11\n21\n11\n"
    # helper is an op too: computed under both values, reused with the op.
    assert first.counts() == {"calls": 5, "reused": 1, "computed": 4, "failed": 0}
    with project.db() as conn:
        sets = [
            dict(json.loads(data))
            for (data,) in conn.execute(
                "SELECT d.data FROM calls c JOIN deps d USING (deps_id) "
                "WHERE c.op_id = 'rebound:op' ORDER BY c.rowid"
            ).fetchall()
        ]
    assert [found["g:rebound:LIMIT"] for found in sets] == [
        content_hash(10),
        content_hash(20),
    ]
    second = project.run("rebound.py")
    assert second.stdout == first.stdout
    assert second.counts() == {"calls": 3, "reused": 3, "computed": 0, "failed": 0}
