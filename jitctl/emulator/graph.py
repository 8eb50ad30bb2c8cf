"""Azure Resource Graph's `resources` query, answered from the emulator's state.

The query language is a small, documented subset of KQL (`jitctl.emulator.kql`, EMULATOR.md);
this module runs it. Paging as Azure pages: at most `$top` rows (1,000 at most, 1,000 by
default) a page, a `$skipToken` in the answer when more rows follow (only when `id` is among the
columns, as Azure needs it for a stable order; without it the answer is cut and
`resultTruncated` is "true"). Every answer carries the quota headers; past the quota the answer
is 429 until the window ends.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jitctl.emulator.backend import ArmError, Backend
from jitctl.emulator.kql import GraphQueryError, Query, parse

MAX_TOP = 1000
RESOURCE_GROUP_TYPE = "microsoft.resources/subscriptions/resourcegroups"
SUBSCRIPTION_TYPE = "microsoft.resources/subscriptions"
# A row of an mv-expand or join query: (resource key, element of the expanded array or -1,
# key of the right row joined to it or None)
Handle = tuple[str, int, str | None]


def _row(resource: dict[str, Any], tenant: str) -> dict[str, Any]:
    parts = resource["id"].split("/")
    return {
        "id": resource["id"],
        "name": resource.get("name"),
        "type": resource["type"].lower(),  # Resource Graph writes types lower-case
        "tenantId": tenant,
        "kind": resource.get("kind", ""),
        "location": (resource.get("location") or "").replace(" ", "").lower(),
        "resourceGroup": parts[4].lower() if len(parts) > 4 else "",
        "subscriptionId": parts[2],
        "managedBy": resource.get("managedBy", ""),
        "sku": resource.get("sku"),
        "plan": resource.get("plan"),
        "properties": resource.get("properties", {}),
        "tags": resource.get("tags") or {},
        "identity": resource.get("identity"),
        "zones": resource.get("zones"),
        "extendedLocation": resource.get("extendedLocation"),
    }


def _containers(b: Backend) -> list[dict[str, Any]]:
    out = []
    for sub in b.state["subscriptions"].values():
        out.append(
            {
                "id": sub["id"],
                "name": sub.get("displayName"),
                "type": SUBSCRIPTION_TYPE,
                "tenantId": sub.get("tenantId"),
                "subscriptionId": sub["subscriptionId"],
                "resourceGroup": "",
                "location": "",
                "properties": {
                    "state": sub.get("state"),
                    "subscriptionPolicies": sub.get("subscriptionPolicies"),
                },
                "tags": {},
            }
        )
    for group in b.state["groups"].values():
        parts = group["id"].split("/")
        out.append(
            {
                "id": group["id"],
                "name": group["name"],
                "type": RESOURCE_GROUP_TYPE,
                "subscriptionId": parts[2],
                "resourceGroup": group["name"].lower(),
                "location": group.get("location", ""),
                "properties": group.get("properties", {}),
                "tags": group.get("tags") or {},
            }
        )
    return out


def _token(key: str, offset: int) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return base64.b64encode(json.dumps({"q": digest, "o": offset}).encode()).decode()


def _offset(token: str, key: str) -> int:
    try:
        data = json.loads(base64.b64decode(token.encode(), validate=True))
        if data["q"] == hashlib.sha256(key.encode()).hexdigest()[:16]:
            return int(data["o"])
    except (ValueError, KeyError, TypeError):
        pass
    raise GraphQueryError(
        "InvalidSkipToken",
        "The $skipToken does not belong to this query: send the same query and scopes.",
    )


@dataclass
class Quota:
    """Azure's per-user quota: `limit` queries in a `window` of seconds (default 15 per 5 s)."""

    limit: int = 15
    window: float = 5.0
    started: datetime | None = None
    used: int = 0

    def take(self, now: datetime, limit: int, window: float) -> dict[str, str]:
        self.limit, self.window = limit, window
        if self.started is None or (now - self.started).total_seconds() >= self.window:
            self.started, self.used = now, 0
        left = math.ceil(self.window - (now - self.started).total_seconds())
        resets = f"{left // 3600:02d}:{left % 3600 // 60:02d}:{left % 60:02d}"
        if self.limit and self.used >= self.limit:
            raise ArmError(
                429,
                "RateLimiting",
                "Please provide below info when asking for support: timestamp, correlationId. "
                "The request was throttled: the user quota is used up for this window.",
                {
                    "x-ms-user-quota-remaining": "0",
                    "x-ms-user-quota-resets-after": resets,
                    "Retry-After": str(max(1, left)),
                },
            )
        self.used += 1
        remaining = max(0, self.limit - self.used) if self.limit else 1_000_000
        return {
            "x-ms-user-quota-remaining": str(remaining),
            "x-ms-user-quota-resets-after": resets,
        }


@dataclass
class ResourceGraph:
    """`POST /providers/Microsoft.ResourceGraph/resources` over one backend."""

    backend: Backend
    quota: Quota = field(default_factory=Quota)
    _keys: dict[tuple[Any, ...], list[Any]] = field(default_factory=dict)

    def query(self, body: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, str]]:
        body = body or {}
        text = body.get("query")
        if not isinstance(text, str) or not text.strip():
            raise GraphQueryError("MissingQuery", "The request has no query.")
        q = parse(text)
        options = body.get("options") or {}
        top = int(options.get("$top") or MAX_TOP)
        if not 1 <= top <= MAX_TOP:
            raise GraphQueryError("InvalidTop", f"$top must be 1 to {MAX_TOP}.")
        settings = self.backend.settings
        headers = self.quota.take(
            self.backend.clock.now(), settings.graph_quota, settings.graph_quota_window
        )
        scope = {s.lower() for s in body.get("subscriptions") or ()} or None
        if self.backend.settings.unreadable_subscriptions:  # Azure shows only what RBAC lets read
            every = scope or set(self.backend.state["subscriptions"])
            scope = {s for s in every if self.backend.readable(s)}
        token = options.get("$skipToken")
        found = self._rows(q, scope, fresh=not token)
        total = len(found)
        start = _offset(token, q.key) if token else int(options.get("$skip") or 0)
        out: dict[str, Any] = {
            "totalRecords": total,
            "count": 0,
            "resultTruncated": "false",
            "facets": [],
            "data": self._page(q, found[start : start + top]),
        }
        out["count"] = len(out["data"])
        if start + top < total:
            if q.pageable:
                out["$skipToken"] = _token(q.key, start + top)
            else:
                out["resultTruncated"] = "true"
        return out, headers

    def _tenant(self) -> str:
        subs: list[dict[str, Any]] = list(self.backend.state["subscriptions"].values())
        return subs[0].get("tenantId", "") if subs else ""

    def _page(self, q: Query, part: list[Any]) -> list[dict[str, Any]]:
        """The rows of a page, read now (a resource deleted since the first page is left out)."""
        tenant = self._tenant()
        if q.table == "resourcecontainers":
            return [{c.name: c.value(r) for c in q.columns} for r in part]
        resources = self.backend.state["resources"]
        if q.expand is None and q.join is None:
            read = (_peek(resources, k) for k in part)
            return [
                {c.name: c.value(_row(r, tenant)) for c in q.columns} for r in read if r is not None
            ]
        names = q.join.right_names(q.columns) if q.join is not None else ()
        out = []
        for key, index, right_key in part:
            resource = _peek(resources, key)
            if resource is None:
                continue
            row = _row(resource, tenant)
            if q.expand is not None:
                elements = q.expand.elements(row)
                row[q.expand.name] = elements[index] if index < len(elements) else None
            values = {c.name: c.value(row) for c in q.columns}
            if q.join is not None:
                right = _peek(resources, right_key) if right_key else None
                right_row = _row(right, tenant) if right else {}
                for name, c in zip(names, q.join.right.columns, strict=True):
                    values[name] = c.value(right_row) if right else None
            out.append(values)
        return out

    def _rows(self, q: Query, scope: set[str] | None, fresh: bool) -> list[Any]:
        """The matching rows in id order: for Resources their keys (or handles, for mv-expand
        and join), so that a page reads only its own rows. A query's first page (`fresh`)
        finds them anew; its next pages reuse them while the resources stay as many (Azure's
        pages are not a snapshot either: a row may move between pages when others change)."""
        if q.table == "resourcecontainers":
            found = [
                r
                for r in _containers(self.backend)
                if (q.types is None or r["type"] in q.types)
                and (scope is None or r["subscriptionId"].lower() in scope)
                and all(f.holds(r) for f in q.filters)
            ]
            found.sort(key=lambda r: r["id"].lower(), reverse=q.descending)
            return found[: q.limit] if q.limit is not None else found
        resources = self.backend.state["resources"]
        cache_key = (q.key, None if scope is None else tuple(sorted(scope)), len(resources))
        rows = None if fresh else self._keys.get(cache_key)
        if rows is None:
            rows = self._keys_of(q, scope)
            if q.expand is not None or q.join is not None:
                rows = self._handles(q, rows, scope)
            if len(self._keys) >= 16:
                self._keys.clear()
            self._keys[cache_key] = rows
        return rows[: q.limit] if q.limit is not None else rows

    def _keys_of(self, q: Query, scope: set[str] | None) -> list[str]:
        resources = self.backend.state["resources"]
        keys = sorted((k for k in resources if _matches(k, q.types, scope)), reverse=q.descending)
        if not q.filters:
            return keys
        tenant = self._tenant()
        return [
            k
            for k in keys
            if (r := _peek(resources, k)) is not None
            and all(f.holds(_row(r, tenant)) for f in q.filters)
        ]

    def _handles(self, q: Query, keys: list[str], scope: set[str] | None) -> list[Handle]:
        """Every row of an mv-expand or join query (this reads every resource it names once;
        the pages then read only theirs)."""
        resources = self.backend.state["resources"]
        tenant = self._tenant()
        index: dict[Any, list[str]] = {}
        if q.join is not None:
            on = next(c for c in q.join.right.columns if c.name == q.join.on)
            by_key = on.path == ("id",) and on.lower  # tolower(id) is the state's key itself
            for k in self._keys_of(q.join.right, scope):
                if by_key:
                    index.setdefault(k, []).append(k)
                    continue
                right = _peek(resources, k)
                if right is not None:
                    index.setdefault(on.value(_row(right, tenant)), []).append(k)
        left_on = next((c for c in q.columns if q.join and c.name == q.join.on), None)
        out: list[Handle] = []
        for key in keys:
            resource = _peek(resources, key)
            if resource is None:
                continue
            row = _row(resource, tenant)
            elements = q.expand.elements(row) if q.expand is not None else [None]
            for i, element in enumerate(elements):
                n = i if q.expand is not None else -1
                if q.join is None or left_on is None:
                    out.append((key, n, None))
                    continue
                if q.expand is not None:
                    row[q.expand.name] = element
                matches = index.get(left_on.value(row), [])
                if not matches and q.join.kind == "leftouter":
                    out.append((key, n, None))
                out.extend((key, n, m) for m in matches)
        return out


def _peek(resources: Any, key: str) -> dict[str, Any] | None:
    """A resource, read without marking it read: a query changes nothing, so the state file
    has no row to compare after it (None: deleted since the first page)."""
    stored = getattr(resources, "stored", None)
    if stored is None:
        found: dict[str, Any] | None = resources.get(key)
        return found
    try:
        value, text = stored(key)
    except KeyError:
        return None
    return json.loads(text) if text is not None else value


def _matches(key: str, types: frozenset[str] | None, scope: set[str] | None) -> bool:
    """From the lower-cased id alone (the state's key), so rows are read only for a page."""
    parts = key.split("/")
    if len(parts) < 9:
        return False
    return (types is None or f"{parts[-3]}/{parts[-2]}" in types) and (
        scope is None or parts[2] in scope
    )
