"""The ``autopersist`` command line (also ``python -m autopersist``).

Library errors (``AutopersistError``) become one line on stderr and exit status 1;
usage errors exit with 2 (click). With ``AUTOPERSIST_DEBUG=1`` the full traceback
is shown as well.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from autopersist._cli_common import chosen_store, store_option
from autopersist._config import load_config
from autopersist._names import ENV_DEBUG
from autopersist.errors import AutopersistError


class _Group(click.Group):
    """Turns ``AutopersistError`` into a one-line message and exit status 1, and an
    unexpected exception (a bug) into one line asking for a report.

    The query and version commands are added on first need: ``run`` (the
    command whose start-up time matters) never imports their modules.
    """

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and _register_commands():
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        _register_commands()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AutopersistError as exc:
            if os.environ.get(ENV_DEBUG):
                raise
            raise click.ClickException(str(exc)) from exc
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (``autopersist frame f | head``): not an error.
            # Point stdout at /dev/null so the interpreter's final flush is quiet.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise click.exceptions.Exit(0) from None
        except Exception as exc:
            if os.environ.get(ENV_DEBUG):
                raise
            msg = (
                f"internal error ({type(exc).__name__}: {exc}); this is a bug in "
                "autopersist: please report it with the output of the same command "
                "run with AUTOPERSIST_DEBUG=1."
            )
            raise click.ClickException(msg) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@store_option
@click.version_option(package_name="autopersist")
@click.pass_context
def main(ctx: click.Context, store: str | None) -> None:
    """Plain Python scripts whose function calls save, reuse, version and query
    themselves. Mark a module with a '# persist' line and run it with
    'autopersist run'."""
    ctx.obj = {"store": store}


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@store_option
@click.option(
    "-m", "module", metavar="MODULE", default=None, help="Run a module as __main__."
)
@click.option("-q", "--quiet", is_flag=True, help="No summary line at the end.")
@click.option(
    "--no-new-calls",
    is_flag=True,
    help="Fail instead of computing any call that is not stored.",
)
@click.option(
    "--interactive",
    is_flag=True,
    help="Ask, for each changed function that stored calls depend on, whether the "
    "change needs recomputation (y/n/abort), showing the diff.",
)
@click.argument("target", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(
    ctx: click.Context,
    store: str | None,
    module: str | None,
    quiet: bool,
    no_new_calls: bool,
    interactive: bool,
    target: str | None,
    args: tuple[str, ...],
) -> None:
    """Run SCRIPT (or -m MODULE) with memoization; ARGS go to the script."""
    from autopersist._launch import run as run_target

    if module is None and target is None:
        raise click.UsageError("give a script to run, or -m MODULE.")
    if module is None and target is not None and target.startswith("-"):
        # Unknown options after the script go to the script; before it, they are
        # a mistake (a path starting with '-' can be written './-name.py').
        raise click.NoSuchOption(target, ctx=ctx)
    script_args = list(args)
    if module is not None and target is not None:
        script_args.insert(0, target)
    config = load_config(
        chosen_store(ctx, store), no_new_calls=no_new_calls, interactive=interactive
    )
    if config.quiet:
        quiet = True
    result = run_target(
        config,
        module if module is not None else str(target),
        script_args,
        as_module=module is not None,
    )
    sys.stdout.flush()
    if not quiet and not result.disabled and not result.forked:
        click.echo(result.summary(), err=True)
    ctx.exit(result.status)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def rewrite(file: str) -> None:
    """Print the instrumented source of FILE (for debugging)."""
    from autopersist._transform import has_marker, rewrite_source

    with open(file, "rb") as handle:
        data = handle.read()
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{file} is not UTF-8 text; save it as UTF-8."
        ) from exc
    rewritten = rewrite_source(
        source, path=os.path.abspath(file), make_ops=has_marker(data)
    )
    click.echo(rewritten.text, nl=False)
    for entry in rewritten.entries:
        if entry.kind == "function":
            what = "op" if entry.is_op else f"not an op: {entry.not_op_reason}"
            click.echo(f"# {entry.qualname}: {what}", err=True)


_registered = False


def _register_commands() -> bool:
    """Add the query and version commands; False when they already were."""
    global _registered
    if _registered:
        return False
    _registered = True
    from autopersist._cli_query import COMMANDS as QUERY_COMMANDS
    from autopersist._cli_versions import COMMANDS as VERSION_COMMANDS

    for command in (*QUERY_COMMANDS, *VERSION_COMMANDS):
        main.add_command(command)
    return True
