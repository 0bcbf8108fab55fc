"""Which code versions were declared compatible (``autopersist accept``).

Accepting is transitive: accepting B after A, then C after B, makes A, B and C one
group, so calls that used any of them stay valid under the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterable


class Compatibility:
    """Groups of versions per function, built from ``accepted`` rows."""

    def __init__(self, rows: Iterable[tuple[str, str, str, str | None]]) -> None:
        parents: dict[str, dict[str, str]] = {}
        #: func_id -> new version -> parameters that change added with a default
        self.added: dict[str, dict[str, set[str]]] = {}
        for func_id, old, new, new_params in rows:
            table = parents.setdefault(func_id, {})
            old_root, new_root = _root(table, old), _root(table, new)
            if old_root != new_root:
                table[old_root] = new_root
            if new_params:
                self.added.setdefault(func_id, {}).setdefault(new, set()).update(
                    json.loads(new_params)
                )
        self._groups = {
            func_id: {version: _root(table, version) for version in table}
            for func_id, table in parents.items()
        }

    def same(self, func_id: str, a: str | None, b: str | None) -> bool:
        """Are versions ``a`` and ``b`` of ``func_id`` equal or declared compatible?"""
        if a is None or b is None:
            return False
        if a == b:
            return True
        groups = self._groups.get(func_id)
        return groups is not None and groups.get(a, a) == groups.get(b, b)

    def added_params(self, func_id: str, version: str) -> frozenset[str]:
        return frozenset(self.added.get(func_id, {}).get(version, ()))


def _root(table: dict[str, str], version: str) -> str:
    while table.get(version, version) != version:
        version = table[version]
    return version
