"""Compile rewritten source so that every original line keeps its number.

The rewriter inserts code in two ways. Usually as whole lines, each ending with
``INSERTED_COMMENT``; and, where a line of its own would change the meaning, into an
existing line (``def f(): <mark>; return 1``, or after a docstring that shares its
line with code). Before compiling, the positions in the syntax tree
are mapped back to the original source:

* inserted lines are taken out of the numbering, so every original line gets its
  original number;
* on a line that received inserted code, the columns of the code after it move back
  by its width, so tracebacks show the user's carets where the user's code is;
* inserted code takes the position of the statement it precedes (a mark: the first
  statement of the body; an op decorator: the ``def``; the register call: the first
  statement after the module header), so it never adds a line of its own to the
  line table that tracers, debuggers and coverage see;
* a mark that ends a body (a function whose body is only its docstring) takes the
  position of the ``def`` line, where Python puts that function's implicit
  ``return None``, and the end positions of the function and of the blocks around it
  are those of the docstring again.

Which lines count as lines is Python's rule (``\\n``, ``\\r\\n``, ``\\r``), not
``str.splitlines``, which would also split at form feeds and Unicode separators.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from types import CodeType
from typing import TYPE_CHECKING

from autopersist._names import MARK_NAME, RUNTIME_NAME, UNSEEN_NAME
from autopersist._transform._inserted import INSERTED_COMMENT, op_decorator_text

if TYPE_CHECKING:
    from autopersist._transform._analysis import Entry

_NEWLINE = re.compile(r"\r\n|\r|\n")

#: A (line, column) position, as in ``ast`` nodes (1-based line, UTF-8 byte column).
Position = tuple[int, int]


def python_lines(text: str) -> list[str]:
    """The lines of ``text`` as Python's tokenizer counts them."""
    lines = _NEWLINE.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def compile_rewritten(text: str, filename: str) -> CodeType:
    """Compile rewritten source with the line numbers of the original source."""
    return compile(rewritten_tree(text, filename), filename, "exec", dont_inherit=True)


def _is_register(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and isinstance(node.value.func.value, ast.Name)
        and node.value.func.value.id == RUNTIME_NAME
        and node.value.func.attr == "register"
    )


def _is_mark(node: ast.AST) -> bool:
    """``__autopersist_unseen__[i] and __autopersist_mark__("prefix:i")``."""
    if not (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.BoolOp)
        and isinstance(node.value.op, ast.And)
        and len(node.value.values) == 2
    ):
        return False
    flag, call = node.value.values
    return (
        isinstance(flag, ast.Subscript)
        and isinstance(flag.value, ast.Name)
        and flag.value.id == UNSEEN_NAME
        and isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id == MARK_NAME
    )


def _mark(prefix: str, index: int) -> ast.Expr:
    """The mark ``_instrument`` writes: ``__autopersist_unseen__[index] and
    __autopersist_mark__("prefix:index")``."""
    return ast.Expr(
        ast.BoolOp(
            ast.And(),
            [
                ast.Subscript(
                    ast.Name(UNSEEN_NAME, ast.Load()), ast.Constant(index), ast.Load()
                ),
                ast.Call(
                    ast.Name(MARK_NAME, ast.Load()),
                    [ast.Constant(f"{prefix}:{index}")],
                    [],
                ),
            ],
        )
    )


def _is_op_decorator(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == RUNTIME_NAME
        and node.func.attr == "op"
    )


class _Plan:
    """What to change in the tree, in the coordinates of the rewritten text."""

    def __init__(self) -> None:
        #: Rewritten line numbers of whole inserted lines.
        self.inserted_lines: set[int] = set()
        #: line -> (first column after the inserted code, width of the inserted code)
        self.shifts: dict[int, tuple[int, int]] = {}
        #: end position of a trailing mark -> end position of the code before it
        self.ends: dict[Position, Position] = {}
        #: id of an inserted node -> the position it takes (zero width)
        self.places: dict[int, Position] = {}


def _place(plan: _Plan, node: ast.AST, at: Position) -> None:
    for sub in _nodes(node):
        plan.places[id(sub)] = at


#: Fields that never hold positioned nodes (contexts and operators).
_NO_POSITIONS = frozenset({"ctx", "op", "ops"})
_fields_cache: dict[type[ast.AST], tuple[str, ...]] = {}


def _nodes(root: ast.AST) -> list[ast.AST]:
    """``root`` and every node under it that can have a position (``ast.walk``
    without the shared context and operator nodes, and faster)."""
    found = [root]
    fields_cache = _fields_cache
    at = 0
    while at < len(found):
        node = found[at]
        at += 1
        cls = type(node)
        fields = fields_cache.get(cls)
        if fields is None:
            fields = fields_cache[cls] = tuple(
                f for f in cls._fields if f not in _NO_POSITIONS
            )
        for name in fields:
            value = getattr(node, name, None)
            if isinstance(value, list):
                found.extend(item for item in value if isinstance(item, ast.AST))
            elif isinstance(value, ast.AST):
                found.append(value)
    return found


def _functions(body: list[ast.stmt]) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function of a module, nested ones included (functions are statements:
    only statement lists are looked into)."""
    found: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
    pending = [body]
    while pending:
        for statement in pending.pop():
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append(statement)
            for name in ("body", "orelse", "finalbody"):
                inner = getattr(statement, name, None)
                if isinstance(inner, list):
                    pending.append(inner)
            for clause in (
                *getattr(statement, "handlers", ()),
                *getattr(statement, "cases", ()),
            ):
                pending.append(clause.body)
    return found


def _plan(tree: ast.Module, lines: list[str]) -> _Plan:
    plan = _Plan()

    def own_line(node: ast.AST) -> bool:
        number = getattr(node, "lineno", 0)
        return (
            0 < number <= len(lines)
            and lines[number - 1].rstrip().endswith(INSERTED_COMMENT)
            and getattr(node, "end_lineno", None) == number
        )

    def statement(body: list[ast.stmt], index: int, fallback: Position) -> None:
        node = body[index]
        following = body[index + 1] if index + 1 < len(body) else None
        if own_line(node):
            plan.inserted_lines.add(node.lineno)
        elif following is not None and following.lineno == node.end_lineno:
            # inserted into a line: the code after it moves back by its width
            width = following.col_offset - node.col_offset
            plan.shifts[node.lineno] = (following.col_offset, width)
            _place(plan, node, (node.lineno, node.col_offset))
            return
        if following is not None:
            _place(plan, node, (following.lineno, following.col_offset))
            return
        # the last statement of its body: the end positions of the blocks around it
        # are those of the statement before it
        if index > 0:
            before = body[index - 1]
            end = (before.end_lineno or before.lineno, before.end_col_offset or 0)
            plan.ends[(node.end_lineno or node.lineno, node.end_col_offset or 0)] = end
        _place(plan, node, fallback)

    for index, node in enumerate(tree.body):
        if _is_register(node):
            before = tree.body[index - 1] if index else None
            fallback = (before.lineno, before.col_offset) if before else (1, 0)
            statement(tree.body, index, fallback)
            break
    for func in _functions(tree.body):
        for index, node in enumerate(func.body[:3]):
            if _is_mark(node):
                statement(func.body, index, (func.lineno, func.col_offset))
                break
        for decorator in func.decorator_list:
            if _is_op_decorator(decorator):
                if own_line(decorator):
                    plan.inserted_lines.add(decorator.lineno)
                _place(plan, decorator, (func.lineno, func.col_offset))
    return plan


def _line_map(plan: _Plan, count: int) -> list[int]:
    """``result[n]``: the original number of rewritten line ``n`` (1-based); an
    inserted line gets the number of the original line after it."""
    mapping = [0] * (count + 2)
    removed = 0
    for number in range(1, count + 2):
        if number in plan.inserted_lines:
            removed += 1
            mapping[number] = number - removed + 1
        else:
            mapping[number] = number - removed
    return mapping


def rewritten_tree(text: str, filename: str) -> ast.Module:
    """The syntax tree of rewritten source, with the positions of the original."""
    tree = ast.parse(text, filename=filename)
    lines = python_lines(text)
    plan = _plan(tree, lines)
    mapping = _line_map(plan, len(lines))
    last = len(mapping) - 1
    shifts, ends, places = plan.shifts, plan.ends, plan.places
    for node in _nodes(tree):
        lineno = getattr(node, "lineno", None)
        if lineno is None:
            continue
        end_lineno = getattr(node, "end_lineno", None)
        col = getattr(node, "col_offset", None)
        end_col = getattr(node, "end_col_offset", None)
        place = places.get(id(node))
        if place is not None:
            lineno, col = place
            end_lineno, end_col = place
        else:
            shift = shifts.get(lineno)
            if shift is not None and col is not None and col >= shift[0]:
                col -= shift[1]
            if end_lineno is not None and end_col is not None:
                replaced = ends.get((end_lineno, end_col))
                if replaced is not None:
                    end_lineno, end_col = replaced
                shift = shifts.get(end_lineno)
                if shift is not None and end_col > shift[0] - shift[1]:
                    end_col -= shift[1]
        node.lineno = mapping[min(lineno, last)]  # type: ignore[attr-defined]
        if col is not None:
            node.col_offset = col  # type: ignore[attr-defined]
        if end_lineno is not None:
            node.end_lineno = mapping[min(end_lineno, last)]  # type: ignore[attr-defined]
        if end_col is not None:
            node.end_col_offset = end_col  # type: ignore[attr-defined]
    return tree


# --- the same code, straight from the original syntax tree ------------------------------


def compile_instrumented(
    tree: ast.Module,
    filename: str,
    prefix: str,
    entries: Sequence[Entry],
    register: str,
) -> CodeType | None:
    """The code ``compile_rewritten`` makes of the rewritten text, made by putting
    the inserted statements into ``tree`` (the original module's, changed in place)
    with the positions ``rewritten_tree`` gives them: an inserted statement takes
    the position of the statement after it in its body; a mark with nothing after
    it (a body that is only a docstring), and an op decorator, that of the ``def``;
    a register call with nothing after it, that of the statement before it.

    :param register: the source of the register call.
    :returns: None when ``entries`` are not the definitions of ``tree``.
    """
    definitions = ast_definitions(tree)
    if len(definitions) != len(entries):
        return None
    for entry, definition in zip(entries, definitions, strict=True):
        if entry.kind == "class":
            continue
        if not isinstance(definition, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return None
        at_def = (definition.lineno, definition.col_offset)
        body = definition.body
        at = 1 if _is_docstring(body[0]) else 0
        mark = _mark(prefix, entry.index)
        _set_place(
            mark, (body[at].lineno, body[at].col_offset) if at < len(body) else at_def
        )
        body.insert(at, mark)
        if entry.is_op:
            decorator = ast.parse(op_decorator_text(entry), mode="eval").body
            _set_place(decorator, at_def)
            definition.decorator_list.append(decorator)
    body = tree.body
    at = 0
    while at < len(body) and (
        (at == 0 and _is_docstring(body[0])) or _is_future_import(body[at])
    ):
        at += 1
    if at < len(body):
        place = (body[at].lineno, body[at].col_offset)
    else:
        place = (body[at - 1].lineno, body[at - 1].col_offset) if at else (1, 0)
    call = ast.parse(register, mode="eval").body
    statement = ast.Expr(call)
    _set_place(statement, place)
    body.insert(at, statement)
    return compile(tree, filename, "exec", dont_inherit=True)


def _set_place(root: ast.AST, at: Position) -> None:
    """Zero width at ``at`` for ``root`` and everything in it."""
    line, column = at
    for node in _nodes(root):
        if "lineno" in node._attributes:
            node.lineno = node.end_lineno = line  # type: ignore[attr-defined]
            node.col_offset = node.end_col_offset = column  # type: ignore[attr-defined]


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _is_future_import(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.ImportFrom)
        and statement.module == "__future__"
        and not statement.level
    )


Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def ast_definitions(tree: ast.Module) -> list[Definition]:
    """The defs and classes not inside a function, in source order: one per entry
    of the module (``_analysis``)."""
    found: list[Definition] = []
    _definitions(tree.body, found)
    return found


def _definitions(body: list[ast.stmt], found: list[Definition]) -> None:
    for statement in body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append(statement)
        elif isinstance(statement, ast.ClassDef):
            found.append(statement)
            _definitions(statement.body, found)
        elif isinstance(statement, ast.Match):
            for case in statement.cases:
                _definitions(case.body, found)
        else:
            _definitions(getattr(statement, "body", []), found)
            for handler in getattr(statement, "handlers", []):
                _definitions(handler.body, found)
            _definitions(getattr(statement, "orelse", []), found)
            _definitions(getattr(statement, "finalbody", []), found)


def is_rewritten_tree(tree: ast.Module) -> bool:
    """Does the module already hold the register call where the rewrite puts it
    (first after the docstring and ``__future__`` imports)? (``_instrument``'s
    ``is_rewritten``, on the ``ast``.)"""
    body = tree.body
    at = 0
    while at < len(body) and (
        (at == 0 and _is_docstring(body[0])) or _is_future_import(body[at])
    ):
        at += 1
    return at < len(body) and _is_register(body[at])
