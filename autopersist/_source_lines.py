"""Source lines numbered as Python numbers them (no libcst, no ast: cheap to import)."""

from __future__ import annotations

import re

#: Python ends lines at \r\n, \r and \n only; ``str.splitlines`` also splits at form
#: feeds and Unicode separators, which would shift every later line number.
_NEWLINE = re.compile(r"\r\n|\r|\n")


def python_lines(text: str) -> list[str]:
    """The lines of ``text`` as Python's tokenizer counts them."""
    lines = _NEWLINE.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines
