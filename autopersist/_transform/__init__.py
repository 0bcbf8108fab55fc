"""Everything that needs libcst: marker check, analysis, rewrite, code versions.

``has_marker`` is the cheap gate and imports no libcst; ``rewrite_source``,
``instrumented_code`` (what the import hook compiles) and ``versions_of_module``
import libcst on first use, so a run whose modules are all served from the
bytecode cache never loads it.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import CodeType
from typing import TYPE_CHECKING

from autopersist._transform._marker import has_marker, parse_directive
from autopersist.errors import TransformError

if TYPE_CHECKING:
    import libcst as cst

    from autopersist._transform._analysis import Entry

__all__ = [
    "Definition",
    "Rewritten",
    "compile_rewritten",
    "definitions_of_module",
    "has_marker",
    "instrumented_code",
    "parse_directive",
    "rewrite_source",
    "source_syntax_error",
    "syntax_error",
    "versions_of_module",
]


@dataclass(frozen=True)
class Rewritten:
    """The instrumented text of a module and the entries found in it."""

    text: str
    entries: tuple[Entry, ...]
    prefix: str


#: libcst walks its trees recursively: a few hundred implicitly concatenated strings
#: or a long ``a + b + ...`` chain need more than Python's default 1000 frames.
RECURSION_LIMIT = 20_000


@contextlib.contextmanager
def _recursion_room(path: str) -> Iterator[None]:
    """Room for libcst's recursion; a tree deeper still is a ``TransformError``.

    The cyclic garbage collector is paused meanwhile: a syntax tree is hundreds of
    thousands of objects, which every collection of the oldest generation would
    walk again (a third of the time of a rewrite). Whatever cycles the rewrite
    leaves are collected after.
    """
    old = sys.getrecursionlimit()
    if old < RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)
    collecting = gc.isenabled()
    if collecting:
        gc.disable()
    try:
        yield
    except RecursionError as exc:
        msg = (
            f"{path}: autopersist cannot rewrite this module: its syntax is nested too "
            "deeply for the rewriter; run it with AUTOPERSIST_DISABLE=1 or remove the "
            "'# persist' marker, and report the module."
        )
        raise TransformError(msg) from exc
    finally:
        if collecting:
            gc.enable()
        if old < RECURSION_LIMIT and sys.getrecursionlimit() == RECURSION_LIMIT:
            sys.setrecursionlimit(old)


def module_prefix(source: str, path: str) -> str:
    """Makes runtime keys unique per module within a process, and deterministic, so
    that the rewritten bytecode can be cached."""
    return hashlib.sha256(f"{path}\0{source}".encode()).hexdigest()[:10]


def _parsed(source: str, path: str) -> ast.Module:
    """The ``ast`` of ``source`` (its line numbers serve the analysis).

    :raises TransformError: a syntax error, named as Python names it.
    """
    try:
        tree = compile(source, path, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as exc:
        raise syntax_error(path, exc) from None
    assert isinstance(tree, ast.Module)
    return tree


def syntax_error(path: str, exc: SyntaxError) -> TransformError:
    """The user's syntax error in a module being instrumented, as one sentence."""
    where = f"{path}:{exc.lineno or 0}:{exc.offset or 0}"
    return TransformError(
        f"{where}: syntax error in a module autopersist instruments: {exc.msg}. "
        "Fix the line, or remove the '# persist' marker to run it as plain Python."
    )


def source_syntax_error(source: str, path: str) -> TransformError | None:
    """The syntax error compiling ``source`` itself raises, if any: errors only the
    compiler finds (a misplaced or unknown ``from __future__`` import, ``return``
    outside a function, ...) are the user's, not the rewrite's."""
    try:
        compile(source, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return syntax_error(path, exc)
    return None


def rewrite_source(
    source: str, *, path: str = "<string>", make_ops: bool = True
) -> Rewritten:
    """Instrument ``source``: ops when ``make_ops`` (marked modules), tracking always.

    Rewriting already-rewritten text returns it unchanged.

    :raises TransformError: the source has a syntax error or cannot be instrumented.
    """
    from autopersist._transform._instrument import instrument_module

    with _recursion_room(path):
        found = _analysed(source, path, make_ops)
        if found is None:
            return Rewritten(source, (), module_prefix(source, path))
        instrumented = instrument_module(
            found.module,
            {e.node: e for e in found.entries},
            found.prefix,
            found.register_cst(),
        )
        return Rewritten(instrumented.code, tuple(found.entries), found.prefix)


def instrumented_code(
    source: str, *, path: str = "<string>", make_ops: bool = True
) -> CodeType:
    """``compile_rewritten(rewrite_source(source, ...).text, path)``, the same code
    object, built without the text: the inserted statements go straight into the
    ``ast`` of ``source`` with the positions ``compile_rewritten`` gives them, which
    saves printing, parsing and renumbering the whole module. A module without
    functions or classes (a script of top-level code) needs no libcst at all.

    :raises TransformError: as ``rewrite_source``.
    """
    from autopersist._transform._compile import (
        ast_definitions,
        compile_instrumented,
        is_rewritten_tree,
    )
    from autopersist._transform._inserted import register_text

    with _recursion_room(path):
        tree = _parsed(source, path)
        if is_rewritten_tree(tree):
            return compile_rewritten(source, path)
        if ast_definitions(tree):
            found = _analysed(source, path, make_ops, tree)
            if found is None:  # libcst sees the register call the ast did not
                return compile_rewritten(source, path)
            prefix, entries = found.prefix, found.entries
            register = found.register_text()
        else:
            prefix, entries = module_prefix(source, path), []
            register = register_text(prefix, [], [], [])
        code = compile_instrumented(tree, path, prefix, entries, register)
        if code is not None:
            return code
        text = rewrite_source(source, path=path, make_ops=make_ops).text
        return compile_rewritten(text, path)


class _Analysed:
    """A module parsed and analysed, ready to be instrumented. (A plain class:
    this package is imported at every start-up, a dataclass costs more.)"""

    def __init__(
        self,
        prefix: str,
        tree: ast.Module,
        module: cst.Module,
        entries: list[Entry],
        versions: list[str],
        call_versions: list[str],
    ) -> None:
        self.prefix = prefix
        self.tree = tree
        self.module = module
        self.entries = entries
        self.versions = versions
        self.call_versions = call_versions

    def register_text(self) -> str:
        from autopersist._transform._inserted import register_text

        return register_text(
            self.prefix, self.entries, self.versions, self.call_versions
        )

    def register_cst(self) -> cst.Expr:
        import libcst

        return libcst.Expr(libcst.parse_expression(self.register_text()))


def _analysed(
    source: str, path: str, make_ops: bool, tree: ast.Module | None = None
) -> _Analysed | None:
    """Parse and analyse ``source``; None when it is already rewritten.

    :param tree: the ``ast`` of ``source``, if at hand.
    """
    import libcst

    from autopersist._transform._analysis import gather_entries
    from autopersist._transform._instrument import is_rewritten
    from autopersist._transform._normalize import call_version_of, versions_of_parsed

    prefix = module_prefix(source, path)
    if tree is None:
        tree = _parsed(source, path)
    try:
        module = libcst.parse_module(source)
    except libcst.ParserSyntaxError as exc:
        msg = (
            f"{path}:{exc.raw_line}:{exc.raw_column}: autopersist cannot parse this "
            f"module ({exc.message}); run it with AUTOPERSIST_DISABLE=1 or remove the "
            "'# persist' marker, and report the line."
        )
        raise TransformError(msg) from exc
    if is_rewritten(module):
        return None
    entries = gather_entries(module, tree, source)
    for entry in entries:
        unknown = entry.options.get("unknown")
        if isinstance(unknown, tuple) and unknown:
            msg = (
                f"{path}:{entry.first_line}: unknown autopersist option(s) "
                f"{', '.join(map(repr, unknown))} on def {entry.qualname!r}; valid "
                "options are skip, always and ignore=a,b."
            )
            raise TransformError(msg)
    if not make_ops:
        for entry in entries:
            entry.is_op = False
            entry.not_op_reason = "module has no '# persist' marker"
    by_node = versions_of_parsed(module)
    versions = [by_node[e.node] for e in entries]
    call_versions = [
        call_version_of(e.node)
        if e.is_op and isinstance(e.node, libcst.FunctionDef)
        else version
        for e, version in zip(entries, versions, strict=True)
    ]
    return _Analysed(prefix, tree, module, entries, versions, call_versions)


def compile_rewritten(text: str, filename: str) -> CodeType:
    """Compile rewritten text keeping the original line numbers."""
    from autopersist._transform._compile import compile_rewritten as _compile

    with _recursion_room(filename):  # compiling a syntax tree object recurses too
        return _compile(text, filename)


@dataclass(frozen=True)
class Definition:
    """A function, method or class as its source on disk defines it now."""

    qualname: str
    version: str
    #: The version without parameter defaults (what an op's own calls record).
    call_version: str
    source: str


def definitions_of_module(source: str) -> dict[str, Definition]:
    """``{qualname: Definition}`` for what ``source`` defines (no code is run).

    :raises TransformError: the source cannot be parsed.
    """
    with _recursion_room("<source>"):
        return _definitions_of_module(source)


def _definitions_of_module(source: str) -> dict[str, Definition]:
    import libcst as cst

    from autopersist._transform._normalize import (
        call_version_of,
        iter_versions_of_parsed,
        source_of_node,
    )

    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        msg = f"line {exc.raw_line}: cannot parse ({exc.message})"
        raise TransformError(msg) from exc
    found: dict[str, Definition] = {}
    for qualname, node, version in iter_versions_of_parsed(module):
        call_version = (
            call_version_of(node) if isinstance(node, cst.FunctionDef) else version
        )
        found[qualname] = Definition(
            qualname, version, call_version, source_of_node(module, node)
        )
    return found


def versions_of_module(source: str) -> dict[str, str]:
    """``{qualname: version}`` for the functions, classes and methods of ``source``."""
    from autopersist._transform._normalize import versions_of_module as _versions

    with _recursion_room("<source>"):
        return _versions(source)
