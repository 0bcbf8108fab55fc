"""Facts about a module's functions, gathered before rewriting.

``gather_entries`` finds every function and class whose execution the runtime
tracks ("entries"): top-level functions (also those inside module-level
``if``/``try``/``with`` blocks), top-level classes, and the methods of those classes
at any class depth. Nested functions and lambdas are not entries: they are part of
the syntax tree, and so of the version, of the function that contains them.

For each entry it records which module globals the code may read (names and
``module.attr`` chains), whether it writes a module global, and, for top-level
functions, whether it is an op (PRODUCT.md §2).

How: one plain recursive walk over the whole module (``_Walk``), no ``CSTVisitor``
and no libcst metadata. The facts it computes are defined as those of the first
implementation, which resolved names with libcst's ``ScopeProvider``,
``ExpressionContextProvider``, ``ParentNodeProvider`` and ``PositionProvider``
(kept as ``_analysis_reference``): on a 3,000-line module that took about 1.7 s,
this walk about 0.1 s. The walk reproduces exactly what those providers decide,
quirks included, because the facts are part of the rewritten module and of
what stored calls recorded:

* scopes: function, lambda, class and comprehension scopes, ``global`` and
  ``nonlocal``; a class body is skipped by the names of scopes nested in it;
  defaults, annotations and decorators are evaluated in the enclosing scope, so
  is a comprehension's first iterable;
* a name counts as bound only by assignment targets, ``for``/``with``/``except``
  targets, walrus targets (in the scope where they stand, also inside a
  comprehension), imports, ``def``, ``class`` and parameters; ``del x`` and match
  captures read ``x``;
* order inside one scope: a read that comes before every binding of its name in
  its own scope (``x = x + 1`` included) is looked up in the parent scope; each
  scope counts "assignment-like" statements as libcst does to decide "before";
* a read through an attribute chain whose dotted prefix was imported
  (``import os.path`` then ``os.path.join``) is not a read of a global name;
* builtins: a name no scope binds is a global read unless it is a builtin.

What the walk does not model, libcst's evaluation of string annotations that
hold statements, PEP 695 type parameters and ``typing.NewType``/``TypeVar``
calls with a computed first argument, sends the module to the reference
implementation (``_Unsupported``); tests compare both on real code.

Line numbers come from the ``ast`` tree the syntax check already built.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import libcst as cst

from autopersist._transform._compile import Definition, ast_definitions
from autopersist._transform._marker import parse_directive
from autopersist._transform._normalize import _OTHER, _kind

_BUILTIN_NAMES = frozenset(dir(builtins))


@dataclass
class Entry:
    """One tracked function, method or class of a module."""

    #: Position in the module's entry table; part of the runtime key ``prefix:index``.
    index: int
    qualname: str
    #: ``"function"``, ``"method"`` or ``"class"``.
    kind: str
    node: cst.FunctionDef | cst.ClassDef
    #: Index of the enclosing class entry for methods and nested classes, else -1.
    parent: int = -1
    #: Module globals the code may read: ``("X",)`` or ``("lib", "FACTOR")``.
    global_reads: tuple[tuple[str, ...], ...] = ()
    #: Assigns, deletes or mutates (item/attribute store) a module global.
    writes_globals: bool = False
    is_op: bool = False
    #: Why a top-level function is not an op (for ``autopersist rewrite`` output).
    not_op_reason: str = ""
    #: Options from a ``# persist: ...`` comment on the ``def`` line.
    options: dict[str, object] = field(default_factory=dict)
    first_line: int = 0
    last_line: int = 0


def gather_entries(
    module: cst.Module, tree: ast.Module | None = None, source: str | None = None
) -> list[Entry]:
    """The entries of ``module`` in source order, with their facts.

    :param tree: ``ast`` of the same source (for line numbers); parsed here if None.
    :param source: the source, if at hand: ``def`` headers are searched for
        ``# persist:`` options only on the lines of the source that have one.
    """
    if source is None:
        source = module.code
    if tree is None:
        tree = ast.parse(source)
    try:
        walk = _Walk()
        walk.visit(module, _LOAD)
        return walk.finish(tree, _directive_lines(source))
    except _Unsupported:
        from autopersist._transform._analysis_reference import (
            gather_entries_reference,
        )

        return gather_entries_reference(module)


class _Unsupported(Exception):
    """Code whose facts only the reference implementation computes exactly."""


# --- scopes ---------------------------------------------------------------------

#: Expression contexts (libcst's ``ExpressionContext``).
_LOAD, _STORE, _DEL = 0, 1, 2

_GLOBAL, _FUNCTION, _CLASS, _COMPREHENSION = range(4)


class _Facts:
    """What the walk learns about one entry function."""

    __slots__ = (
        "accesses",
        "entry",
        "global_names",
        "returns_value",
        "stored",
        "top_level",
        "yields",
    )

    def __init__(self, entry: Entry, *, top_level: bool) -> None:
        self.entry = entry
        self.top_level = top_level
        #: (scope, index in the scope's count, Name, enclosing attribute, chain, stored)
        self.accesses: list[
            tuple[_Scope, int, cst.Name, cst.Attribute | None, tuple[str, ...], bool]
        ] = []
        #: Names stored or deleted anywhere in the function (its header included).
        self.stored: set[str] = set()
        #: Names of its ``global`` statements, nested functions included.
        self.global_names: set[str] = set()
        self.returns_value = False
        self.yields = False


class _Scope:
    """A scope as libcst's ``ScopeProvider`` models it."""

    __slots__ = ("assignments", "count", "kind", "overwrites", "owner", "parent")

    def __init__(self, kind: int, parent: _Scope | None, owner: _Facts | None) -> None:
        self.kind = kind
        self.parent = parent
        #: name -> the scope's ``count`` at each binding of the name here
        self.assignments: dict[str, list[int]] = {}
        #: ``global``/``nonlocal`` names -> the scope they bind in
        self.overwrites: dict[str, _Scope] = {}
        #: assignment-like statements left so far (libcst's ``_assignment_count``)
        self.count = 0
        #: the entry function whose syntax tree holds this scope's node
        self.owner = owner


_BUILTINS = _Scope(_GLOBAL, None, None)  # stands for libcst's BuiltinScope


def _visible(scope: _Scope) -> _Scope:
    """Class bodies are invisible to the scopes nested in them."""
    while scope.kind == _CLASS:
        assert scope.parent is not None
        scope = scope.parent
    return scope


def _resolve(scope: _Scope, name: str) -> tuple[_Scope | None, list[int]]:
    """The scope holding the bindings ``name`` refers to from ``scope`` (and their
    indices); ``_BUILTINS`` for a builtin, None when nothing binds it."""
    while True:
        if scope.kind == _GLOBAL:
            indices = scope.assignments.get(name)
            if indices:
                return scope, indices
            return (_BUILTINS, []) if hasattr(builtins, name) else (None, [])
        target = scope.overwrites.get(name)
        if target is not None:
            scope = _visible(target)
            continue
        indices = scope.assignments.get(name)
        if indices:
            return scope, indices
        assert scope.parent is not None
        scope = _visible(scope.parent)


def _assign(scope: _Scope, name: str) -> None:
    while scope.kind != _GLOBAL and name in scope.overwrites:
        scope = _visible(scope.overwrites[name])
    scope.assignments.setdefault(name, []).append(scope.count)


def _contains(scope: _Scope, name: str) -> bool:
    """libcst's ``name in scope``."""
    while True:
        if scope.kind == _GLOBAL:
            return bool(scope.assignments.get(name)) or hasattr(builtins, name)
        target = scope.overwrites.get(name)
        if target is not None:
            scope = target
            continue
        if scope.assignments.get(name):
            return True
        assert scope.parent is not None
        scope = _visible(scope.parent)


def _reads_global(scope: _Scope, index: int, name: str, glob: _Scope) -> bool:
    """Whether a read of ``name`` at ``index`` of ``scope`` refers to a module
    global (or to nothing and is no builtin)."""
    found, indices = _resolve(scope, name)
    if found is scope:
        if any(i < index for i in indices):
            return False  # bound earlier in its own scope
        assert scope.parent is not None
        found, indices = _resolve(scope.parent, name)  # read before any binding
    if found is None:
        return name not in _BUILTIN_NAMES
    return found is glob


def _dotted_names(node: cst.BaseExpression) -> list[tuple[str, cst.CSTNode]]:
    """``a.b.c`` -> ``[("a.b.c", …), ("a.b", …), ("a", Name a)]`` (libcst's
    ``_gen_dotted_names``: through a call's function, not through anything else)."""
    if isinstance(node, cst.Name):
        return [(node.value, node)]
    if not isinstance(node, cst.Attribute):
        return []
    value = node.value
    if isinstance(value, cst.Call):
        value = value.func
        if isinstance(value, (cst.Attribute, cst.Name)):
            return _dotted_names(value)
        return []
    if isinstance(value, (cst.Attribute, cst.Name)):
        inner = _dotted_names(value)
        if not inner:
            return []
        return [(f"{inner[0][0]}.{node.attr.value}", node), *inner]
    return []


# --- the walk ---------------------------------------------------------------------

#: Nodes after which libcst counts one more assignment in the current scope.
_ASSIGNMENT_LIKE: frozenset[type[cst.CSTNode]] = frozenset(
    {
        cst.AnnAssign,
        cst.AsName,
        cst.Assign,
        cst.AugAssign,
        cst.ClassDef,
        cst.CompFor,
        cst.FunctionDef,
        cst.Global,
        cst.Import,
        cst.ImportFrom,
        cst.NamedExpr,
        cst.Nonlocal,
        cst.Parameters,
        cst.WithItem,
    }
)

#: Fields that hold only tokens and whitespace.
_SKIPPED_FIELDS = frozenset(
    {
        "asynchronous",
        "colon",
        "comma",
        "dot",
        "equal",
        "first_colon",
        "footer",
        "header",
        "indent",
        "lbrace",
        "lbracket",
        "leading_lines",
        "lines_after_decorators",
        "lpar",
        "newline",
        "operator",
        "rbrace",
        "rbracket",
        "rpar",
        "second_colon",
        "semicolon",
        "separator",
        "trailing_comma",
        "trailing_whitespace",
    }
)

#: The expression context a field gives its subtree (libcst's
#: ``ExpressionContextVisitor``); other fields pass their node's context on.
_FIELD_CONTEXT: dict[tuple[type[cst.CSTNode], str], int] = {
    (cst.Assign, "targets"): _STORE,
    (cst.AnnAssign, "target"): _STORE,
    (cst.AugAssign, "target"): _STORE,
    (cst.NamedExpr, "target"): _STORE,
    (cst.AsName, "name"): _STORE,
    (cst.CompFor, "target"): _STORE,
    (cst.For, "target"): _STORE,
    (cst.Del, "target"): _DEL,
    (cst.Attribute, "value"): _LOAD,
    (cst.Subscript, "value"): _LOAD,
    (cst.Subscript, "slice"): _LOAD,
}

_Fields = tuple[tuple[str, int | None], ...]
_field_cache: dict[type[cst.CSTNode], _Fields] = {}


class _FieldOrder(cst.CSTVisitor):
    """Records the order in which libcst visits a node's fields."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        return False

    def on_leave(self, original_node: cst.CSTNode) -> None:
        return None

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        if attribute not in self.names:
            self.names.append(attribute)

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        return None


def _fields(node: cst.CSTNode) -> _Fields:
    """The fields of ``node``'s class that can hold names, in libcst's visiting
    order (the source order), each with the context it gives its subtree."""
    cls = type(node)
    fields = _field_cache.get(cls)
    if fields is None:
        order = _FieldOrder()
        node._visit_and_replace_children(order)
        fields = tuple(
            (name, _FIELD_CONTEXT.get((cls, name)))
            for name in order.names
            if name not in _SKIPPED_FIELDS and not name.startswith("whitespace")
        )
        _field_cache[cls] = fields
    return fields


#: A string annotation libcst would parse and walk could bind names or count
#: assignments only with one of these.
_CODE_IN_STRING = re.compile(r"[=:]|\b(?:import|global|nonlocal)\b")
#: Calls whose string arguments libcst treats as type hints, or whose first
#: argument it skips (``NewType``, ``TypeVar``).
_HINT_CALLS = frozenset({"cast", "NewType", "TypeVar"})
_TYPING_MODULES = frozenset({"typing", "typing_extensions"})


class _Walk:
    """The whole module in libcst's ``ScopeVisitor`` order.

    State: ``scope`` is the current scope; ``stack``/``contexts`` the nodes being
    visited (root first) and their expression contexts; ``attribute_tops`` the
    outermost attribute being visited since the last call (libcst's
    ``__top_level_attribute_stack``); ``current`` the facts of the entry function
    being walked (None outside entry functions); ``own_depth`` the nesting of
    defs, classes and lambdas inside it and ``in_body`` whether its body is being
    walked (for returns and yields of its own scope).
    """

    def __init__(self) -> None:
        self.glob = _Scope(_GLOBAL, _BUILTINS, None)
        self.scope = self.glob
        self.stack: list[cst.CSTNode] = []
        self.contexts: list[int] = []
        self.attribute_tops: list[cst.Attribute | None] = [None]
        self.hint_depth = 0
        #: names imported from ``typing``: as bound -> as imported
        self.typing_names: dict[str, str] = {}
        self.dotted_imports = False
        self.entries: list[Entry] = []
        self.facts: list[_Facts] = []
        self.class_stack: list[Entry] = []
        self.function_depth = 0
        self.current: _Facts | None = None
        self.own_depth = 0
        self.in_body = False

    # -- traversal

    def visit(self, node: cst.CSTNode, context: int) -> None:
        self.stack.append(node)
        self.contexts.append(context)
        handler = _HANDLERS.get(type(node))
        if handler is None:
            self.generic(node, context)
        else:
            handler(self, node, context)
        self.stack.pop()
        self.contexts.pop()
        if type(node) in _ASSIGNMENT_LIKE:
            self.scope.count += 1

    def generic(self, node: cst.CSTNode, context: int) -> None:
        for name, field_context in _fields(node):
            value = getattr(node, name)
            child_context = context if field_context is None else field_context
            if _kind(type(value)) != _OTHER:
                self.visit(value, child_context)
            elif isinstance(value, (tuple, list)):
                for item in value:
                    self.visit(item, child_context)

    def _visit_all(self, nodes: Sequence[cst.CSTNode], context: int) -> None:
        for node in nodes:
            self.visit(node, context)

    # -- names

    def _name(self, node: cst.Name, context: int) -> None:
        current = self.current
        if context == _STORE:
            _assign(self.scope, node.value)
            if current is not None:
                current.stored.add(node.value)
            return
        if context == _DEL and current is not None:
            current.stored.add(node.value)
        scope = self.scope
        owner = scope.owner
        if owner is None:
            return  # a read outside every entry function's scopes
        chain, stored = self._chain(node)
        owner.accesses.append(
            (scope, scope.count, node, self.attribute_tops[-1], chain, stored)
        )

    def _chain(self, name: cst.Name) -> tuple[tuple[str, ...], bool]:
        """``lib.FACTOR`` read from ``name`` (up to three parts) and whether the
        outermost attribute or subscript of that expression is a store or delete."""
        stack = self.stack
        at = len(stack) - 1  # the name
        chain = [name.value]
        node: cst.CSTNode = name
        parent = stack[at - 1]
        while type(parent) is cst.Attribute and parent.value is node and len(chain) < 3:
            chain.append(parent.attr.value)
            node = parent
            at -= 1
            parent = stack[at - 1]
        outer = node
        while (
            isinstance(parent, (cst.Attribute, cst.Subscript)) and parent.value is outer
        ):
            outer = parent
            at -= 1
            parent = stack[at - 1]
        stored = False
        if outer is not name:
            stored = self.contexts[at] in (_STORE, _DEL)
            if type(parent) is cst.AugAssign and parent.target is outer:
                stored = True
        return tuple(chain), stored

    def _attribute(self, node: cst.Attribute, context: int) -> None:
        tops = self.attribute_tops
        if tops[-1] is None:
            tops[-1] = node
        self.visit(node.value, _LOAD)
        if tops[-1] is node:
            tops[-1] = None

    def _call(self, node: cst.Call, context: int) -> None:
        self.attribute_tops.append(None)
        func = node.func
        name = ""
        if isinstance(func, cst.Name):
            name = self.typing_names.get(func.value, func.value)
        elif isinstance(func, cst.Attribute) and _is_dotted(func.value):
            name = func.attr.value  # typing.cast, t.TypeVar
        if name not in _HINT_CALLS:
            self.generic(node, context)
        else:
            # Maybe typing's: libcst takes ``cast``'s first argument and the
            # arguments after ``NewType``'s and ``TypeVar``'s first (which it
            # skips) for type hints.
            self.visit(func, context)
            args = node.args
            if name == "cast":
                self.hint_depth += 1
                self._visit_all(args[:1], context)
                self.hint_depth -= 1
                self._visit_all(args[1:], context)
            else:
                if args and not _is_plain_string(args[0].value):
                    raise _Unsupported  # names libcst would not see
                self.hint_depth += 1
                self._visit_all(args[1:], context)
                self.hint_depth -= 1
        self.attribute_tops.pop()

    def _arg(self, node: cst.Arg, context: int) -> None:
        self.visit(node.value, context)  # the keyword is not a variable

    def _subscript(self, node: cst.Subscript, context: int) -> None:
        value = node.value
        hint = isinstance(value, cst.Name) and value.value in self.typing_names
        self.hint_depth += hint
        self.generic(node, context)
        self.hint_depth -= hint

    def _annotation(self, node: cst.Annotation, context: int) -> None:
        self.hint_depth += 1
        self.generic(node, context)
        self.hint_depth -= 1

    def _simple_string(self, node: cst.SimpleString, context: int) -> None:
        if self.hint_depth and _may_hold_code(node.value):
            raise _Unsupported  # libcst parses and walks string annotations

    def _concatenated_string(self, node: cst.ConcatenatedString, context: int) -> None:
        if self.hint_depth:
            parts: list[cst.BaseExpression] = []
            current: cst.BaseExpression = node
            while isinstance(current, cst.ConcatenatedString):
                parts.append(current.left)
                current = current.right
            parts.append(current)
            if any(
                _may_hold_code(p.value)
                for p in parts
                if isinstance(p, cst.SimpleString)
            ):
                raise _Unsupported
        self.generic(node, context)

    # -- definitions and scopes

    def _new_entry(self, node: cst.FunctionDef | cst.ClassDef, kind: str) -> Entry:
        classes = self.class_stack
        name = node.name.value
        entry = Entry(
            index=len(self.entries),
            qualname=f"{classes[-1].qualname}.{name}" if classes else name,
            kind=kind,
            node=node,
            parent=classes[-1].index if classes else -1,
        )
        self.entries.append(entry)
        return entry

    def _function(self, node: cst.FunctionDef, context: int) -> None:
        if getattr(node, "type_parameters", None) is not None:
            raise _Unsupported
        name = node.name.value
        _assign(self.scope, name)
        outer_facts, outer_own, outer_in_body = (
            self.current,
            self.own_depth,
            self.in_body,
        )
        is_entry = not self.function_depth
        if is_entry:
            kind = "method" if self.class_stack else "function"
            entry = self._new_entry(node, kind)
            facts = _Facts(entry, top_level=isinstance(self.stack[-2], cst.Module))
            self.facts.append(facts)
            self.current, self.own_depth, self.in_body = facts, 0, False
        elif self.current is not None:
            self.own_depth += 1
        current = self.current
        if current is not None:
            current.stored.add(name)
        self.function_depth += 1
        outer = self.scope
        self.scope = _Scope(_FUNCTION, outer, current)
        self.visit(node.params, context)
        if is_entry:
            self.in_body = True
        self.visit(node.body, context)
        if is_entry:
            self.in_body = False
        self.scope = outer
        self._visit_all(node.decorators, context)
        if node.returns is not None:
            self.visit(node.returns, context)
        self.function_depth -= 1
        self.current, self.own_depth, self.in_body = (
            outer_facts,
            outer_own,
            outer_in_body,
        )

    def _lambda(self, node: cst.Lambda, context: int) -> None:
        current = self.current
        self.own_depth += 1
        outer = self.scope
        self.scope = _Scope(_FUNCTION, outer, current)
        self.visit(node.params, context)
        self.visit(node.body, context)
        self.scope = outer
        self.own_depth -= 1

    def _param(self, node: cst.Param, context: int) -> None:
        name = node.name.value
        _assign(self.scope, name)
        if self.current is not None:
            self.current.stored.add(name)
        inner = self.scope
        assert inner.parent is not None
        self.scope = inner.parent  # defaults and annotations: the enclosing scope
        if node.default is not None:
            self.visit(node.default, context)
        if node.annotation is not None:
            self.visit(node.annotation, context)
        self.scope = inner

    def _class(self, node: cst.ClassDef, context: int) -> None:
        if getattr(node, "type_parameters", None) is not None:
            raise _Unsupported
        name = node.name.value
        _assign(self.scope, name)
        current = self.current
        if current is not None:
            current.stored.add(name)
        self.own_depth += 1
        entry = None if self.function_depth else self._new_entry(node, "class")
        if entry is not None:
            self.class_stack.append(entry)
        self._visit_all(node.decorators, context)
        self._visit_all(node.bases, context)
        self._visit_all(node.keywords, context)
        outer = self.scope
        self.scope = _Scope(_CLASS, outer, current)
        self._visit_all(node.body.body, context)
        self.scope = outer
        if entry is not None:
            self.class_stack.pop()
        self.own_depth -= 1

    def _comprehension(
        self,
        node: cst.ListComp | cst.SetComp | cst.DictComp | cst.GeneratorExp,
        context: int,
    ) -> None:
        for_in = node.for_in
        self.stack.append(for_in)
        self.contexts.append(context)
        self.visit(for_in.iter, context)  # evaluated before the comprehension starts
        outer = self.scope
        self.scope = inner = _Scope(_COMPREHENSION, outer, self.current)
        self.visit(for_in.target, _STORE)
        inner.count += 1
        self._visit_all(for_in.ifs, context)
        if for_in.inner_for_in is not None:
            self.visit(for_in.inner_for_in, context)
        self.stack.pop()
        self.contexts.pop()
        if isinstance(node, cst.DictComp):
            self.visit(node.key, context)
            self.visit(node.value, context)
        else:
            self.visit(node.elt, context)
        self.scope = outer

    def _for(self, node: cst.For, context: int) -> None:
        self.visit(node.target, _STORE)
        self.scope.count += 1
        self.visit(node.iter, context)
        self.visit(node.body, context)
        if node.orelse is not None:
            self.visit(node.orelse, context)

    def _global(self, node: cst.Global, context: int) -> None:
        scope = self.scope
        for item in node.names:
            name = item.name.value
            if scope.kind != _GLOBAL:
                scope.overwrites[name] = self.glob
            if self.current is not None:
                self.current.global_names.add(name)

    def _nonlocal(self, node: cst.Nonlocal, context: int) -> None:
        scope = self.scope
        if scope.kind == _GLOBAL or scope.parent is None:
            raise _Unsupported  # a syntax error Python reports first
        for item in node.names:
            scope.overwrites[item.name.value] = scope.parent

    def _import(self, node: cst.Import | cst.ImportFrom, context: int) -> None:
        names = node.names
        if isinstance(names, cst.ImportStar):
            return
        from_typing = (
            isinstance(node, cst.ImportFrom)
            and node.module is not None
            and _dotted_names(node.module)[0][0] in _TYPING_MODULES
        )
        current = self.current
        for alias in names:
            asname = alias.asname
            if asname is not None:
                if not isinstance(asname.name, cst.Name):
                    raise _Unsupported
                bound = asname.name.value
                _assign(self.scope, bound)
                if current is not None:
                    current.stored.add(bound)
                if from_typing and isinstance(alias.name, cst.Name):
                    self.typing_names[bound] = alias.name.value
                continue
            dotted = _dotted_names(alias.name)
            for bound, _ in dotted:
                _assign(self.scope, bound)
            if len(dotted) > 1:
                self.dotted_imports = True
            if from_typing:
                self.typing_names[dotted[-1][0]] = dotted[-1][0]

    # -- returns and yields of an entry function's own scope

    def _return(self, node: cst.Return, context: int) -> None:
        if self.in_body and not self.own_depth:
            value = node.value
            if value is not None and not (
                isinstance(value, cst.Name) and value.value == "None"
            ):
                assert self.current is not None
                self.current.returns_value = True
        self.generic(node, context)

    def _yield(self, node: cst.Yield, context: int) -> None:
        if self.in_body and not self.own_depth:
            assert self.current is not None
            self.current.yields = True
        self.generic(node, context)

    def _formatted_expression(
        self, node: cst.FormattedStringExpression, context: int
    ) -> None:
        # Its own method: libcst visits ``format_spec`` only when there is one.
        self.visit(node.expression, context)
        if node.format_spec is not None:
            self._visit_all(node.format_spec, context)

    def _unsupported(self, node: cst.CSTNode, context: int) -> None:
        raise _Unsupported

    # -- results

    def finish(self, tree: ast.Module, directive_lines: set[int]) -> list[Entry]:
        """Resolve the recorded reads now that every binding is known, and add
        line numbers and def-line options.

        :param directive_lines: the lines of the source holding ``# persist:``.
        """
        definitions = _add_lines(self.entries, tree)
        for entry, definition in zip(self.entries, definitions, strict=True):
            node = entry.node
            if isinstance(node, cst.FunctionDef) and any(
                line in directive_lines
                for line in range(definition.lineno, definition.body[0].lineno + 1)
            ):
                entry.options = _def_line_options(node)
        glob = self.glob
        for facts in self.facts:
            entry = facts.entry
            reads: set[tuple[str, ...]] = set()
            writes = False
            for scope, index, name, top, chain, stored in facts.accesses:
                if top is not None and self.dotted_imports:
                    found = next(
                        (
                            n
                            for dotted, n in _dotted_names(top)
                            if _contains(scope, dotted)
                        ),
                        None,
                    )
                    if found is not None and found is not name:
                        continue  # read through an imported dotted name
                if not _reads_global(scope, index, name.value, glob):
                    continue
                reads.add(chain)
                writes = writes or stored
            if facts.global_names & facts.stored:
                writes = True
            entry.global_reads = tuple(sorted(reads))
            entry.writes_globals = writes
            if entry.kind == "function":
                entry.not_op_reason = _not_op_reason(facts)
                entry.is_op = not entry.not_op_reason
        return self.entries


def _may_hold_code(token: str) -> bool:
    """Whether a string literal, parsed as a module, could bind a name or count
    as an assignment (``x: "a = b"``); decided on its value."""
    if "\\" in token:
        try:
            value = ast.literal_eval(token)
        except (SyntaxError, ValueError):
            return True
        token = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return _CODE_IN_STRING.search(token) is not None


def _is_dotted(node: cst.BaseExpression) -> bool:
    while isinstance(node, cst.Attribute):
        node = node.value
    return isinstance(node, cst.Name)


def _is_plain_string(node: cst.BaseExpression) -> bool:
    while isinstance(node, cst.ConcatenatedString):
        if not isinstance(node.left, cst.SimpleString):
            return False
        node = node.right
    return isinstance(node, cst.SimpleString)


_HANDLERS: dict[type[cst.CSTNode], Callable[..., None]] = {
    cst.Name: _Walk._name,
    cst.Attribute: _Walk._attribute,
    cst.Call: _Walk._call,
    cst.Arg: _Walk._arg,
    cst.Subscript: _Walk._subscript,
    cst.Annotation: _Walk._annotation,
    cst.SimpleString: _Walk._simple_string,
    cst.ConcatenatedString: _Walk._concatenated_string,
    cst.FunctionDef: _Walk._function,
    cst.Lambda: _Walk._lambda,
    cst.Param: _Walk._param,
    cst.ClassDef: _Walk._class,
    cst.ListComp: _Walk._comprehension,
    cst.SetComp: _Walk._comprehension,
    cst.DictComp: _Walk._comprehension,
    cst.GeneratorExp: _Walk._comprehension,
    cst.For: _Walk._for,
    cst.Global: _Walk._global,
    cst.Nonlocal: _Walk._nonlocal,
    cst.Import: _Walk._import,
    cst.ImportFrom: _Walk._import,
    cst.Return: _Walk._return,
    cst.Yield: _Walk._yield,
    cst.FormattedStringExpression: _Walk._formatted_expression,
}
#: Syntax newer than Python 3.11 (libcst parses it; the ``ast`` check would not).
for _name in (
    "TypeAlias",
    "TypeParameters",
    "TypeVar",
    "TypeVarTuple",
    "ParamSpec",
    "TemplatedString",
    "TemplatedStringExpression",
    "LazyImport",
    "LazyImportFrom",
):
    if hasattr(cst, _name):
        _HANDLERS[getattr(cst, _name)] = _Walk._unsupported


def _not_op_reason(facts: _Facts) -> str:
    entry = facts.entry
    node = entry.node
    assert isinstance(node, cst.FunctionDef)
    if not facts.top_level:
        return "defined inside a module-level block"
    if entry.options.get("skip"):
        return "'# persist: skip'"
    if node.asynchronous is not None:
        return "async function"
    if node.name.value == "main":
        return "entry point 'main'"
    if facts.yields:
        return "generator"
    if not facts.returns_value:
        return "never returns a value"
    return ""


# --- line numbers ------------------------------------------------------------------

_NEWLINE = re.compile(r"\r\n?|\n")
_EMPTY_MODULE = cst.Module(body=())


def _directive_lines(source: str) -> set[int]:
    """The numbers of the lines holding ``# persist:`` (anywhere in the line)."""
    if "# persist:" not in source:
        return set()
    return {
        number
        for number, line in enumerate(_NEWLINE.split(source), 1)
        if "# persist:" in line
    }


def _add_lines(entries: list[Entry], tree: ast.Module) -> list[Definition]:
    """``first_line`` (the first decorator's ``@``, else the ``def``/``class``) and
    ``last_line`` (the end of the body's last statement); the ``ast`` definitions,
    one per entry."""
    defs = ast_definitions(tree)
    if len(defs) != len(entries):
        raise _Unsupported
    for entry, definition in zip(entries, defs, strict=True):
        node = entry.node
        if node.name.value != definition.name:
            raise _Unsupported
        first = definition.lineno
        if node.decorators:
            # from the "@" of the first decorator down to the "def" line
            between = [
                node.decorators[0].with_changes(leading_lines=()),
                *node.decorators[1:],
                *node.lines_after_decorators,
            ]
            first -= sum(
                len(_NEWLINE.findall(_EMPTY_MODULE.code_for_node(n))) for n in between
            )
        entry.first_line = first
        entry.last_line = definition.end_lineno or definition.lineno
    return defs


# --- def-line options ----------------------------------------------------------------


def _def_line_options(node: cst.FunctionDef) -> dict[str, object]:
    """Options of a ``# persist:`` comment in the ``def`` header (the ``def`` line,
    or any line of a parameter list spread over several lines); text inside a
    string literal (``def f(x="# persist: skip")``) is not a comment."""
    for comment in _header_comments(node):
        at = comment.find("# persist:")
        if at >= 0:
            return parse_directive(comment[at:])
    return {}


def _header_comments(func: cst.FunctionDef) -> list[str]:
    """The comments of a ``def`` header, in order: not those above it, on its
    decorators, or in its body (a one-line body's trailing comment counts: it is on
    the ``def`` line)."""
    skip: set[int] = {
        id(n) for n in (*func.leading_lines, *func.lines_after_decorators)
    }
    skip.update(id(d) for d in func.decorators)
    body = func.body
    skip.update(id(statement) for statement in body.body)
    if isinstance(body, cst.IndentedBlock):
        skip.update(id(line) for line in body.footer)
    collector = _CommentCollector(skip)
    func.visit(collector)
    return collector.comments


class _CommentCollector(cst.CSTVisitor):
    def __init__(self, skip: set[int]) -> None:
        self.skip = skip
        self.comments: list[str] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        if id(node) in self.skip:
            return False
        if isinstance(node, cst.Comment):
            self.comments.append(node.value)
        return True
