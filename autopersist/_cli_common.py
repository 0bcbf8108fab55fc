"""What every command module of the CLI shares: the ``--store`` option and how a
command finds the store directory. The CLI is split by topic (``cli`` for the
group, ``run`` and ``rewrite``; ``_cli_query`` for queries; ``_cli_versions`` for
versions and invalidation); click is imported only by these modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from autopersist._config import store_dir_from

F = TypeVar("F", bound=Callable[..., Any])


def store_option(func: F) -> F:
    """``--store DIR``, accepted by the group and by every command."""
    return click.option(
        "--store",
        "store",
        metavar="DIR",
        default=None,
        help="Store directory (default: ./.autopersist or $AUTOPERSIST_STORE).",
    )(func)


def chosen_store(ctx: click.Context, store: str | None) -> str | None:
    """The ``--store`` given to the command, else the one given to the group."""
    if store:
        return store
    root = ctx.find_root()
    return (root.obj or {}).get("store")


def store_dir(ctx: click.Context, store: str | None) -> Path:
    """The store directory a command works on (absolute)."""
    return store_dir_from(chosen_store(ctx, store))
