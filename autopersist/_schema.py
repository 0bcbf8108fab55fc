"""The store's SQLite schema, in one place, with its version.

Tables (documented for users in docs/store.md):

``runs``       one row per run: script, argv, cwd, times, exit status, Python, counters
``functions``  one row per project function, method or class ever seen (``func_id`` is
               ``module:qualname``)
``versions``   one row per code version of a function, with its source, first and
               last sight (``last_seen``: the newest run that loaded this version;
               the version with the greatest ``last_seen`` is the current one);
               for ops, ``call_version`` is the version without parameter defaults,
               which the op's own calls record as their dependency on it
``accepted``   ``autopersist accept``: new version declared compatible with an old one;
               ``new_params`` (JSON list) names parameters the new version added with
               a default: calls passing that default keep the old calls' identity
``calls``      one row per computed op call (never overwritten): op, version,
               ``inputs_id``, ``deps_id``, ``output_id``, status (``ok``, ``impure``,
               ``failed``), run, timing; ``output_data``: a copy of the pickled
               output when it is small (at most 256 bytes), so reusing it reads
               one row
``call_values`` edges from calls to their input values: one row per input (role ``in``,
               name = parameter); the output is ``calls.output_id`` (stores of
               format 1 also hold a row per output, role ``out``, ignored)
``call_links`` provenance: input ``name`` (or its element at ``path``, e.g. ``[2]``)
               is the output (or its element at ``source_path``) of ``source_call_id``;
               recorded at run time by content and object identity
``call_parents`` nesting: ``call_id`` was made (computed or reused) while
               ``parent_call_id`` was computing
``deps``       dependency sets, shared by the calls that have the same one (JSON list
               of ``[name, hash]`` pairs, sorted; a name is ``f:module:qualname`` for a
               function, method or class, whose hash is its version, or
               ``g:module:NAME`` for a global, whose hash is its value's)
``reuses``     reuses of stored calls: which calls a run reused, one row per run and
               commit (``call_ids``: JSON list; a log: a call forgotten while a run
               was reusing it may still be named here)
``value_rows`` values: type, size, a short preview, the pickled bytes inline when
               small (``data``), else NULL and the bytes in ``blobs/ab/cdef...``
               (``size`` is the file's); since format 3 a blob holding buffers of
               64 KiB or more is in ``_codec``'s framed layout (``b"APB1"``, the
               pickle, then each buffer aligned), other values are plain pickles
"""

from __future__ import annotations

#: Bump when the schema changes; a store with a higher version is refused, a store
#: with a lower one is upgraded when a run opens it (``create_schema``).
#: 2: no more ``out`` rows in ``call_values`` (outputs are ``calls.output_id``);
#: ``calls.output_data`` and ``reuses`` (one row per run and commit) replacing
#: ``uses`` (one row per reuse), both done to a format-1 store by ``UPGRADES``; no
#: ``calls_by_run`` index in new stores. An older autopersist must not collect
#: such a store's outputs as unreferenced, hence the bump.
#: 3: values holding large buffers (numpy arrays...) are stored in ``_codec``'s
#: framed layout, which format-2 code cannot unpickle: it refuses the store
#: instead. No table changes; a format-2 store's plain pickles stay readable.
SCHEMA_VERSION = 3

#: Tables added after format 1, with the format that added them.
TABLE_SINCE = {"reuses": 2}

#: Statements that bring a store of an older format up to this one, by the format
#: they upgrade from; run in the transaction that creates the schema.
UPGRADES = {
    1: (
        "ALTER TABLE calls ADD COLUMN output_data BLOB",
        "CREATE TABLE reuses (run_id TEXT, used_at REAL, call_ids TEXT)",
        "INSERT INTO reuses SELECT run_id, max(used_at), json_group_array(call_id) "
        "FROM uses GROUP BY run_id",
        "DROP TABLE uses",
    ),
    2: (),  # format 3 changed only how new blobs are written
}

DDL = """
CREATE TABLE IF NOT EXISTS _autopersist_meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, script TEXT, argv TEXT, cwd TEXT, started REAL,
    ended REAL, status INTEGER, python TEXT, packages TEXT, pid INTEGER,
    calls INTEGER DEFAULT 0, reused INTEGER DEFAULT 0, computed INTEGER DEFAULT 0,
    failed INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS functions (
    func_id TEXT PRIMARY KEY, module TEXT, qualname TEXT, kind TEXT, is_op INTEGER
);
CREATE TABLE IF NOT EXISTS versions (
    func_id TEXT, version_id TEXT, source TEXT, first_seen REAL, run_id TEXT,
    last_seen REAL, last_run_id TEXT, call_version TEXT,
    PRIMARY KEY (func_id, version_id)
);
CREATE TABLE IF NOT EXISTS accepted (
    func_id TEXT, old_version TEXT, new_version TEXT, accepted_at REAL,
    new_params TEXT,
    PRIMARY KEY (func_id, old_version, new_version)
);
CREATE TABLE IF NOT EXISTS value_rows (
    value_id TEXT PRIMARY KEY, type TEXT, size INTEGER, preview TEXT, data BLOB,
    created REAL
);
CREATE TABLE IF NOT EXISTS deps (deps_id TEXT PRIMARY KEY, data TEXT);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY, op_id TEXT, version_id TEXT, inputs_id TEXT,
    deps_id TEXT, output_id TEXT, status TEXT, run_id TEXT, started REAL,
    duration REAL, error TEXT, output_data BLOB
);
CREATE INDEX IF NOT EXISTS calls_by_inputs ON calls (op_id, inputs_id);
CREATE TABLE IF NOT EXISTS call_values (
    call_id TEXT, role TEXT, name TEXT, value_id TEXT,
    PRIMARY KEY (call_id, role, name)
);
CREATE INDEX IF NOT EXISTS call_values_by_value ON call_values (value_id);
CREATE TABLE IF NOT EXISTS call_links (
    call_id TEXT, name TEXT, path TEXT, source_call_id TEXT, source_path TEXT,
    PRIMARY KEY (call_id, name, path)
);
CREATE INDEX IF NOT EXISTS call_links_by_source ON call_links (source_call_id);
CREATE TABLE IF NOT EXISTS call_parents (
    call_id TEXT, parent_call_id TEXT, PRIMARY KEY (call_id, parent_call_id)
);
CREATE INDEX IF NOT EXISTS call_parents_by_parent ON call_parents (parent_call_id);
CREATE TABLE IF NOT EXISTS reuses (run_id TEXT, used_at REAL, call_ids TEXT);
"""
