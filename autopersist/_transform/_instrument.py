"""The rewrite: every tracked function reports that it ran; every op is wrapped.

Three kinds of code are inserted, each on a line of its own that ends with
``INSERTED_COMMENT`` (``_compile`` maps those lines back so that every original line
keeps its number), except where a line of its own would change what the code means;
then the code joins an existing line, after a ``;`` (``_compile`` moves the columns
of what follows back):

* ``def f(x): return x``: the mark joins the one-line body;
* ``"doc"; return x``: a docstring sharing its line with code (a line of its own
  before it would take the docstring's place, one after it would run too late);
* ``"doc"; from __future__ import annotations; import x``: the register call goes
  after the module's header statements, on their line.

The inserted code:

* at the top of the module, after the docstring and ``__future__`` imports, one
  ``__autopersist__.register(prefix, table)`` call carrying the facts of every entry;
* as the first statement of every tracked function and method (after its docstring),
  ``__autopersist_unseen__[index] and __autopersist_mark__("prefix:index")``: the
  mark, which tells the runtime this code ran during the current op call. The
  flag is false once the function has reported since the op call began, so a
  function called in a loop pays for one list read (about 5 ns) instead of a call
  (about 14 ns); an expression, not an ``if``, so that it can join a line after a
  ``;``;
* as the innermost decorator of every op, ``@__autopersist__.op(index, ...)``.

Nothing inside function bodies is changed otherwise, so an instrumented function
runs at nearly the speed of the plain one; global reads are known statically per
function and resolved by the runtime when the call ends.
"""

from __future__ import annotations

import dataclasses

import libcst as cst
from libcst import matchers as m

from autopersist._names import MARK_NAME, RUNTIME_NAME, UNSEEN_NAME
from autopersist._transform._analysis import Entry
from autopersist._transform._inserted import INSERTED_COMMENT, op_decorator_text

__all__ = ["INSERTED_COMMENT", "instrument_module", "is_rewritten"]

_INSERTED_WHITESPACE = cst.TrailingWhitespace(
    whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment(INSERTED_COMMENT)
)


def _is_docstring_expr(node: cst.CSTNode) -> bool:
    """Python's rule: an expression statement that is a plain string literal
    (implicit concatenation and parentheses allowed; bytes and f-strings are not)."""
    if not isinstance(node, cst.Expr):
        return False
    value: cst.BaseExpression = node.value
    pending = [value]
    while pending:
        value = pending.pop()
        if isinstance(value, cst.ConcatenatedString):
            pending += [value.left, value.right]
        elif not isinstance(value, cst.SimpleString) or "b" in value.prefix.lower():
            return False
    return True


def _docstring_line(statement: cst.CSTNode | None) -> cst.SimpleStatementLine | None:
    """The statement, if it is a line whose first small statement is a docstring
    (``"doc"; x = 1`` too)."""
    if (
        isinstance(statement, cst.SimpleStatementLine)
        and statement.body
        and _is_docstring_expr(statement.body[0])
    ):
        return statement
    return None


def _mark(prefix: str, index: int) -> cst.Expr:
    """``__autopersist_unseen__[index] and __autopersist_mark__("prefix:index")``."""
    return cst.Expr(
        cst.BooleanOperation(
            left=cst.Subscript(
                cst.Name(UNSEEN_NAME),
                [cst.SubscriptElement(cst.Index(cst.Integer(str(index))))],
            ),
            operator=cst.And(),
            right=cst.Call(
                func=cst.Name(MARK_NAME),
                args=[cst.Arg(cst.SimpleString(repr(f"{prefix}:{index}")))],
            ),
        )
    )


def _op_decorator(entry: Entry) -> cst.Decorator:
    expression = cst.parse_expression(op_decorator_text(entry))
    return cst.Decorator(decorator=expression, trailing_whitespace=_INSERTED_WHITESPACE)


def instrument_module(
    module: cst.Module,
    entries: dict[cst.CSTNode, Entry],
    prefix: str,
    register: cst.Expr,
) -> cst.Module:
    """Inserts the register call, the mark prologues and the op decorators.

    ``entries`` maps the module's own ``FunctionDef`` nodes to their entries;
    ``prefix`` makes the runtime keys of this module unique within a process. Only
    the statements on the way to an entry are rebuilt; everything else is shared
    with ``module``.
    """
    rebuilt = _rebuild(module, entries, prefix)
    assert isinstance(rebuilt, cst.Module)
    return _with_register(rebuilt, register)


def _rebuild(
    node: cst.CSTNode, entries: dict[cst.CSTNode, Entry], prefix: str
) -> cst.CSTNode:
    """``node`` with its entry functions instrumented. Entries are statements
    outside functions: only statements, suites and clauses are looked into."""
    if isinstance(node, cst.FunctionDef):
        entry = entries.get(node)
        return node if entry is None else _instrument_function(node, entry, prefix)
    changes: dict[str, object] = {}
    for name in _statement_fields(type(node)):
        value = getattr(node, name)
        if isinstance(value, cst.CSTNode):
            new = _rebuild(value, entries, prefix)
            if new is not value:
                changes[name] = new
        elif isinstance(value, (tuple, list)):
            items = [_rebuild(item, entries, prefix) for item in value]
            if any(new is not old for new, old in zip(items, value, strict=True)):
                changes[name] = items
    return node.with_changes(**changes) if changes else node


_statement_field_cache: dict[type[cst.CSTNode], tuple[str, ...]] = {}


def _statement_fields(cls: type[cst.CSTNode]) -> tuple[str, ...]:
    """The fields of ``cls`` that can hold statements, suites or clauses (where a
    definition can be: ``body``, ``orelse``, ``handlers``, ``finalbody``,
    ``cases``)."""
    names = _statement_field_cache.get(cls)
    if names is None:
        if issubclass(cls, (cst.SimpleStatementLine, cst.SimpleStatementSuite)):
            names = ()  # small statements only
        else:
            names = tuple(
                f.name
                for f in dataclasses.fields(cls)
                if f.name in ("body", "orelse", "handlers", "finalbody", "cases")
            )
        _statement_field_cache[cls] = names
    return names


def _instrument_function(
    node: cst.FunctionDef, entry: Entry, prefix: str
) -> cst.FunctionDef:
    mark = _mark(prefix, entry.index)
    body = node.body
    if isinstance(body, cst.IndentedBlock):
        statements = list(body.body)
        line = _docstring_line(statements[0] if statements else None)
        if line is not None and len(line.body) > 1:
            # '"doc"; x = 1': a line of its own would run after "x = 1", so the
            # mark joins the line after the docstring (_compile moves the
            # columns back).
            statements[0] = line.with_changes(body=[line.body[0], mark, *line.body[1:]])
        else:
            at = 1 if line is not None else 0
            statements.insert(
                at,
                cst.SimpleStatementLine(
                    [mark], trailing_whitespace=_INSERTED_WHITESPACE
                ),
            )
        body = body.with_changes(body=statements)
    else:
        # "def f(x): return x": the mark joins the same line, nothing is inserted.
        small = list(body.body)
        at = 1 if small and _is_docstring_expr(small[0]) else 0
        small.insert(at, mark)
        body = body.with_changes(body=small)
    node = node.with_changes(body=body)
    if entry.is_op:
        node = node.with_changes(decorators=[*node.decorators, _op_decorator(entry)])
    return node


def _with_register(module: cst.Module, register: cst.Expr) -> cst.Module:
    """The register call goes first after the docstring and ``__future__``
    imports: on a line of its own, or, when the header shares a line with
    other code (``"doc"; import x``), into that line."""
    statements = list(module.body)
    at = 0
    while at < len(statements):
        statement = statements[at]
        if not isinstance(statement, cst.SimpleStatementLine):
            break
        small = list(statement.body)
        header = 0
        while header < len(small) and (
            (at == 0 and header == 0 and _is_docstring_expr(small[0]))
            or _is_future_import(small[header])
        ):
            header += 1
        if header == len(small):
            at += 1  # the whole line is header: look at the next one
            continue
        if header:
            small.insert(header, register)
            statements[at] = statement.with_changes(body=small)
            return module.with_changes(body=statements)
        break
    statements.insert(
        at,
        cst.SimpleStatementLine([register], trailing_whitespace=_INSERTED_WHITESPACE),
    )
    return module.with_changes(body=statements)


def _is_future_import(statement: cst.BaseSmallStatement) -> bool:
    return (
        isinstance(statement, cst.ImportFrom)
        and isinstance(statement.module, cst.Name)
        and statement.module.value == "__future__"
        and not statement.relative
    )


def is_rewritten(module: cst.Module) -> bool:
    """Does ``module`` already hold the register call where the rewrite puts it
    (first after the docstring and ``__future__`` imports)? Decided on the syntax
    tree: the same text inside a string literal does not count."""
    for index, statement in enumerate(module.body):
        if not isinstance(statement, cst.SimpleStatementLine):
            return False
        for position, small in enumerate(statement.body):
            if (index == 0 and position == 0 and _is_docstring_expr(small)) or (
                _is_future_import(small)
            ):
                continue
            return m.matches(
                small,
                m.Expr(
                    m.Call(func=m.Attribute(m.Name(RUNTIME_NAME), m.Name("register")))
                ),
            )
    return False
