"""Imported at interpreter start-up when ``AUTOPERSIST=1`` (by
``autopersist-startup.pth`` in site-packages, or by ``hooks/child-startup``'s
``sitecustomize`` for a source checkout): turns the import hook on in any Python
process (child processes of ``autopersist run``, pytest, notebook kernels), unless
``AUTOPERSIST_DISABLE=1``.

The main script of ``python main.py`` is compiled by the interpreter, not imported,
so the import hook never sees it. When it is a marked project file, an audit hook
waits for the interpreter's ``cpython.run_file`` event and runs the script
instrumented instead (``_launch.run_main_in_place``), then ends the interpreter with
the script's exit status (``SystemExit`` raised from that event is handled by the
interpreter as the program's exit).

A failure here must never stop the interpreter from starting: it is reported in
one line on stderr and the process runs as plain Python.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from autopersist._names import ENV_DEBUG, ENV_DISABLE


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _start() -> None:
    if _flag(ENV_DISABLE):
        return
    try:
        from autopersist._importhook import install

        install(script=" ".join(sys.argv) if getattr(sys, "argv", None) else "")
        _watch_for_marked_main()
    except Exception as exc:
        if _flag(ENV_DEBUG):
            raise
        sys.stderr.write(f"autopersist: import hook not installed: {exc}\n")


def _watch_for_marked_main() -> None:
    """Run ``python main.py``'s marked project script instrumented."""
    argv0 = sys.argv[0] if getattr(sys, "argv", None) else ""
    if not argv0.endswith(".py") or not os.path.isfile(argv0):
        return  # python -c, -m, a REPL, a multiprocessing child
    from autopersist._importhook import current_session
    from autopersist._transform import has_marker

    path = os.path.abspath(argv0)
    session = current_session()
    if session is None or not session.is_project_file(path):
        return
    with open(path, "rb") as handle:
        if not has_marker(handle.read()):
            return
    fired = False

    def on_audit(event: str, args: tuple[Any, ...]) -> None:
        nonlocal fired
        if event != "cpython.run_file" or fired:
            return  # the cost for every other audited event: one comparison
        fired = True
        if os.path.abspath(args[0]) == path:
            from autopersist._launch import run_main_in_place

            raise SystemExit(run_main_in_place(path))

    sys.addaudithook(on_audit)


_start()
