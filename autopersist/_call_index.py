"""An in-memory index of one op's stored reusable calls, for lookups without SQL.

An op called many times in one process (a loop) would otherwise cost one indexed
SQLite query per call (~2-3 µs): the storage loads all the op's reusable calls
once, when its lookups reach ``LOAD_AFTER_LOOKUPS`` and ``LOAD_SHARE`` of the
op's stored calls (or the calls they found reach ``LOAD_SHARE_HITS``), and from
then on answers from this index, which the calls the process stores are added to as
well. Calls that other processes store after the load are not seen: such a call
is computed again and stored under the same content-derived id (kept once)."""

from __future__ import annotations

#: Lookups of one op (by SQL) after which its calls may be loaded into memory:
#: small scripts never pay for the load (~1-5 µs per stored call, once) ...
LOAD_AFTER_LOOKUPS = 50
#: ... and then only once the lookups reach this share of the op's stored calls
#: (all versions; other ops' calls do not count, up to ``COUNTED_CALLS``). A load
#: costs ~1.5-2 µs per stored call of the op; a lookup by SQL ~1.5 (miss) to ~3 µs
#: (hit) more than one in memory. Loading when the lookups so far have cost about
#: as much as the load would (the ski-rental rule) keeps a run within about twice
#: the cost of the better choice, whatever its length: a run of 10k new calls of
#: an op with 100k stored calls keeps using SQL, one that looks up most of them
#: loads on the way, and a new op (none stored) loads its empty index at once,
#: however big the store ...
LOAD_SHARE = 0.4
#: ... or sooner, once this share of the op's stored calls has been found: lookups
#: that find their calls are most often a script run again over the work it
#: stored, which goes on to look up most of it.
LOAD_SHARE_HITS = 0.1
#: An op holding less than this share of the store's calls is loaded through its
#: range of the ``calls_by_inputs`` index (one probe of the table per call), a
#: bigger one by a scan of the whole table (each page read once, other ops' rows
#: skipped in SQLite).
INDEX_LOAD_SHARE = 0.25
#: An op's stored calls are counted (once per process, after its first
#: ``LOAD_AFTER_LOOKUPS`` lookups, in its range of ``calls_by_inputs``: ~0.03 µs a
#: call, 1.5 ms for 50k) up to this many; an op with more is taken to hold the
#: whole store, the size of which is read at once: counting a million calls
#: through (30 to 100 ms) would cost a short run more than its load could save.
COUNTED_CALLS = 50_000
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

    def get(self, inputs_id: str) -> tuple[Candidate, ...]:
        return self._by_inputs.get(inputs_id, ())

    def extend(self, rows: list[tuple[str, str, str, str, bytes | None]]) -> None:
        """Add ``(inputs_id, call_id, deps_id, output_id, data)`` rows read from the
        store; the many rows of one dependency set share one ``deps_id`` string."""
        shared: dict[str, str] = {}
        for inputs_id, call_id, deps_id, output_id, data in rows:
            self._put(
                inputs_id,
                (call_id, shared.setdefault(deps_id, deps_id), output_id, data),
            )
            if len(shared) > 10_000:  # calls with many distinct sets: share none
                shared.clear()

    def add(
        self,
        inputs_id: str,
        call_id: str,
        deps_id: str,
        output_id: str,
        data: bytes | None,
    ) -> None:
        """Add a call this process stores (its ``deps_id`` is shared already: the
        runtime keeps one string per dependency set)."""
        self._put(inputs_id, (call_id, deps_id, output_id, data))

    def _put(self, inputs_id: str, row: Candidate) -> None:
        if row[3] is not None and len(row[3]) > SMALL_OUTPUT:
            row = (row[0], row[1], row[2], None)
        found = self._by_inputs.get(inputs_id)
        if found is None:
            self._by_inputs[inputs_id] = (row,)
        elif all(candidate[0] != row[0] for candidate in found):
            self._by_inputs[inputs_id] = (*found, row)
