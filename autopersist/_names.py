"""Names shared by the rewriter, the import hook and the runtime.

Defined once here so that the code the rewriter emits and the objects the loader
injects can never drift apart.
"""

from __future__ import annotations

import re

#: The marker line: exactly ``# persist`` at column 0 (trailing spaces allowed), or
#: ``# persist:`` followed by options. Applied per line; whether the line is inside a
#: string literal is decided by the tokenizer in ``_transform._marker``.
MARKER_RE = re.compile(rb"^# persist(?::[^\r\n]*)?[ \t]*\r?$", re.MULTILINE)

#: Cheap byte-level pre-check before the regex and the tokenizer.
MARKER_BYTES = b"# persist"

#: The runtime object bound in every instrumented module.
RUNTIME_NAME = "__autopersist__"

#: Bound in every instrumented module: the function each project function calls
#: first with its key (``prefix:index``, its row in the module's entry table),
#: only while that index's flag in ``UNSEEN_NAME`` is true (``Runtime.bind_marks``).
MARK_NAME = "__autopersist_mark__"

#: Bound in every instrumented module: a list of one flag per entry, true while the
#: function has not reported that it ran since the current op call began. Every
#: function starts with ``__autopersist_unseen__[i] and __autopersist_mark__(key)``:
#: after its first report a call pays for one list read (~5 ns) instead of a call.
UNSEEN_NAME = "__autopersist_unseen__"

#: Environment variables.
ENV_ACTIVATE = "AUTOPERSIST"  # "1": the startup hook installs the import hook
ENV_STORE = "AUTOPERSIST_STORE"
ENV_DEBUG = "AUTOPERSIST_DEBUG"
ENV_DISABLE = "AUTOPERSIST_DISABLE"
ENV_ROOT = "AUTOPERSIST_ROOT"  # project root, passed on to child processes
ENV_RUN_ID = "AUTOPERSIST_RUN_ID"  # the run a child process belongs to
ENV_QUIET = "AUTOPERSIST_QUIET"

#: Default store directory name (relative to the working directory).
DEFAULT_STORE_DIR = ".autopersist"
