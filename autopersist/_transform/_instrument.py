"""The rewrite: every tracked function reports that it ran; every op is wrapped.

Three kinds of code are inserted, each on a line of its own that ends with
``INSERTED_COMMENT`` (``_compile`` maps those lines back so that every original line
keeps its number):

* at the top of the module, after the docstring and ``__future__`` imports, one
  ``__autopersist__.register(prefix, table)`` call carrying the facts of every entry;
* as the first statement of every tracked function and method (after its docstring),
  ``__autopersist_mark__("prefix:index")``: one C-level ``set.add`` that tells the
  runtime this code ran during the current op call (about 10 ns);
* as the innermost decorator of every op, ``@__autopersist__.op(index, ...)``.

Nothing inside function bodies is changed otherwise, so an instrumented function
runs at nearly the speed of the plain one; global reads are known statically per
function and resolved by the runtime when the call ends.
"""

from __future__ import annotations

import libcst as cst

from autopersist._names import MARK_NAME, RUNTIME_NAME
from autopersist._transform._analysis import Entry

#: Ends every inserted line. Unusual on purpose: a user line ending with it would be
#: taken for an inserted line.
INSERTED_COMMENT = "# __autopersist__ inserted"

_INSERTED_WHITESPACE = cst.TrailingWhitespace(
    whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment(INSERTED_COMMENT)
)


def _is_docstring(statement: cst.CSTNode) -> bool:
    if isinstance(statement, cst.SimpleStatementLine):
        if len(statement.body) != 1:
            return False
        statement = statement.body[0]
    return isinstance(statement, cst.Expr) and isinstance(
        statement.value, (cst.SimpleString, cst.ConcatenatedString)
    )


def _mark_call(key: str) -> cst.Expr:
    return cst.Expr(
        cst.Call(func=cst.Name(MARK_NAME), args=[cst.Arg(cst.SimpleString(repr(key)))])
    )


def _op_decorator(entry: Entry) -> cst.Decorator:
    options = ""
    ignore = entry.options.get("ignore")
    if isinstance(ignore, tuple) and ignore:
        options += f", ignore={ignore!r}"
    if entry.options.get("always"):
        options += ", always=True"
    expression = cst.parse_expression(f"{RUNTIME_NAME}.op({entry.index}{options})")
    return cst.Decorator(decorator=expression, trailing_whitespace=_INSERTED_WHITESPACE)


class InstrumentModuleTransformer(cst.CSTTransformer):
    """Inserts the register call, the mark prologues and the op decorators.

    ``entries`` maps original ``FunctionDef`` nodes to their entries; ``prefix`` makes
    the runtime keys of this module unique within a process.
    """

    def __init__(
        self, entries: dict[cst.CSTNode, Entry], prefix: str, register: cst.Expr
    ) -> None:
        super().__init__()
        self._entries = entries
        self._prefix = prefix
        self._register = register

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.FunctionDef:
        entry = self._entries.get(original_node)
        if entry is None:
            return updated_node
        mark = _mark_call(f"{self._prefix}:{entry.index}")
        body = updated_node.body
        if isinstance(body, cst.IndentedBlock):
            statements = list(body.body)
            at = 1 if statements and _is_docstring(statements[0]) else 0
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
            at = 1 if small and _is_docstring(small[0]) else 0
            small.insert(at, mark)
            body = body.with_changes(body=small)
        updated_node = updated_node.with_changes(body=body)
        if entry.is_op:
            updated_node = updated_node.with_changes(
                decorators=[*updated_node.decorators, _op_decorator(entry)]
            )
        return updated_node

    def leave_Module(
        self, original_node: cst.Module, updated_node: cst.Module
    ) -> cst.Module:
        statements = list(updated_node.body)
        at = 0
        if statements and _is_docstring(statements[0]):
            at = 1
        while at < len(statements) and _is_future_import(statements[at]):
            at += 1
        statements.insert(
            at,
            cst.SimpleStatementLine(
                [self._register], trailing_whitespace=_INSERTED_WHITESPACE
            ),
        )
        return updated_node.with_changes(body=statements)


def _is_future_import(statement: cst.BaseStatement) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], cst.ImportFrom)
        and isinstance(statement.body[0].module, cst.Name)
        and statement.body[0].module.value == "__future__"
    )


def register_call(
    prefix: str, entries: list[Entry], versions: list[str], call_versions: list[str]
) -> cst.Expr:
    """``__autopersist__.register(prefix, table)`` with one row per entry.

    Row: (qualname, kind, version, parent, global_reads, writes_globals, is_op,
    first_line, last_line, call_version). The table is a literal so it is stored in
    the cached bytecode: importing a cached module needs neither libcst nor a parse.
    """
    rows = tuple(
        (
            entry.qualname,
            entry.kind,
            version,
            entry.parent,
            entry.global_reads,
            entry.writes_globals,
            entry.is_op,
            entry.first_line,
            entry.last_line,
            call_version,
        )
        for entry, version, call_version in zip(
            entries, versions, call_versions, strict=True
        )
    )
    return cst.Expr(
        cst.parse_expression(f"{RUNTIME_NAME}.register({prefix!r}, {rows!r})")
    )
