"""The first implementation of ``_analysis``, on libcst's metadata providers.

It defines the facts ``_analysis.gather_entries`` computes: that function falls
back to this one for code its own walk does not model, and the tests compare the
two on real code. It takes about 1.7 s on a 3,000-line module (``ScopeProvider``,
``ParentNodeProvider`` and ``PositionProvider`` each walk the whole module).

``GatherEntriesVisitor`` collects the module's entries; ``_analysis`` says what
entries and their facts are.
"""

from __future__ import annotations

import libcst as cst
from libcst import matchers as m
from libcst.metadata import (
    ExpressionContext,
    ExpressionContextProvider,
    GlobalScope,
    MetadataWrapper,
    ParentNodeProvider,
    PositionProvider,
    ScopeProvider,
)

from autopersist._transform._analysis import (
    _BUILTIN_NAMES,
    Entry,
    _def_line_options,
)


def gather_entries_reference(module: cst.Module) -> list[Entry]:
    """The entries of ``module`` with their facts (``Entry.node`` are its nodes)."""
    # No copy: the entries must hold the nodes of ``module`` itself.
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    gather = GatherEntriesVisitor()
    wrapper.visit(gather)
    return gather.entries


class _OwnScopeVisitor(cst.CSTVisitor):
    """Finds returns-with-value and yields in one function, not in nested scopes."""

    def __init__(self) -> None:
        self.returns_value = False
        self.yields = False

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        return False

    def visit_Return(self, node: cst.Return) -> None:
        if node.value is not None and not m.matches(node.value, m.Name("None")):
            self.returns_value = True

    def visit_Yield(self, node: cst.Yield) -> None:
        self.yields = True


def _scan_own_scope(func: cst.FunctionDef) -> _OwnScopeVisitor:
    scanner = _OwnScopeVisitor()
    func.body.visit(scanner)
    return scanner


class GatherEntriesVisitor(cst.CSTVisitor):
    """Collects the module's entries with the facts the rewriter and runtime need.

    State: ``entries`` in source order; ``_class_stack`` holds the entries of the
    classes being visited; ``_function_depth`` counts enclosing functions (nothing
    inside a function is an entry).
    """

    METADATA_DEPENDENCIES = (
        ScopeProvider,
        ExpressionContextProvider,
        ParentNodeProvider,
        PositionProvider,
    )

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[Entry] = []
        self._class_stack: list[Entry] = []
        self._function_depth = 0

    # -- structure -------------------------------------------------------------

    def _new_entry(self, node: cst.FunctionDef | cst.ClassDef, kind: str) -> Entry:
        position = self.get_metadata(PositionProvider, node)
        name = node.name.value
        qualname = (
            f"{self._class_stack[-1].qualname}.{name}" if self._class_stack else name
        )
        entry = Entry(
            index=len(self.entries),
            qualname=qualname,
            kind=kind,
            node=node,
            parent=self._class_stack[-1].index if self._class_stack else -1,
            # The source shown for a version includes the decorators.
            first_line=(
                self.get_metadata(PositionProvider, node.decorators[0]).start.line
                if node.decorators
                else position.start.line
            ),
            last_line=position.end.line,
        )
        self.entries.append(entry)
        return entry

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        if self._function_depth:
            return True
        entry = self._new_entry(node, "class")
        self._class_stack.append(entry)
        return True

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        if not self._function_depth:
            self._class_stack.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        if self._function_depth:
            self._function_depth += 1
            return True
        kind = "method" if self._class_stack else "function"
        entry = self._new_entry(node, kind)
        entry.options = _def_line_options(node)
        entry.global_reads, entry.writes_globals = self._global_access(node)
        if kind == "function":
            entry.not_op_reason = self._not_op_reason(node, entry.options)
            entry.is_op = not entry.not_op_reason
        self._function_depth += 1
        return True

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self._function_depth -= 1

    # -- facts -------------------------------------------------------------------

    def _not_op_reason(self, node: cst.FunctionDef, options: dict[str, object]) -> str:
        parent = self.get_metadata(ParentNodeProvider, node)
        if not isinstance(parent, cst.Module):
            return "defined inside a module-level block"
        if options.get("skip"):
            return "'# persist: skip'"
        if node.asynchronous is not None:
            return "async function"
        if node.name.value == "main":
            return "entry point 'main'"
        own = _scan_own_scope(node)
        if own.yields:
            return "generator"
        if not own.returns_value:
            return "never returns a value"
        return ""

    def _global_access(
        self, func: cst.FunctionDef
    ) -> tuple[tuple[tuple[str, ...], ...], bool]:
        """Globals ``func`` (with its nested scopes) may read, and whether it writes one."""
        inside = _NodesInside()
        func.visit(inside)
        scopes = set()
        for name in inside.names:
            scope = self.get_metadata(ScopeProvider, name, None)
            # Decorators and defaults are evaluated in the enclosing scope: skip it.
            if scope is not None and id(getattr(scope, "node", None)) in inside.ids:
                scopes.add(scope)
        reads: set[tuple[str, ...]] = set()
        writes = False
        for scope in scopes:
            for access in scope.accesses:
                if not isinstance(access.node, cst.Name):
                    continue  # string annotations and dotted imports
                referents = access.referents
                if referents:
                    if not any(isinstance(a.scope, GlobalScope) for a in referents):
                        continue
                elif access.node.value in _BUILTIN_NAMES:
                    continue
                chain, stored = self._attribute_chain(access.node)
                reads.add(chain)
                writes = writes or stored
        if inside.global_names:
            for name in inside.names:
                if name.value in inside.global_names and self.get_metadata(
                    ExpressionContextProvider, name, None
                ) in (ExpressionContext.STORE, ExpressionContext.DEL):
                    writes = True
                    break
        return tuple(sorted(reads)), writes

    def _attribute_chain(self, name: cst.Name) -> tuple[tuple[str, ...], bool]:
        """``lib.FACTOR`` read from ``name`` (up to three parts) and whether the
        outermost attribute or subscript of that expression is a store or delete."""
        chain = [name.value]
        node: cst.CSTNode = name
        parent = self.get_metadata(ParentNodeProvider, node, None)
        while (
            isinstance(parent, cst.Attribute)
            and parent.value is node
            and len(chain) < 3
        ):
            chain.append(parent.attr.value)
            node = parent
            parent = self.get_metadata(ParentNodeProvider, node, None)
        # Walk to the end of the attribute/subscript chain: "X.a[k] = v" stores into X.
        outer = node
        while (
            isinstance(parent, (cst.Attribute, cst.Subscript)) and parent.value is outer
        ):
            outer = parent
            parent = self.get_metadata(ParentNodeProvider, outer, None)
        stored = False
        if outer is not name:
            context = self.get_metadata(ExpressionContextProvider, outer, None)
            stored = context in (ExpressionContext.STORE, ExpressionContext.DEL)
            if isinstance(parent, cst.AugAssign) and parent.target is outer:
                stored = True
        return tuple(chain), stored


class _NodesInside(cst.CSTVisitor):
    """Ids of every node under a function, its ``Name`` nodes, and its ``global`` names."""

    def __init__(self) -> None:
        self.ids: set[int] = set()
        self.names: list[cst.Name] = []
        self.global_names: set[str] = set()

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.ids.add(id(node))
        if isinstance(node, cst.Name):
            self.names.append(node)
        elif isinstance(node, cst.Global):
            self.global_names.update(item.name.value for item in node.names)
        return True
