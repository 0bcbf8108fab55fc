"""Provenance within one run: which call produced a value that a later call
takes as input (the store's ``call_links`` rows). Whole outputs are matched by
content, but numbers, strings, bytes and empty containers by object identity, as
are elements of list, tuple and dict outputs."""

from __future__ import annotations

import weakref
from typing import Any


class Provenance:
    """Which call produced a value seen as an input, within this run.

    Whole outputs are matched by content (their value id): a copy of an earlier
    output (``g(list(xs))``) still links to the call that returned it. Not numbers,
    strings and bytes: two equal ones are more often a coincidence (``inc(i)`` in
    a loop over ``range`` takes what the previous ``inc`` returned) than one value
    passed along, which is the very object the call returned; so they are matched
    by identity, and so are empty containers (``[]`` returned by one call and
    written as a literal for another). Values Python shares between unrelated
    places (None, booleans, small ints, one-character strings) are not matched at
    all: one object stands for every equal value. Elements of list, tuple and dict
    outputs are matched by identity too, checked against a weak reference (or, for
    objects without weak references, a strong one kept in a bounded table).
    """

    LIMIT = 100_000
    ELEMENTS = 1_000

    def __init__(self) -> None:
        self._outputs: dict[str, str] = {}  # value_id -> call_id
        self._elements: dict[int, tuple[Any, str, str]] = {}  # id -> (ref, call, path)

    def produced(self, call_id: str, result: object, output_id: str) -> None:
        if _is_shared(result):
            return  # one object for every equal value: nothing tells where it came from
        if type(result) in _SCALARS or _is_empty(result):
            # Matched by identity only, held (bounded) in the table of elements:
            # numbers, strings, lists and dicts take no weak references.
            if len(self._elements) > self.LIMIT:
                self._elements.clear()
            self._elements[id(result)] = (result, call_id, "")
            return
        if len(self._outputs) > self.LIMIT:
            self._outputs.clear()
        self._outputs[output_id] = call_id
        # The output object itself too: a list built from several outputs (e.g.
        # ensemble([model(k) for k in ks])) is linked element by element.
        for path, element in [("", result), *_elements(result, self.ELEMENTS)]:
            if _is_shared(element):
                continue  # cached small ints, None, booleans: identity says nothing
            if path:
                known = self._element_source(element)
                if known is not None and not known[1]:
                    # The call that returned this object whole made it; this one
                    # only packs it (``outer`` returning ``[inner(a), inner(b)]``).
                    continue
            if len(self._elements) > self.LIMIT:
                self._elements.clear()
            try:
                ref: Any = weakref.ref(element)
            except TypeError:
                ref = element
            self._elements[id(element)] = (ref, call_id, path)

    def _element_source(self, value: object) -> tuple[str, str] | None:
        found = self._elements.get(id(value))
        if found is None:
            return None
        ref, call_id, path = found
        target = ref() if isinstance(ref, weakref.ref) else ref
        return (call_id, path) if target is value else None

    def links(
        self, call_id: str, bound: list[tuple[str, Any]], hashes: dict[str, str]
    ) -> list[tuple[str, str, str, str, str]]:
        """``call_links`` rows for the inputs of ``call_id``."""
        rows: list[tuple[str, str, str, str, str]] = []
        for name, value in bound:
            source = self._outputs.get(hashes.get(name, ""))
            if source is not None and source != call_id:
                rows.append((call_id, name, "", source, ""))
                continue
            element = self._element_source(value)
            if element is not None:
                rows.append((call_id, name, "", element[0], element[1]))
                continue
            if type(value) in _SCALARS:
                continue  # no elements (``_elements``): the commonest inputs
            for path, item in _elements(value, self.ELEMENTS):
                element = self._element_source(item)
                if element is not None:
                    rows.append((call_id, name, path, element[0], element[1]))
        return rows


#: Output types without elements that cannot be weakly referenced.
_SCALARS = frozenset({int, float, complex, str, bytes})
_CONTAINERS = frozenset({list, tuple, dict, set, frozenset})


def _is_empty(value: object) -> bool:
    return type(value) in _CONTAINERS and not value


def _is_shared(value: object) -> bool:
    """Objects the interpreter shares between unrelated places (None, booleans,
    cached small ints, one-character strings): never linked by identity."""
    kind = type(value)
    if value is None or kind is bool:
        return True
    if kind is int:
        return -5 <= value <= 256  # type: ignore[operator]
    return kind in (str, bytes) and len(value) <= 1  # type: ignore[arg-type]


def _elements(value: object, limit: int) -> list[tuple[str, object]]:
    """First-level elements of a list, tuple or dict with their paths (``[0]``)."""
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        return [(f"[{i}]", item) for i, item in enumerate(value[:limit])]
    if isinstance(value, dict) and type(value) is dict:
        return [(f"[{key!r}]", item) for key, item in list(value.items())[:limit]]
    return []
