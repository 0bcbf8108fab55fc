"""Is a module marked with ``# persist``? Decided without parsing the module.

The gate is layered from cheap to exact: a byte search, then a line regex
(``_names.MARKER_RE``), then the tokenizer, which is the only way to tell a real
comment from the same text inside a multi-line string literal.
"""

from __future__ import annotations

import io
import re
import tokenize

from autopersist._names import MARKER_BYTES, MARKER_RE

#: A ``# persist: ...`` directive on a ``def`` line: ``skip``, ``always``, ``ignore=a,b``.
DIRECTIVE_RE = re.compile(r"#\s*persist:\s*(?P<options>[^#]*)")


def has_marker(source: bytes) -> bool:
    """True when ``source`` has a ``# persist`` marker line outside any string."""
    if MARKER_BYTES not in source:
        return False
    candidates = {
        source.count(b"\n", 0, match.start()) + 1
        for match in MARKER_RE.finditer(source)
    }
    if not candidates:
        return False
    try:
        for token in tokenize.tokenize(io.BytesIO(source).readline):
            if (
                token.type == tokenize.COMMENT
                and token.start[1] == 0
                and token.start[0] in candidates
            ):
                return True
    except (tokenize.TokenError, SyntaxError, UnicodeDecodeError):
        # A module the tokenizer rejects cannot be run either; trust the regex so
        # that the parse step reports the syntax error with its location.
        return True
    return False


def parse_directive(comment: str) -> dict[str, object]:
    """Options of a ``# persist: ...`` comment on a ``def`` line.

    ``skip`` and ``always`` are flags; ``ignore=a,b`` names parameters.
    Unknown words are returned under ``unknown`` so the caller can report them.
    """
    match = DIRECTIVE_RE.search(comment)
    if match is None:
        return {}
    options: dict[str, object] = {}
    unknown: list[str] = []
    # "ignore=a, b" is one option: glue list items before splitting on spaces.
    text = re.sub(r"\s*([,=])\s*", r"\1", match.group("options").strip())
    for raw in re.split(r"[;\s]+", text):
        word = raw.strip()
        if not word:
            continue
        if word in ("skip", "always"):
            options[word] = True
        elif word.startswith("ignore="):
            names = [n.strip() for n in word[len("ignore=") :].split(",") if n.strip()]
            options["ignore"] = tuple(names)
        else:
            unknown.append(word)
    if unknown:
        options["unknown"] = tuple(unknown)
    return options
