"""CLI commands: versions (registered on the group by ``cli``)."""

from __future__ import annotations

import click

#: Commands this module adds to the ``autopersist`` group.
COMMANDS: list[click.Command] = []
