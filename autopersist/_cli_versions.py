"""CLI commands about code versions and invalidation: ``versions``, ``diff``,
``accept``, ``status`` and ``why`` (registered on the group by ``cli``)."""

from __future__ import annotations

import ast
import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from autopersist._cli_common import store_dir, store_option
from autopersist._history import History, describe_change, short, source_diff


@contextmanager
def _history(
    ctx: click.Context, store: str | None, *, write: bool = False
) -> Iterator[History]:
    history = History(store_dir(ctx, store), Path(os.getcwd()), write=write)
    try:
        yield history
    finally:
        history.close()


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


@click.command()
@store_option
@click.argument("func")
@click.pass_context
def versions(ctx: click.Context, store: str | None, func: str) -> None:
    """The code versions of FUNC, with first/last sight and the calls using each."""
    with _history(ctx, store) as history:
        func_id = history.resolve(func)
        rows = history.versions(func_id)
        click.echo(f"{func_id}: {len(rows)} version(s)")
        click.echo(
            f"  {'version':<12}  {'first seen':<19}  {'last seen':<19}  {'calls':>5}"
        )
        for row in rows:
            mark = "  (current)" if row.current else ""
            click.echo(
                f"  {short(row.version_id):<12}  {_when(row.first_seen):<19}  "
                f"{_when(row.last_seen):<19}  {row.calls:>5}{mark}"
            )


@click.command()
@store_option
@click.argument("func")
@click.argument("a", required=False)
@click.argument("b", required=False)
@click.pass_context
def diff(
    ctx: click.Context, store: str | None, func: str, a: str | None, b: str | None
) -> None:
    """Source diff of FUNC from version A to B (default: the two newest; the code
    on disk counts as the newest when it was not run yet)."""
    with _history(ctx, store) as history:
        click.echo(history.diff(history.resolve(func), a, b), nl=False)


@click.command()
@store_option
@click.argument("func")
@click.option(
    "--version", "version", metavar="V", help="The old version (a prefix) to accept."
)
@click.pass_context
def accept(
    ctx: click.Context, store: str | None, func: str, version: str | None
) -> None:
    """Declare the current code of FUNC compatible with its previous version (or V):
    stored calls that used the old version become valid again."""
    with _history(ctx, store, write=True) as history:
        func_id = history.resolve(func)
        old, new, added = history.accept(func_id, version)
        click.echo(
            f"accepted {func_id} {short(new.version_id)} as compatible with "
            f"{short(old.version_id)}"
        )
        if added:
            click.echo(
                "new parameters with defaults: "
                + ", ".join(added)
                + " (calls passing the default reuse the old calls)"
            )


def _imported_modules(script: Path, root: Path) -> set[str]:
    """Project modules ``script`` imports, followed transitively (static scan)."""
    found: set[str] = set()
    queue = [script]
    while queue:
        path = queue.pop()
        try:
            relative = path.resolve().relative_to(root.resolve())
        except ValueError:
            continue
        parts = list(relative.with_suffix("").parts)
        if parts and parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if name in found:
            continue
        found.add(name)
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for dotted in names:
                for base in (script.parent, root):
                    candidate = base.joinpath(*dotted.split("."))
                    for file in (
                        candidate.with_suffix(".py"),
                        candidate / "__init__.py",
                    ):
                        if file.is_file():
                            queue.append(file)
    return found


@click.command()
@store_option
@click.argument("script", required=False, type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def status(ctx: click.Context, store: str | None, script: str | None) -> None:
    """What would recompute now: ops whose stored calls are stale against the code
    on disk, with the changed dependency named. A dry run: computes nothing."""
    root = Path(os.getcwd())
    with _history(ctx, store) as history:
        only = _imported_modules(Path(script), root) if script else None
        reports = history.status(only)
        if not reports:
            click.echo("no ops stored yet")
            return
        for report in reports:
            if report.stale:
                click.echo(
                    f"{report.op_id}: {report.stale} of {report.checked} stored calls stale"
                )
                for reason in report.reasons.values():
                    click.echo(f"  - {reason}")
            else:
                click.echo(
                    f"{report.op_id}: up to date ({report.checked} stored calls)"
                )
            if report.unknown:
                names = ", ".join(n[2:] for n in report.unknown)
                click.echo(
                    f"  (also depends on {names}: known only when the script runs)"
                )


@click.command()
@store_option
@click.argument("op")
@click.option(
    "--run", "run", metavar="RUN", help="A run id (prefix); default: the op's latest."
)
@click.pass_context
def why(ctx: click.Context, store: str | None, op: str, run: str | None) -> None:
    """For calls of OP computed in a run: which dependency changed, with its diff."""
    with _history(ctx, store) as history:
        op_id = history.resolve(op, ops_only=True)
        run_id, explanations = history.why(op_id, run)
        if run_id is None or not explanations:
            click.echo(
                f"{op_id}: no calls computed in {'run ' + run if run else 'any run'}"
            )
            return
        click.echo(f"{op_id}: {len(explanations)} call(s) computed in run {run_id}")
        shown: set[tuple[str, str | None, str | None]] = set()
        for entry in explanations:
            args = ", ".join(f"{k}={v}" for k, v in sorted(entry["inputs"].items()))
            if entry.get("new_inputs"):
                click.echo(
                    f"- {op_id.split(':', 1)[1]}({args}): new inputs, never computed before"
                )
                continue
            if not entry["changes"]:
                click.echo(
                    f"- {op_id.split(':', 1)[1]}({args}): computed again with unchanged "
                    "dependencies (it was not reusable, e.g. impure)"
                )
                continue
            click.echo(f"- {op_id.split(':', 1)[1]}({args}):")
            for name, before, after in entry["changes"]:
                if before is None:
                    click.echo(f"    new dependency {name[2:]}")
                    continue
                click.echo(f"    {describe_change(name, before, after)}")
                key = (name, before, after)
                if name.startswith("f:") and after is not None and key not in shown:
                    shown.add(key)
                    old_src = history.source_of(name[2:], before)
                    new_src = history.source_of(name[2:], after)
                    if old_src is not None and new_src is not None:
                        from autopersist._history import VersionRow

                        text = source_diff(
                            name[2:],
                            VersionRow(before, None, 0.0, None, old_src),
                            VersionRow(after, None, 0.0, None, new_src),
                        )
                        click.echo(
                            "".join(f"      {line}\n" for line in text.splitlines())
                        )


#: Commands this module adds to the ``autopersist`` group.
COMMANDS: list[click.Command] = [versions, diff, accept, status, why]
