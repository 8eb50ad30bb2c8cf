"""Rows: the emulator's resources (and JIT entries) by lower-cased id, indexed by scope and type.

A list answers in time proportional to its page: the ids of each (subscription or resource
group, type) are kept in insertion order, and a page decodes only its own items. Rows read from
the state file stay JSON text until something reads them, and the rows read since the last
`take_touched()` are the only ones a request can have changed (jitctl.emulator.store).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any, overload

_UNREAD = object()  # the value is still the JSON text in Rows._text


def scopes_of(key: str) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """(subscription scope, type) and (resource group scope, type) of a lower-cased id."""
    parts = key.split("/")
    if len(parts) < 9 or parts[1] != "subscriptions" or parts[3] != "resourcegroups":
        return None
    kind = parts[-2]
    return ("/".join(parts[:3]), kind), ("/".join(parts[:5]), kind)


class Rows(MutableMapping[str, Any]):
    """A dict of JSON values by lower-cased resource id, with an index by (scope, type)."""

    def __init__(self, items: Any = ()) -> None:
        self._data: dict[str, Any] = {}
        self._text: dict[str, str] = {}  # key -> JSON text, for the values still _UNREAD
        self._index: dict[tuple[str, str], dict[str, None]] | None = None  # built when asked
        self.touched: set[str] = set()
        self.update(items)

    # --- the mapping ---------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        if value is _UNREAD:
            value = self._data[key] = json.loads(self._text.pop(key))
        self.touched.add(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self._data:
            self._add_to_index(key)
        self._data[key] = value
        self._text.pop(key, None)
        self.touched.add(key)

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._text.pop(key, None)
        for scope in scopes_of(key) or ():
            if self._index is not None:
                self._index.get(scope, {}).pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return f"Rows({len(self)} rows)"

    def __deepcopy__(self, memo: dict[int, Any]) -> Rows:
        import copy

        return Rows((k, copy.deepcopy(self[k], memo)) for k in self._data)

    # --- text rows, the index ------------------------------------------------------------

    def set_text(self, key: str, text: str) -> None:
        """Hold `text` (JSON) for `key`, decoded when first read."""
        if key not in self._data:
            self._add_to_index(key)
        self._data[key] = _UNREAD
        self._text[key] = text
        self.touched.discard(key)

    def stored(self, key: str) -> tuple[Any, str | None]:
        """(value, its JSON text when still undecoded) of `key`, without marking it read."""
        value = self._data[key]
        return (None, self._text[key]) if value is _UNREAD else (value, None)

    def unread(self) -> int:
        """How many values are still JSON text."""
        return len(self._text)

    def key_set(self) -> Any:
        """A set-like view of the keys (fast set operations)."""
        return self._data.keys()

    def take_touched(self) -> set[str]:
        """The keys read or written since the last call (only those can have changed)."""
        touched, self.touched = self.touched, set()
        return touched

    def _add_to_index(self, key: str) -> None:
        if self._index is not None:
            for scope in scopes_of(key) or ():
                self._index.setdefault(scope, {})[key] = None

    def keys_of(self, scope: str, kind: str) -> list[str]:
        """Ids of type `kind` (lower case, e.g. 'virtualmachines') under a subscription or
        resource group id, in insertion order."""
        if self._index is None:
            self._index = {}
            for key in self._data:
                self._add_to_index(key)
        return list(self._index.get((scope.lower().rstrip("/"), kind.lower()), ()))

    def listing(self, scope: str, kind: str) -> Listing:
        return Listing(self, self.keys_of(scope, kind))


class Listing(Sequence[Any]):
    """The rows of one (scope, type), decoded only as far as they are read (a page)."""

    def __init__(self, rows: Rows, keys: list[str]) -> None:
        self.rows = rows
        self.keys = keys

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, i: int) -> Any: ...

    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self.rows[k] for k in self.keys[i]]
        return self.rows[self.keys[i]]

    def __iter__(self) -> Iterator[Any]:
        return (self.rows[k] for k in self.keys)
