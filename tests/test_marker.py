"""The ``# persist`` marker grammar (PRODUCT.md §2) and def-line directives."""

from __future__ import annotations

import pytest

from autopersist._transform import has_marker, parse_directive


@pytest.mark.parametrize(
    "source",
    [
        "# persist\n",
        "# persist   \n",
        "x = 1\n# persist\n",
        "# persist: always\n",
        "#!/usr/bin/env python\n# persist\nimport os\n",
        "# persist\r\nx = 1\r\n",
    ],
    ids=[
        "plain",
        "trailing-spaces",
        "not-first-line",
        "with-options",
        "after-shebang",
        "crlf",
    ],
)
def test_marker_accepted(source):
    assert has_marker(source.encode())


@pytest.mark.parametrize(
    "source",
    [
        "",
        "# persistence\n",
        "#persist\n",
        "#persist_x\n",
        "  # persist\n",
        "x = 1  # persist\n",
        's = """\n# persist\n"""\n',
        "# persist me\n",
        "# Persist\n",
    ],
    ids=[
        "empty",
        "longer-word",
        "no-space",
        "suffix",
        "indented",
        "trailing-comment",
        "inside-string",
        "extra-words",
        "capitalised",
    ],
)
def test_marker_rejected(source):
    assert not has_marker(source.encode())


@pytest.mark.parametrize(
    ("comment", "options"),
    [
        ("# persist: skip", {"skip": True}),
        ("# persist: always", {"always": True}),
        ("# persist: ignore=a,b", {"ignore": ("a", "b")}),
        ("# persist: ignore = a, b always", {"ignore": ("a", "b"), "always": True}),
        ("# persist: sometimes", {"unknown": ("sometimes",)}),
        ("# just a comment", {}),
    ],
)
def test_directives(comment, options):
    assert parse_directive(comment) == options
