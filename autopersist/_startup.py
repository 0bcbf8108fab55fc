"""Imported at interpreter start-up by ``autopersist-startup.pth`` when
``AUTOPERSIST=1``: turns the import hook on in any Python process (child processes
of ``autopersist run``, pytest, notebook kernels), unless ``AUTOPERSIST_DISABLE=1``.

A failure here must never stop the interpreter from starting: it is reported in
one line on stderr and the process runs as plain Python.
"""

from __future__ import annotations

import os
import sys

from autopersist._names import ENV_DEBUG, ENV_DISABLE


def _start() -> None:
    if os.environ.get(ENV_DISABLE, "").strip() in ("1", "true", "yes"):
        return
    try:
        from autopersist._importhook import install

        install(script=" ".join(sys.argv) if getattr(sys, "argv", None) else "")
    except Exception as exc:
        if os.environ.get(ENV_DEBUG):
            raise
        sys.stderr.write(f"autopersist: import hook not installed: {exc}\n")


_start()
