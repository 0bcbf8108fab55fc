"""Code versions: hashes of normalized LibCST syntax trees (Unison-style).

A *code version* is 32 lowercase hex characters: the first 16 bytes of the SHA-256
of a structural serialization of one ``def`` or ``class``. Users rely on it staying
the same across edits that cannot change behaviour and across autopersist releases,
so everything below is a promise. ``tests/test_normalize.py`` pins digests; changing
what this module emits invalidates every stored call of every user and needs a
CHANGELOG entry (bump ``_FORMAT_TAG`` when you do it on purpose).

What the version of a function covers
    ``async`` or not; decorators; the signature (parameter names, kinds -
    positional-only, ``*args``, keyword-only, ``**kwargs`` - defaults and
    annotations); the return annotation; the whole body, including nested
    functions, lambdas, nested classes (with their methods) and comprehensions.
    Every operator, literal value, call, attribute name, keyword-argument name,
    global or builtin name read, import, and the control-flow structure count.

What the version of a class covers
    Decorators, bases and class keywords (``metaclass=``), and the class body
    without its methods: every ``def`` at class level (also one inside a
    class-level ``if``/``try``/...) is versioned on its own as ``Class.method``.
    Nested classes count, with their methods left out by the same rule.

What never changes a version
    * comments, blank lines, indentation, line breaks, spacing, backslash
      continuations, trailing commas, ``;`` versus a new line, ``pass``;
    * the docstring: the first statement of a function or class body when it is
      a plain string literal (also for nested functions and classes);
    * redundant parentheses: the tree is hashed, not the text, so ``(a + b)``
      equals ``a + b`` while ``(a + b) * c`` and ``a + b * c`` stay different;
    * literal spelling: strings are compared by value (quote style, prefixes,
      escapes, implicit concatenation; an f-string by its text parts and
      replacement fields), numbers by value (``1_000 == 1000``, ``0x10 == 16``,
      ``1e3 == 1000.0``) while ``int``, ``float`` and ``complex`` stay distinct;
    * the names of local variables: names bound inside the function (assignment,
      ``for``/``with``/``except`` targets, ``del``, walrus, comprehension
      variables, match captures, nested ``def``/``class`` names, imports inside
      the function) are replaced by numbers in order of first appearance (one
      name bound in two scopes gets two numbers), so renaming a local
      consistently changes nothing while swapping two locals' roles does;
    * the function's or class's own name (its identity is the qualified name,
      stored next to the version). A recursive call still names it, as a global.

Names that keep their spelling: parameters (of the function and of nested
functions and lambdas: callers pass them by keyword), globals and builtins,
names declared ``global``, class attributes, attribute names and keyword names
in calls. A function that mentions ``locals``, ``eval`` or ``exec``, or calls
``vars()`` or ``dir()`` without arguments, can observe its local names, so it
keeps all of them as written. An f-string field with ``=`` (``f"{x=}"``) prints
its source text, so that text counts as written.

A version depends only on the text of the def or class itself, never on the
rest of its module: the same function gives the same version wherever it lives.

Implementation: per def/class, ``_GatherBindings`` first records which names
each scope inside it binds (Python's rules: a name bound anywhere in a function
is local to all of it), then ``_TreeSerializer`` emits the tree field by field,
skipping formatting tokens, and the result is hashed. Both are plain recursive
walks over the nodes' dataclass fields, not ``CSTVisitor``s nor libcst's
``ScopeProvider``: on a 3,000-line module ``ScopeProvider`` alone takes about
0.6 s (its ``ExpressionContextProvider`` pass plus visitor dispatch), three
times the parse, while both walks together take well under 0.1 s. They also get
right two bindings ``ScopeProvider`` misses (match captures, and a walrus inside
a comprehension, which binds in the enclosing function).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import textwrap
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache

import libcst as cst
from libcst.metadata import MetadataWrapper

__all__ = [
    "GatherVersionedDefsVisitor",
    "iter_versions_of_parsed",
    "normalized_dump",
    "source_of_node",
    "version_of_node",
    "versions_of_module",
    "versions_of_parsed",
]

#: Prefixed to every serialization before hashing. Bump the number only together
#: with a deliberate change of the normalization (and a CHANGELOG entry).
_FORMAT_TAG = "autopersist-normalize/1\n"

#: Fields that only carry formatting: whitespace, comments, parentheses, commas,
#: colons, brackets, dots, ``=`` signs whose presence another field already tells.
_FORMAT_FIELDS = frozenset(
    {
        "lpar",
        "rpar",
        "comma",
        "semicolon",
        "leading_lines",
        "lines_after_decorators",
        "header",
        "footer",
        "indent",
        "trailing_whitespace",
        "leading_whitespace",
        "newline",
        "equal",
        "colon",
        "first_colon",
        "second_colon",
        "dot",
        "lbrace",
        "rbrace",
        "lbracket",
        "rbracket",
        "separator",
        "trailing_comma",
    }
)

#: Per-class fields that are spelling only: ``Param.star`` repeats what the
#: position in ``Parameters`` says; ``NotEqual.value`` is ``!=`` or ``<>``.
_SPELLING_FIELDS: dict[type[cst.CSTNode], frozenset[str]] = {
    cst.Param: frozenset({"star"}),
    cst.NotEqual: frozenset({"value"}),
}

#: Token nodes that never carry meaning wherever they appear.
_TOKEN_TYPES: tuple[type[cst.CSTNode], ...] = (
    cst.BaseParenthesizableWhitespace,
    cst.Comment,
    cst.Newline,
    cst.EmptyLine,
    cst.TrailingWhitespace,
    cst.Comma,
    cst.Semicolon,
    cst.LeftParen,
    cst.RightParen,
    cst.LeftSquareBracket,
    cst.RightSquareBracket,
    cst.LeftCurlyBrace,
    cst.RightCurlyBrace,
    cst.Colon,
    cst.Dot,
    cst.AssignEqual,
)

#: Builtins through which a function can observe its own local variable names.
#: ``vars`` and ``dir`` only do so when called without arguments.
_FRAME_READERS = frozenset({"locals", "eval", "exec"})
_FRAME_READER_CALLS = frozenset({"vars", "dir"})

_Comprehension = cst.ListComp | cst.SetComp | cst.DictComp | cst.GeneratorExp

_field_cache: dict[type[cst.CSTNode], tuple[str, ...]] = {}


def _semantic_fields(cls: type[cst.CSTNode]) -> tuple[str, ...]:
    """The fields of ``cls`` that can carry meaning, in declaration order."""
    names = _field_cache.get(cls)
    if names is None:
        spelling = _SPELLING_FIELDS.get(cls, frozenset())
        names = tuple(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in _FORMAT_FIELDS
            and f.name not in spelling
            and not f.name.startswith("whitespace")
        )
        _field_cache[cls] = names
    return names


#: What a field value is: not a node, a token node, a node that can carry meaning.
_OTHER, _TOKEN, _MEANINGFUL = 0, 1, 2
_kinds: dict[type, int] = {}


def _kind(cls: type) -> int:
    """The kind of values of class ``cls``, cached: most node classes are ABCs
    to ``isinstance``, which makes a direct check slow."""
    kind = _kinds.get(cls)
    if kind is None:
        if not issubclass(cls, cst.CSTNode):
            kind = _OTHER
        elif issubclass(cls, _TOKEN_TYPES):
            kind = _TOKEN
        else:
            kind = _MEANINGFUL
        _kinds[cls] = kind
    return kind


def _children(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """The child nodes of ``node`` that can carry meaning, in field order."""
    for name in _semantic_fields(type(node)):
        value = getattr(node, name)
        kind = _kind(type(value))
        if kind == _MEANINGFUL:
            yield value
        elif kind == _OTHER and isinstance(value, (tuple, list)):
            for item in value:
                if _kind(type(item)) != _TOKEN:
                    yield item


# --- literal values -------------------------------------------------------------


def _literal_eval(text: str) -> object:
    # Invalid escapes such as "\d" warn (DeprecationWarning, SyntaxWarning in
    # 3.12) but keep both characters, exactly as when the module is compiled.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.literal_eval(text)


def _split_prefix(token: str) -> tuple[str, str, str]:
    """``rb'x'`` -> (lowercase prefix, quote, body); also for triple quotes."""
    i = 0
    while token[i] not in "'\"":
        i += 1
    quote = token[i : i + 3] if token[i : i + 3] in ('"""', "'''") else token[i]
    body = token[i + len(quote) : len(token) - len(quote)]
    return token[:i].lower(), quote, body


def _normalize_newlines(text: str) -> str:
    # Python reads source files with universal newlines, so a CRLF file's
    # multi-line string holds "\n" at run time; libcst keeps the raw "\r\n".
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


@lru_cache(maxsize=4096)
def _simple_string_value(token: str) -> str | bytes:
    """The value of one string literal token, without running the compiler when
    there is nothing to unescape."""
    prefix, quote, body = _split_prefix(token)
    body = _normalize_newlines(body)
    if "b" in prefix:
        value = _literal_eval(prefix + quote + body + quote)
        assert isinstance(value, bytes)
        return value
    if "r" in prefix or "\\" not in body:
        return body
    value = _literal_eval(prefix + quote + body + quote)
    assert isinstance(value, str)
    return value


def _fstring_text_value(text: str, prefix: str, quote: str) -> str:
    """The value of the literal text between replacement fields of an f-string."""
    text = _normalize_newlines(text.replace("{{", "{").replace("}}", "}"))
    if "r" in prefix or "\\" not in text:
        return text
    # The sentinel "#" keeps a text part that ended just before "{" (for example
    # with a quote character) from merging with the closing quote.
    value = _literal_eval(prefix.replace("f", "") + quote + text + "#" + quote)
    assert isinstance(value, str)
    return value[:-1]


def _number_token(node: cst.Integer | cst.Float | cst.Imaginary) -> str:
    """Numbers by value and type. Hex keeps huge ints clear of the str() limit."""
    spelling = node.value
    if isinstance(node, cst.Integer):
        try:
            return "I" + hex(int(spelling, 0))
        except ValueError:
            value = _literal_eval(spelling)
            assert isinstance(value, int)
            return "I" + hex(value)
    if isinstance(node, cst.Float):
        return "F" + float(spelling).hex()
    return "J" + complex(spelling).imag.hex()


def _is_docstring(statement: cst.CSTNode) -> bool:
    """A plain (not bytes, not f-) string literal used as a statement."""
    if not isinstance(statement, cst.Expr):
        return False
    value = statement.value
    if isinstance(value, cst.SimpleString):
        return "b" not in _split_prefix(value.value)[0]
    if isinstance(value, cst.ConcatenatedString):
        parts = _flatten_concatenation(value)
        return all(
            isinstance(p, cst.SimpleString) and "b" not in _split_prefix(p.value)[0]
            for p in parts
        )
    return False


def _flatten_concatenation(
    node: cst.ConcatenatedString,
) -> list[cst.SimpleString | cst.FormattedString]:
    parts: list[cst.SimpleString | cst.FormattedString] = []
    current: cst.BaseExpression = node
    while isinstance(current, cst.ConcatenatedString):
        left = current.left
        if isinstance(left, cst.ConcatenatedString):  # not produced by the parser
            parts.extend(_flatten_concatenation(left))
        else:
            parts.append(left)
        current = current.right
    assert isinstance(current, (cst.SimpleString, cst.FormattedString))
    parts.append(current)
    return parts


def _dotted_name(node: cst.BaseExpression) -> str:
    """``a.b.c`` of an import's module path, as written."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted_name(node.value)}.{node.attr.value}"
    msg = f"unexpected node in a module path: {type(node).__name__}"
    raise TypeError(msg)


# --- scopes -----------------------------------------------------------------------

_FUNCTION, _CLASS, _COMPREHENSION = "function", "class", "comprehension"


class _Scope:
    """One scope inside a versioned def/class: a function or lambda body, a class
    body or a comprehension. The module around the root is not modelled: every
    name it binds keeps its spelling.

    Hashed by identity: two scopes that bind the same names are still different.
    """

    __slots__ = (
        "bound",
        "declared_global",
        "declared_nonlocal",
        "kind",
        "params",
        "parent",
    )

    def __init__(self, kind: str, parent: _Scope | None) -> None:
        self.kind = kind
        self.parent = parent
        #: Names bound here (assigned, imported, defined, captured, deleted).
        self.bound: set[str] = set()
        #: Parameter names (function scopes only).
        self.params: set[str] = set()
        self.declared_global: set[str] = set()
        self.declared_nonlocal: set[str] = set()

    def owner_of(self, name: str) -> _Scope | None:
        """The scope whose local variable ``name`` is, seen from here; None for a
        name that keeps its spelling (parameter, global, builtin, class attribute).

        Python's rules: a class body sees its own names but nested scopes skip
        it; ``global`` and ``nonlocal`` redirect; bound anywhere means local.
        """
        scope: _Scope | None = self
        first = True
        while scope is not None:
            if name in scope.declared_global:
                return None
            if scope.kind == _CLASS:
                if first and name in scope.bound:
                    return None
            elif name not in scope.declared_nonlocal:
                if name in scope.params:
                    return None
                if name in scope.bound:
                    return scope
            scope = scope.parent
            first = False
        return None


class _GatherBindings:
    """First pass over one def/class: the scopes inside it and what each binds.

    State: ``scopes`` maps each scope-creating node (``FunctionDef``, ``Lambda``,
    ``ClassDef``, comprehension) to its ``_Scope``; ``reads_frame`` is set when
    the code can observe local names (``locals()`` & co.). Expressions that
    Python evaluates in the enclosing scope (decorators, defaults, annotations,
    class bases, a comprehension's first iterable) are walked there.
    """

    def __init__(self) -> None:
        self.scopes: dict[cst.CSTNode, _Scope] = {}
        self.reads_frame = False

    def walk(self, node: cst.CSTNode, scope: _Scope | None) -> None:
        handler = _BIND_HANDLERS.get(type(node))
        if handler is not None:
            handler(self, node, scope)
        else:
            for child in _children(node):
                self.walk(child, scope)

    def _walk_all(self, nodes: Sequence[cst.CSTNode], scope: _Scope | None) -> None:
        for node in nodes:
            self.walk(node, scope)

    @staticmethod
    def _bind(name: str, scope: _Scope | None) -> None:
        if scope is not None:
            scope.bound.add(name)

    def _target(self, target: cst.CSTNode, scope: _Scope | None) -> None:
        """An assignment target: names in it are bound, the rest is evaluated."""
        if isinstance(target, cst.Name):
            self._bind(target.value, scope)
        elif isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:  # ``*rest`` elements too
                self._target(element.value, scope)
        else:  # attribute or subscript targets bind nothing
            self.walk(target, scope)

    def _parameters(
        self, params: cst.Parameters, outer: _Scope | None, inner: _Scope
    ) -> None:
        for param in _all_params(params):
            inner.params.add(param.name.value)
            if param.annotation is not None:
                self.walk(param.annotation, outer)
            if param.default is not None:
                self.walk(param.default, outer)

    def _function(self, node: cst.FunctionDef, scope: _Scope | None) -> None:
        self._bind(node.name.value, scope)
        self._walk_all(node.decorators, scope)
        if node.returns is not None:
            self.walk(node.returns, scope)
        if node.type_parameters is not None:
            self.walk(node.type_parameters, scope)
        inner = self.scopes[node] = _Scope(_FUNCTION, scope)
        self._parameters(node.params, scope, inner)
        self.walk(node.body, inner)

    def _lambda(self, node: cst.Lambda, scope: _Scope | None) -> None:
        inner = self.scopes[node] = _Scope(_FUNCTION, scope)
        self._parameters(node.params, scope, inner)
        self.walk(node.body, inner)

    def _class(self, node: cst.ClassDef, scope: _Scope | None) -> None:
        self._bind(node.name.value, scope)
        self._walk_all(node.decorators, scope)
        self._walk_all(node.bases, scope)
        self._walk_all(node.keywords, scope)
        if node.type_parameters is not None:
            self.walk(node.type_parameters, scope)
        inner = self.scopes[node] = _Scope(_CLASS, scope)
        self.walk(node.body, inner)

    def _comprehension(self, node: _Comprehension, scope: _Scope | None) -> None:
        inner = self.scopes[node] = _Scope(_COMPREHENSION, scope)
        for_in: cst.CompFor | None = node.for_in
        outermost = True
        while for_in is not None:
            # The first iterable is evaluated before the comprehension starts.
            self.walk(for_in.iter, scope if outermost else inner)
            self._target(for_in.target, inner)
            self._walk_all(for_in.ifs, inner)
            for_in = for_in.inner_for_in
            outermost = False
        if isinstance(node, cst.DictComp):
            self.walk(node.key, inner)
            self.walk(node.value, inner)
        else:
            self.walk(node.elt, inner)

    def _assign(self, node: cst.Assign, scope: _Scope | None) -> None:
        for target in node.targets:
            self._target(target.target, scope)
        self.walk(node.value, scope)

    def _aug_or_ann_assign(
        self, node: cst.AugAssign | cst.AnnAssign, scope: _Scope | None
    ) -> None:
        # ``x: int`` without a value also makes ``x`` local to a function.
        self._target(node.target, scope)
        for child in _children(node):
            if child is not node.target:
                self.walk(child, scope)

    def _for(self, node: cst.For, scope: _Scope | None) -> None:
        self._target(node.target, scope)
        self.walk(node.iter, scope)
        self.walk(node.body, scope)
        if node.orelse is not None:
            self.walk(node.orelse, scope)

    def _with_item(self, node: cst.WithItem, scope: _Scope | None) -> None:
        self.walk(node.item, scope)
        if node.asname is not None:
            self._target(node.asname.name, scope)

    def _except(
        self, node: cst.ExceptHandler | cst.ExceptStarHandler, scope: _Scope | None
    ) -> None:
        if node.type is not None:
            self.walk(node.type, scope)
        if node.name is not None:
            self._target(node.name.name, scope)
        self.walk(node.body, scope)

    def _del(self, node: cst.Del, scope: _Scope | None) -> None:
        self._target(node.target, scope)

    def _named_expr(self, node: cst.NamedExpr, scope: _Scope | None) -> None:
        # PEP 572: inside a comprehension, := binds in the enclosing function.
        target_scope = scope
        while target_scope is not None and target_scope.kind == _COMPREHENSION:
            target_scope = target_scope.parent
        self._target(node.target, target_scope)
        self.walk(node.value, scope)

    def _import(self, node: cst.Import | cst.ImportFrom, scope: _Scope | None) -> None:
        if isinstance(node.names, cst.ImportStar):
            return
        for alias in node.names:
            if alias.asname is not None:
                self._target(alias.asname.name, scope)
            else:  # ``import a.b`` binds ``a``
                self._bind(_dotted_name(alias.name).partition(".")[0], scope)

    def _global(self, node: cst.Global, scope: _Scope | None) -> None:
        if scope is not None:
            scope.declared_global.update(item.name.value for item in node.names)

    def _nonlocal(self, node: cst.Nonlocal, scope: _Scope | None) -> None:
        if scope is not None:
            scope.declared_nonlocal.update(item.name.value for item in node.names)

    def _match_capture(
        self, node: cst.MatchAs | cst.MatchStar, scope: _Scope | None
    ) -> None:
        if node.name is not None:
            self._bind(node.name.value, scope)
        if isinstance(node, cst.MatchAs) and node.pattern is not None:
            self.walk(node.pattern, scope)

    def _match_mapping(self, node: cst.MatchMapping, scope: _Scope | None) -> None:
        if node.rest is not None:
            self._bind(node.rest.value, scope)
        self._walk_all(node.elements, scope)

    def _match_keyword(
        self, node: cst.MatchKeywordElement, scope: _Scope | None
    ) -> None:
        self.walk(node.pattern, scope)  # the key is an attribute name

    def _attribute(self, node: cst.Attribute, scope: _Scope | None) -> None:
        self.walk(node.value, scope)  # ``x.eval`` is not the builtin

    def _arg(self, node: cst.Arg, scope: _Scope | None) -> None:
        self.walk(node.value, scope)  # ``f(exec=1)`` neither

    def _name(self, node: cst.Name, scope: _Scope | None) -> None:
        if node.value in _FRAME_READERS:
            self.reads_frame = True

    def _call(self, node: cst.Call, scope: _Scope | None) -> None:
        func = node.func
        if (
            not node.args
            and isinstance(func, cst.Name)
            and func.value in _FRAME_READER_CALLS
        ):
            self.reads_frame = True
        self.walk(func, scope)
        self._walk_all(node.args, scope)


def _all_params(params: cst.Parameters) -> Iterator[cst.Param]:
    yield from params.posonly_params
    yield from params.params
    if isinstance(params.star_arg, cst.Param):
        yield params.star_arg
    yield from params.kwonly_params
    if params.star_kwarg is not None:
        yield params.star_kwarg


_BIND_HANDLERS: dict[type[cst.CSTNode], Callable[..., None]] = {
    cst.FunctionDef: _GatherBindings._function,
    cst.Lambda: _GatherBindings._lambda,
    cst.ClassDef: _GatherBindings._class,
    cst.ListComp: _GatherBindings._comprehension,
    cst.SetComp: _GatherBindings._comprehension,
    cst.DictComp: _GatherBindings._comprehension,
    cst.GeneratorExp: _GatherBindings._comprehension,
    cst.Assign: _GatherBindings._assign,
    cst.AugAssign: _GatherBindings._aug_or_ann_assign,
    cst.AnnAssign: _GatherBindings._aug_or_ann_assign,
    cst.For: _GatherBindings._for,
    cst.WithItem: _GatherBindings._with_item,
    cst.ExceptHandler: _GatherBindings._except,
    cst.ExceptStarHandler: _GatherBindings._except,
    cst.Del: _GatherBindings._del,
    cst.NamedExpr: _GatherBindings._named_expr,
    cst.Import: _GatherBindings._import,
    cst.ImportFrom: _GatherBindings._import,
    cst.Global: _GatherBindings._global,
    cst.Nonlocal: _GatherBindings._nonlocal,
    cst.MatchAs: _GatherBindings._match_capture,
    cst.MatchStar: _GatherBindings._match_capture,
    cst.MatchMapping: _GatherBindings._match_mapping,
    cst.MatchKeywordElement: _GatherBindings._match_keyword,
    cst.Attribute: _GatherBindings._attribute,
    cst.Arg: _GatherBindings._arg,
    cst.Name: _GatherBindings._name,
    cst.Call: _GatherBindings._call,
}


# --- the serializer --------------------------------------------------------------


class _TreeSerializer:
    """Second pass: emits one def/class as a list of tokens.

    State: ``_out`` holds the tokens; ``_scope`` is the scope the node being
    emitted is evaluated in (None outside the root: the module or the class
    around it); ``_tokens`` maps (binding scope, name) to the canonical token of
    a local variable, numbered at its first appearance.

    Token shapes cannot collide: a kept name is its ``repr`` (``'x'``), a local
    is ``L<n>``, strings are ``S``/``B`` + repr, numbers ``I``/``F``/``J`` + hex,
    nodes are ``ClassName(`` ... ``)`` with ``field=`` labels.
    """

    def __init__(self, bindings: _GatherBindings, *, skip_methods: bool) -> None:
        self._bindings = bindings
        self._rename = not bindings.reads_frame
        self._skip_methods = skip_methods
        self._out: list[str] = []
        self._scope: _Scope | None = None
        self._tokens: dict[tuple[_Scope, str], str] = {}

    def dump(self) -> str:
        return " ".join(self._out)

    def node(self, node: cst.CSTNode) -> None:
        handler = _HANDLERS.get(type(node))
        if handler is None:
            self._generic(node)
        else:
            handler(self, node)

    def _generic(self, node: cst.CSTNode) -> None:
        out = self._out
        out.append(type(node).__name__ + "(")
        for name in _semantic_fields(type(node)):
            value = getattr(node, name)
            if value is None or isinstance(value, cst.MaybeSentinel):
                continue
            kind = _kind(type(value))
            if kind == _MEANINGFUL:
                out.append(name + "=")
                self.node(value)
            elif kind == _TOKEN:
                continue
            elif isinstance(value, (tuple, list)):
                if not value:
                    continue
                out.append(name + "=[")
                for item in value:
                    if _kind(type(item)) != _TOKEN:
                        self.node(item)
                out.append("]")
            else:  # str, bool or int payloads (operators' spellings are classes)
                out.append(f"{name}={value!r}")
        out.append(")")

    def _list(self, label: str, items: Sequence[cst.CSTNode]) -> None:
        if items:
            self._out.append(label + "=[")
            for item in items:
                self.node(item)
            self._out.append("]")

    # -- names

    def _name_token(self, name: str) -> str:
        scope = self._scope
        if scope is None or not self._rename:
            return repr(name)
        owner = scope.owner_of(name)
        if owner is None:
            return repr(name)
        key = (owner, name)
        token = self._tokens.get(key)
        if token is None:
            token = self._tokens[key] = f"L{len(self._tokens)}"
        return token

    def _name(self, node: cst.Name) -> None:
        self._out.append(self._name_token(node.value))

    # -- definitions and scopes

    def function(self, node: cst.FunctionDef, *, root: bool = False) -> None:
        out = self._out
        out.append("FunctionDef(")
        if not root:  # a nested def binds its name in the enclosing scope
            out.append("name=" + self._name_token(node.name.value))
        if node.asynchronous is not None:
            out.append("async")
        self._list("decorators", [d.decorator for d in node.decorators])
        # Parameters: names as written; defaults and annotations are evaluated
        # in the enclosing scope, which is still current here.
        out.append("params=")
        self.node(node.params)
        if node.returns is not None:
            out.append("returns=")
            self.node(node.returns.annotation)
        if node.type_parameters is not None:
            out.append("type_parameters=")
            self.node(node.type_parameters)
        outer, self._scope = self._scope, self._bindings.scopes[node]
        out.append("body=")
        self._suite(node.body, docstring=True)
        self._scope = outer
        out.append(")")

    def klass(self, node: cst.ClassDef, *, root: bool = False) -> None:
        out = self._out
        out.append("ClassDef(")
        if not root:
            out.append("name=" + self._name_token(node.name.value))
        self._list("decorators", [d.decorator for d in node.decorators])
        self._list("bases", node.bases)
        self._list("keywords", node.keywords)
        if node.type_parameters is not None:
            out.append("type_parameters=")
            self.node(node.type_parameters)
        outer, self._scope = self._scope, self._bindings.scopes[node]
        out.append("body=")
        self._suite(node.body, docstring=True)
        self._scope = outer
        out.append(")")

    def _lambda(self, node: cst.Lambda) -> None:
        self._out.append("Lambda(")
        self.node(node.params)
        outer, self._scope = self._scope, self._bindings.scopes[node]
        self.node(node.body)
        self._scope = outer
        self._out.append(")")

    def _comprehension(self, node: _Comprehension) -> None:
        out = self._out
        out.append(type(node).__name__ + "(")
        outer = self._scope
        inner = self._bindings.scopes[node]
        for_in: cst.CompFor | None = node.for_in
        outermost = True
        while for_in is not None:
            out.append("for" if for_in.asynchronous is None else "async for")
            self._scope = inner
            self.node(for_in.target)
            self._scope = outer if outermost else inner
            self.node(for_in.iter)
            self._scope = inner
            self._list("if", [comp_if.test for comp_if in for_in.ifs])
            for_in = for_in.inner_for_in
            outermost = False
        if isinstance(node, cst.DictComp):
            self.node(node.key)
            self.node(node.value)
        else:
            self.node(node.elt)
        self._scope = outer
        out.append(")")

    def _suite(self, suite: cst.BaseSuite, *, docstring: bool = False) -> None:
        """A block as a flat list of statements: one per line, ``;``-separated or
        after the colon are the same; ``pass`` is dropped."""
        statements: list[cst.CSTNode] = []
        for statement in suite.body:
            if isinstance(statement, cst.SimpleStatementLine):
                statements.extend(statement.body)
            else:
                statements.append(statement)
        if docstring and statements and _is_docstring(statements[0]):
            del statements[0]
        self._out.append("[")
        for kept in statements:
            if isinstance(kept, cst.Pass):
                continue
            if self._skip_methods and isinstance(kept, cst.FunctionDef):
                continue  # a method: versioned on its own
            self.node(kept)
        self._out.append("]")

    # -- names that are not variables, and bindings the generic walk misses

    def _attribute(self, node: cst.Attribute) -> None:
        self._out.append("Attribute(")
        self.node(node.value)
        self._out.append(repr(node.attr.value) + ")")

    def _arg(self, node: cst.Arg) -> None:
        out = self._out
        out.append("Arg(" + node.star)
        if node.keyword is not None:
            out.append("keyword=" + repr(node.keyword.value))
        self.node(node.value)
        out.append(")")

    def _param(self, node: cst.Param) -> None:
        out = self._out
        out.append("Param(" + repr(node.name.value))
        if node.annotation is not None:
            out.append("annotation=")
            self.node(node.annotation.annotation)
        if node.default is not None:
            out.append("default=")
            self.node(node.default)
        out.append(")")

    def _subscript(self, node: cst.Subscript) -> None:
        # ``a[1,]`` indexes with the tuple ``(1,)``: the one comma that matters.
        out = self._out
        out.append("Subscript(")
        self.node(node.value)
        if len(node.slice) == 1 and isinstance(node.slice[0].comma, cst.Comma):
            out.append("tuple")
        out.append("[")
        for element in node.slice:
            self.node(element.slice)
        out.append("])")

    def _import(self, node: cst.Import) -> None:
        self._out.append("Import([")
        for alias in node.names:
            self._import_alias(alias)
        self._out.append("])")

    def _import_from(self, node: cst.ImportFrom) -> None:
        out = self._out
        out.append(f"ImportFrom({len(node.relative)}")
        if node.module is not None:
            out.append(repr(_dotted_name(node.module)))
        if isinstance(node.names, cst.ImportStar):
            out.append("*")
        else:
            out.append("[")
            for alias in node.names:
                self._import_alias(alias)
            out.append("]")
        out.append(")")

    def _import_alias(self, alias: cst.ImportAlias) -> None:
        # The module path is never a variable; an ``as`` name is a binding.
        self._out.append(repr(_dotted_name(alias.name)))
        if alias.asname is not None:
            self._out.append("as")
            self.node(alias.asname.name)

    def _global(self, node: cst.Global) -> None:
        names = " ".join(repr(item.name.value) for item in node.names)
        self._out.append(f"Global({names})")

    def _nonlocal(self, node: cst.Nonlocal) -> None:
        # A nonlocal name is the enclosing function's local: same token as there.
        self._out.append("Nonlocal(")
        for item in node.names:
            self._out.append(self._name_token(item.name.value))
        self._out.append(")")

    def _match_keyword(self, node: cst.MatchKeywordElement) -> None:
        self._out.append("MatchKeywordElement(" + repr(node.key.value))
        self.node(node.pattern)
        self._out.append(")")

    # -- literals

    def _number(self, node: cst.Integer | cst.Float | cst.Imaginary) -> None:
        self._out.append(_number_token(node))

    def _string(self, node: cst.BaseString) -> None:
        if isinstance(node, cst.SimpleString):
            value = _simple_string_value(node.value)
            self._out.append(("B" if isinstance(value, bytes) else "S") + repr(value))
            return
        pieces: list[_Piece] = []
        bytes_value = b""
        is_bytes = False
        parts = (
            _flatten_concatenation(node)
            if isinstance(node, cst.ConcatenatedString)
            else [node]
        )
        for part in parts:
            if isinstance(part, cst.SimpleString):
                value = _simple_string_value(part.value)
                if isinstance(value, bytes):
                    is_bytes = True
                    bytes_value += value
                else:
                    pieces.append(value)
            elif isinstance(part, cst.FormattedString):
                prefix = part.start[: len(part.start) - len(part.end)].lower()
                _fstring_pieces(part.parts, prefix, part.end, pieces)
            else:  # t-strings and future string kinds: structure as parsed
                self._generic(node)
                return
        if is_bytes:
            self._out.append("B" + repr(bytes_value))
        else:
            self._emit_pieces(pieces)

    def _emit_pieces(self, pieces: list[_Piece]) -> None:
        # Adjacent text merges, so "a" f"b{x}" equals f"ab{x}", and an f-string
        # without replacement fields equals the plain string.
        out = self._out
        text: list[str] = []
        fields = 0
        out.append("FString[")
        for piece in pieces:
            if isinstance(piece, str):
                text.append(piece)
                continue
            if text:
                out.append("S" + repr("".join(text)))
                text = []
            fields += 1
            self._fstring_field(*piece)
        if not fields:
            del out[-1]
            out.append("S" + repr("".join(text)))
            return
        if text:
            out.append("S" + repr("".join(text)))
        out.append("]")

    def _fstring_field(
        self, node: cst.FormattedStringExpression, prefix: str, quote: str
    ) -> None:
        out = self._out
        out.append("Field(")
        self.node(node.expression)
        if node.conversion is not None:
            out.append("!" + node.conversion)
        if node.format_spec is not None:
            # A format spec is literal text and fields of the same f-string.
            spec: list[_Piece] = []
            _fstring_pieces(node.format_spec, prefix, quote, spec)
            out.append("spec=")
            self._emit_pieces(spec)
        if node.equal is not None:
            # f"{x = }" prints its own source text, so that text is behaviour.
            out.append("debug=" + repr(_EMPTY_MODULE.code_for_node(node)))
        out.append(")")


#: A piece of a string literal: its text, or a replacement field with the
#: f-string's lowercase prefix and quote (needed to unescape a format spec).
_Piece = str | tuple[cst.FormattedStringExpression, str, str]


def _fstring_pieces(
    parts: Sequence[cst.BaseFormattedStringContent],
    prefix: str,
    quote: str,
    pieces: list[_Piece],
) -> None:
    for part in parts:
        if isinstance(part, cst.FormattedStringText):
            pieces.append(_fstring_text_value(part.value, prefix, quote))
        else:
            assert isinstance(part, cst.FormattedStringExpression)
            pieces.append((part, prefix, quote))


_EMPTY_MODULE = cst.Module(body=())


def _build_handlers() -> dict[type[cst.CSTNode], Callable[..., None]]:
    s = _TreeSerializer
    return {
        cst.Name: s._name,
        cst.Attribute: s._attribute,
        cst.Arg: s._arg,
        cst.Param: s._param,
        cst.Subscript: s._subscript,
        cst.FunctionDef: s.function,
        cst.ClassDef: s.klass,
        cst.Lambda: s._lambda,
        cst.ListComp: s._comprehension,
        cst.SetComp: s._comprehension,
        cst.DictComp: s._comprehension,
        cst.GeneratorExp: s._comprehension,
        cst.IndentedBlock: s._suite,
        cst.SimpleStatementSuite: s._suite,
        cst.Import: s._import,
        cst.ImportFrom: s._import_from,
        cst.Global: s._global,
        cst.Nonlocal: s._nonlocal,
        cst.MatchKeywordElement: s._match_keyword,
        cst.Integer: s._number,
        cst.Float: s._number,
        cst.Imaginary: s._number,
        cst.SimpleString: s._string,
        cst.ConcatenatedString: s._string,
        cst.FormattedString: s._string,
    }


_HANDLERS = _build_handlers()


# --- public API --------------------------------------------------------------------


def normalized_dump(node: cst.FunctionDef | cst.ClassDef) -> str:
    """The normalized serialization whose hash is the node's version.

    For debugging why two versions differ: diff the two dumps.
    """
    bindings = _GatherBindings()
    bindings.walk(node, None)
    serializer = _TreeSerializer(bindings, skip_methods=isinstance(node, cst.ClassDef))
    if isinstance(node, cst.FunctionDef):
        serializer.function(node, root=True)
    else:
        serializer.klass(node, root=True)
    return serializer.dump()


def version_of_node(
    node: cst.FunctionDef | cst.ClassDef,
    *,
    scope_info: Mapping[cst.CSTNode, object] | None = None,
) -> str:
    """The code version of one function, method or class: 32 lowercase hex chars.

    :param node: a ``FunctionDef`` (sync or async, at any nesting) or ``ClassDef``.
    :param scope_info: not needed and not used: the version depends only on the
        node's own subtree. Accepted so that callers holding ``ScopeProvider``
        metadata can pass it.

    >>> import libcst as cst
    >>> f = cst.parse_module("def f(x):\\n    y = x + 1\\n    return y\\n").body[0]
    >>> g = cst.parse_module("def f(x):  # add one\\n    z = (x+1)\\n    return z\\n")
    >>> version_of_node(f) == version_of_node(g.body[0])
    True
    """
    del scope_info
    data = (_FORMAT_TAG + normalized_dump(node)).encode("utf-8", "surrogatepass")
    # surrogatepass: a lone surrogate in a string literal is legal Python.
    return hashlib.sha256(data).hexdigest()[:32]


def source_of_node(module: cst.Module, node: cst.CSTNode) -> str:
    """The original source text of ``node`` with its decorators, dedented.

    Blank lines and comments above the first decorator (or the ``def``) are not
    part of the node's text and are left out.
    """
    if isinstance(node, (cst.FunctionDef, cst.ClassDef)) and node.leading_lines:
        node = node.with_changes(leading_lines=())
    return textwrap.dedent(module.code_for_node(node))


_NO_DEFS_INSIDE = (cst.BaseExpression, cst.SimpleStatementLine, cst.Decorator)

_VersionedDef = tuple[str, cst.FunctionDef | cst.ClassDef]


class GatherVersionedDefsVisitor(cst.CSTVisitor):
    """Collects every def/class that has a version of its own, with its qualname.

    That is each top-level function and class, each method of those classes, and
    nested classes and their methods (``Outer.Inner.method``). Definitions inside
    module- or class-level ``if``/``try``/``with``/``for``/``while``/``match``
    blocks count as if written at that level. Nothing inside a function is
    collected: it belongs to the function's version.

    State: ``defs`` lists ``(qualname, node)`` in source order (a redefinition
    appears twice; the later one wins in a dict); ``_classes`` is the stack of
    enclosing class names.
    """

    def __init__(self) -> None:
        super().__init__()
        self.defs: list[_VersionedDef] = []
        self._classes: list[str] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        # Only statements hold definitions: skip expressions and simple
        # statements without looking inside.
        if isinstance(node, _NO_DEFS_INSIDE):
            return False
        return super().on_visit(node)

    def _qualname(self, name: str) -> str:
        return ".".join([*self._classes, name])

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self.defs.append((self._qualname(node.name.value), node))
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        self.defs.append((self._qualname(node.name.value), node))
        self._classes.append(node.name.value)
        return True

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self._classes.pop()


def iter_versions_of_parsed(
    module: cst.Module | MetadataWrapper,
) -> Iterator[tuple[str, cst.FunctionDef | cst.ClassDef, str]]:
    """``(qualname, node, version)`` for every versioned def/class, in source order
    (see ``GatherVersionedDefsVisitor`` for which)."""
    if isinstance(module, MetadataWrapper):
        module = module.module
    visitor = GatherVersionedDefsVisitor()
    module.visit(visitor)
    for qualname, node in visitor.defs:
        yield qualname, node, version_of_node(node)


def versions_of_parsed(module: cst.Module | MetadataWrapper) -> dict[cst.CSTNode, str]:
    """Versions of every versioned def/class of an already parsed module.

    Keys are the nodes of ``wrapper.module`` (the ones a transformer run with
    ``wrapper.visit(...)`` sees as ``original_node``). No metadata is resolved.
    """
    return {node: version for _, node, version in iter_versions_of_parsed(module)}


def versions_of_module(source: str) -> dict[str, str]:
    """``{qualname: version}`` for a module's source: top-level functions and
    classes, methods (``Class.method``), nested classes (``Outer.Inner``) and their
    methods. Defs inside module-level ``if``/``try``/``with`` count as top-level;
    when a name is defined twice, the later definition wins.

    :raises libcst.ParserSyntaxError: the source does not parse.
    """
    module = cst.parse_module(source)
    return {
        qualname: version for qualname, _, version in iter_versions_of_parsed(module)
    }


def call_version_of(node: cst.FunctionDef) -> str:
    """The version of an op as its own stored calls see it: parameter defaults are
    left out. Every call's identity already holds its bound argument values, defaults
    included, so changing a default recomputes only the calls that relied on it.
    (Callers of the op depend on its full ``version_of_node``.)"""

    def strip(param: cst.Param) -> cst.Param:
        return param.with_changes(default=None, equal=cst.MaybeSentinel.DEFAULT)

    params = node.params
    stripped = params.with_changes(
        params=[strip(p) for p in params.params],
        kwonly_params=[strip(p) for p in params.kwonly_params],
        posonly_params=[strip(p) for p in params.posonly_params],
    )
    return version_of_node(node.with_changes(params=stripped))
