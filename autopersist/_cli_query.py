"""CLI commands: query (registered on the group by ``cli``).

``runs``, ``ops``, ``calls``, ``frame`` print a table (aligned, long cells cut),
CSV or JSON (a list of records). CSV and JSON are exact: full ids, floats written
with ``repr``, times in ISO 8601 with their UTC offset, lists and dicts as JSON,
other objects as their ``repr``. ``draw`` writes a picture or DOT file; ``forget``
and ``gc`` delete, each in one transaction.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from autopersist._cli_common import store_dir, store_option

if TYPE_CHECKING:
    import pandas as pd

    from autopersist._frame import ComputationFrame
    from autopersist._query import Store

#: Ids are cut to this many characters in tables (CSV and JSON keep them whole).
SHORT_ID = 10


def _format_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "csv", "json"]),
        default="table",
        show_default=True,
        help="table for reading; csv or json (a list of records) for programs.",
    )(func)


def _open(ctx: click.Context, store: str | None) -> Store:
    from autopersist._query import Store

    return Store(store_dir(ctx, store))


# -- cells ----------------------------------------------------------------------------


def _is_empty(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        import pandas as pd

        return value is pd.NaT
    except ImportError:  # pragma: no cover
        return False


def _jsonable(value: object) -> object:
    """A JSON-native form of a cell: numbers, strings, lists and str-keyed dicts as
    themselves, times as ISO text, anything else as its ``repr``."""
    if _is_empty(value):
        return None
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        try:
            return _jsonable(item())
        except (TypeError, ValueError):
            return repr(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v) for k, v in value.items()}
    return repr(value)


def _csv_text(value: object) -> str:
    if _is_empty(value):
        return ""
    if isinstance(value, (bool, int, str)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    plain = _jsonable(value)
    if isinstance(plain, (list, dict)):
        return json.dumps(plain, ensure_ascii=False)
    return str(plain)


def _is_values(value: object) -> bool:
    """A ``Values`` cell (checked without importing ``_frame`` and networkx)."""
    frame_module = sys.modules.get("autopersist._frame")
    return frame_module is not None and isinstance(value, frame_module.Values)


def _table_text(value: object, column: str, ids: set[str]) -> str:
    if _is_empty(value):
        return ""
    if _is_values(value):
        assert isinstance(value, tuple)
        return "{" + ", ".join(_table_text(v, column, ids) for v in value) + "}"
    if isinstance(value, str):
        return value[:SHORT_ID] if column in ids else value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}s" if column == "duration" else repr(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return repr(value)


def _emit(
    table: pd.DataFrame,
    fmt: str,
    *,
    columns: Sequence[str] | None = None,
    ids: Sequence[str] = (),
    empty: str = "",
) -> None:
    """Print ``table`` as a text table (``columns`` only), CSV or JSON."""
    names = [str(c) for c in table.columns]
    records = table.to_dict("records")
    if fmt == "json":
        # One record per line: valid JSON that stays readable and greppable.
        lines = [
            json.dumps(
                {name: _jsonable(row[name]) for name in names}, ensure_ascii=False
            )
            for row in records
        ]
        click.echo("[\n" + ",\n".join(lines) + "\n]" if lines else "[]")
        return
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names)
        for row in records:
            writer.writerow([_csv_text(row[name]) for name in names])
        click.echo(buffer.getvalue(), nl=False)
        return
    from autopersist._table import render_table

    if not records and empty:
        click.echo(empty)
        return
    shown = [c for c in (columns or names) if c in names]
    id_columns = set(ids)
    rows = [[_table_text(row[c], c, id_columns) for c in shown] for row in records]
    click.echo(render_table(shown, rows))


# -- commands ---------------------------------------------------------------------------


@click.command()
@store_option
@_format_option
@click.pass_context
def runs(ctx: click.Context, store: str | None, fmt: str) -> None:
    """List the runs recorded in the store, oldest first."""
    with _open(ctx, store) as opened:
        table = opened.runs()
    table["argv"] = [
        " ".join(map(str, a)) if isinstance(a, list) else a for a in table["argv"]
    ]
    _emit(
        table,
        fmt,
        columns=[
            "run_id",
            "started",
            "script",
            "argv",
            "status",
            "duration",
            "calls",
            "reused",
            "computed",
            "failed",
        ],
        empty="No runs yet: run a script with 'autopersist run SCRIPT'.",
    )


@click.command()
@store_option
@_format_option
@click.pass_context
def ops(ctx: click.Context, store: str | None, fmt: str) -> None:
    """List the ops: name, module, current version, versions seen, stored calls."""
    with _open(ctx, store) as opened:
        table = opened.ops()
    _emit(
        table,
        fmt,
        columns=["op", "module", "version", "versions", "calls", "current_calls"],
        empty="No ops yet: run a script with a '# persist' line first.",
    )


@click.command()
@store_option
@click.argument("op")
@click.option(
    "--all-versions",
    is_flag=True,
    help="Every stored call, with a 'current' column, not only current ones.",
)
@click.option(
    "--failed", is_flag=True, help="Include calls that raised, with the error."
)
@_format_option
@click.pass_context
def calls(
    ctx: click.Context,
    store: str | None,
    op: str,
    all_versions: bool,
    failed: bool,
    fmt: str,
) -> None:
    """One row per stored call of OP (name or module:name): inputs, output, version,
    run, start time, duration, status. Current versions only unless --all-versions."""
    with _open(ctx, store) as opened:
        table = opened.calls(op, all_versions=all_versions, include_failed=failed)
        name = opened.resolve_op(op)
    _emit(
        table,
        fmt,
        ids=["call_id"],
        empty=f"No {'stored' if all_versions else 'current'} calls of {name}."
        + ("" if all_versions else " Try --all-versions."),
    )


def _expansion_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--back", is_flag=True, help="Add the calls that produced the inputs."
            ),
            click.option(
                "--forward", is_flag=True, help="Add the calls that used the outputs."
            ),
            click.option(
                "--all", "all_", is_flag=True, help="Add everything linked, both ways."
            ),
            click.option(
                "--depth",
                type=click.IntRange(min=0),
                default=None,
                help="Expansion steps (default: until nothing new is found).",
            ),
            click.option(
                "--all-versions",
                is_flag=True,
                help="Start from calls of every version.",
            ),
        ]
    ):
        func = option(func)
    return func


def _build_frame(
    opened: Store,
    op: str,
    *,
    back: bool,
    forward: bool,
    all_: bool,
    depth: int | None,
    all_versions: bool,
) -> ComputationFrame:
    frame = opened.frame(opened.resolve_op(op), all_versions=all_versions)
    if all_:
        return frame.expand_all(depth=depth)
    if back:
        frame = frame.expand_back(depth=depth)
    if forward:
        frame = frame.expand_forward(depth=depth)
    return frame


@click.command()
@store_option
@click.argument("op")
@_expansion_options
@_format_option
@click.pass_context
def frame(
    ctx: click.Context,
    store: str | None,
    op: str,
    back: bool,
    forward: bool,
    all_: bool,
    depth: int | None,
    all_versions: bool,
    fmt: str,
) -> None:
    """A computation frame around OP, printed as its dataframe: one row per trace,
    a column per variable and op (op cells hold call ids)."""
    with _open(ctx, store) as opened:
        built = _build_frame(
            opened,
            op,
            back=back,
            forward=forward,
            all_=all_,
            depth=depth,
            all_versions=all_versions,
        )
        table = built.df()
        op_columns = set(built.ops)
    if fmt == "table":
        click.echo(repr(built))
        click.echo()
    _emit(table, fmt, ids=sorted(op_columns), empty="The frame holds no calls.")


@click.command()
@store_option
@click.argument("op")
@click.option(
    "-o",
    "--output",
    "output",
    metavar="FILE",
    default=None,
    help="FILE.svg/.png/.pdf (needs Graphviz 'dot'), or FILE.dot; default: DOT on stdout.",
)
@_expansion_options
@click.pass_context
def draw(
    ctx: click.Context,
    store: str | None,
    op: str,
    output: str | None,
    back: bool,
    forward: bool,
    all_: bool,
    depth: int | None,
    all_versions: bool,
) -> None:
    """Draw the computation frame around OP. Without --back/--forward the frame
    holds everything linked to OP (as with --all)."""
    with _open(ctx, store) as opened:
        built = _build_frame(
            opened,
            op,
            back=back,
            forward=forward,
            all_=all_ or not (back or forward),
            depth=depth,
            all_versions=all_versions,
        )
        if output is None:
            click.echo(built.to_dot(), nl=False)
            return
        written = built.draw(output)
    if str(written) != output and written.suffix == ".dot":
        click.echo(
            f"Graphviz 'dot' is not installed: wrote DOT text to {written} "
            "(install graphviz to render images)."
        )
    else:
        click.echo(f"Wrote {written}.")


@click.command()
@store_option
@click.argument("op")
@click.option(
    "--version",
    "version",
    metavar="V",
    default=None,
    help="Only calls of this code version (id prefix).",
)
@click.option(
    "--where",
    "where",
    metavar="EXPR",
    default=None,
    help="Only calls where EXPR holds, e.g. 'k < 3' (input and output names).",
)
@click.option(
    "--dependents",
    is_flag=True,
    help="Also every call computed from those (recursively).",
)
@click.option(
    "--dry-run", is_flag=True, help="Show what would be forgotten; delete nothing."
)
@click.pass_context
def forget(
    ctx: click.Context,
    store: str | None,
    op: str,
    version: str | None,
    where: str | None,
    dependents: bool,
    dry_run: bool,
) -> None:
    """Delete stored calls of OP (all versions unless --version); the next run
    computes them again. Their values stay until 'autopersist gc'."""
    with _open(ctx, store) as opened:
        name = opened.resolve_op(op)
        table = opened.forget(
            op, version=version, where=where, dependents=dependents, dry_run=dry_run
        )
    if table.empty:
        click.echo(f"No stored calls of {name} matched; nothing to forget.")
        return
    parts = []
    for (op_name, dependent), count in (
        table.groupby(["op", "dependent"], sort=False).size().items()
    ):
        parts.append(f"{count} of {op_name}{' (dependents)' if dependent else ''}")
    verb = "Would forget" if dry_run else "Forgot"
    total = len(table)
    click.echo(f"{verb} {total} call{'s' if total != 1 else ''}: {', '.join(parts)}.")


@click.command()
@store_option
@click.option(
    "--vacuum", is_flag=True, help="Then rebuild the database file so it shrinks."
)
@click.pass_context
def gc(ctx: click.Context, store: str | None, vacuum: bool) -> None:
    """Delete stored values that no call refers to; report the bytes freed."""
    with _open(ctx, store) as opened:
        result = opened.gc(vacuum=vacuum)
    files = f", {result.blob_files} blob file{'s' if result.blob_files != 1 else ''}"
    click.echo(
        f"Deleted {result.values} value{'s' if result.values != 1 else ''}{files}: "
        f"{_size(result.bytes_freed)} freed."
    )


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    size = float(count)
    unit = "bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):  # noqa: B007 - the unit reached is used
        size /= 1024
        if size < 1024:
            break
    return f"{size:.1f} {unit} ({count} bytes)"


#: Commands this module adds to the ``autopersist`` group.
COMMANDS: list[click.Command] = [runs, ops, calls, frame, draw, forget, gc]
