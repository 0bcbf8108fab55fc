"""An in-memory index of one op's stored reusable calls, for lookups without SQL.

An op called many times in one process (a loop) would otherwise cost one indexed
SQLite query per call (~4 µs, more as the store grows): the storage loads all the
op's reusable calls once, after ``LOAD_AFTER_LOOKUPS`` lookups, and from then on
answers from this index, which the calls the process stores are added to as well.
Calls that other processes store after the load are not seen: such a call is
computed again and stored under the same content-derived id (kept once).
"""

from __future__ import annotations

import sys

#: Lookups of one op (by SQL) after which its calls are loaded into memory. Small
#: scripts never pay for the load; loops pay ~1-2 µs per stored call, once.
LOAD_AFTER_LOOKUPS = 50
#: Outputs whose pickled bytes are at most this long are kept in the index, so
#: reusing them reads nothing from the store.
SMALL_OUTPUT = 256

#: ``(call_id, deps_id, output_id, pickled output or None)``
Candidate = tuple[str, str, str, bytes | None]


class OpIndex:
    """Reusable calls of one op by ``inputs_id``, oldest first."""

    __slots__ = ("_by_inputs",)

    def __init__(self) -> None:
        self._by_inputs: dict[str, tuple[Candidate, ...]] = {}

    def __len__(self) -> int:
        return len(self._by_inputs)

    def get(self, inputs_id: str) -> tuple[Candidate, ...]:
        return self._by_inputs.get(inputs_id, ())

    def add(
        self,
        inputs_id: str,
        call_id: str,
        deps_id: str,
        output_id: str,
        data: bytes | None,
    ) -> None:
        if data is not None and len(data) > SMALL_OUTPUT:
            data = None
        # Many calls share one dependency set: one string object for all of them.
        row = (call_id, sys.intern(deps_id), output_id, data)
        found = self._by_inputs.get(inputs_id)
        if found is None:
            self._by_inputs[inputs_id] = (row,)
        elif all(candidate[0] != call_id for candidate in found):
            self._by_inputs[inputs_id] = (*found, row)
