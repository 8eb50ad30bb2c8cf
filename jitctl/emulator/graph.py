"""Azure Resource Graph's `resources` query, answered from the emulator's state.

A small, documented subset of KQL (EMULATOR.md): the query shapes a fleet reader sends, not a
KQL engine. Written for the emulator alone: it shares nothing with the product code it serves.

    Resources | where type =~ 'microsoft.compute/virtualmachines' | project id, name, properties
    Resources | where type in~ ('microsoft.network/networkinterfaces', '...') | order by id asc
    ResourceContainers | where type =~ 'microsoft.resources/subscriptions' | project id, name

Paging as Azure pages: at most `$top` rows (1,000 at most, 1,000 by default) a page, a
`$skipToken` in the answer when more rows follow (only when `id` is among the columns, as Azure
needs it for a stable order; without it the answer is cut and `resultTruncated` is "true").
Every answer carries the quota headers; past the quota the answer is 429 until the window ends.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jitctl.emulator.backend import ArmError, Backend

MAX_TOP = 1000
RESOURCE_GROUP_TYPE = "microsoft.resources/subscriptions/resourcegroups"
SUBSCRIPTION_TYPE = "microsoft.resources/subscriptions"
COLUMNS = (
    "id",
    "name",
    "type",
    "tenantId",
    "kind",
    "location",
    "resourceGroup",
    "subscriptionId",
    "managedBy",
    "sku",
    "plan",
    "properties",
    "tags",
    "identity",
    "zones",
    "extendedLocation",
)

_WHERE_EQ = re.compile(r"^where\s+type\s*(=~|==)\s*'([^']*)'$", re.IGNORECASE)
_WHERE_IN = re.compile(r"^where\s+type\s+in~?\s*\(([^)]*)\)$", re.IGNORECASE)
_PROJECT = re.compile(r"^project\s+(.+)$", re.IGNORECASE)
_ORDER = re.compile(r"^(?:order|sort)\s+by\s+id(?:\s+(asc|desc))?$", re.IGNORECASE)
_LIMIT = re.compile(r"^(?:limit|take)\s+(\d+)$", re.IGNORECASE)
_LITERAL = re.compile(r"^\s*'([^']*)'\s*$")
Column = tuple[str, tuple[str, ...], bool]  # name, path from a row's column, tostring()


class GraphQueryError(ArmError):
    """Azure's answer to a query it cannot run: 400 BadRequest, with the reason in details."""

    def __init__(self, detail_code: str, detail: str) -> None:
        super().__init__(
            400,
            "BadRequest",
            "Please provide below info when asking for support: timestamp, correlationId.",
        )
        self.detail_code = detail_code
        self.detail = detail

    def body(self) -> dict[str, Any]:
        out = super().body()
        out["error"]["details"] = [
            {
                "code": "InvalidQuery",
                "message": "Query is invalid. Please refer to the documentation for the Azure "
                "Resource Graph service and fix the error before retrying.",
            },
            {"code": self.detail_code, "message": self.detail},
        ]
        return out


@dataclass(frozen=True)
class Query:
    table: str  # "resources" | "resourcecontainers"
    types: frozenset[str] | None  # lower-cased; None: every type
    columns: tuple[Column, ...]
    descending: bool = False
    limit: int | None = None

    @property
    def key(self) -> str:
        """What a skip token is bound to: the same query on the same scope."""
        return repr((self.table, sorted(self.types or ()), self.columns, self.descending))


_PATH = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_ALIAS = re.compile(rf"^([A-Za-z_]\w*)\s*=\s*(?:({_PATH})|tostring\(\s*({_PATH})\s*\))$")


def _column(text: str) -> Column:
    """`name` (a row's column), `alias = column.field.field` (a path into it), or
    `alias = tostring(column.field)` (that value as JSON text, as KQL writes a dynamic)."""
    text = text.strip()
    m = _ALIAS.match(text)
    if m:
        name, path, as_text = m.group(1), m.group(2) or m.group(3), m.group(3) is not None
    else:
        name, path, as_text = text, text, False
    parts = tuple(path.split("."))
    if parts[0] not in COLUMNS or (not m and not re.fullmatch(r"\w+", text)):
        raise GraphQueryError(
            "UnsupportedProjection", f"Column '{text}' is not supported by the emulator."
        )
    return name, parts, as_text


def _value(row: dict[str, Any], column: Column) -> Any:
    value: Any = row
    for key in column[1]:
        value = value.get(key) if isinstance(value, dict) else None
    if column[2]:  # tostring(): a string stays itself, null is "", the rest JSON
        return "" if value is None else value if isinstance(value, str) else json.dumps(value)
    return value


def parse(text: str) -> Query:
    """The supported subset, or GraphQueryError naming the part it does not support."""
    stages = [s.strip() for s in text.strip().split("|")]
    table = stages[0].lower()
    if table not in ("resources", "resourcecontainers"):
        raise GraphQueryError(
            "UnsupportedTable",
            f"Table '{stages[0]}' is not supported by the emulator: use Resources or "
            "ResourceContainers.",
        )
    types: set[str] | None = None
    columns: tuple[Column, ...] = tuple((c, (c,), False) for c in COLUMNS)
    descending = False
    limit = None
    for stage in stages[1:]:
        if m := _WHERE_EQ.match(stage):
            wanted = {m.group(2).lower()}
        elif m := _WHERE_IN.match(stage):
            wanted = set()
            for item in m.group(1).split(","):
                lit = _LITERAL.match(item)
                if lit is None:
                    raise GraphQueryError("ParserFailure", f"Not a string literal: {item.strip()}")
                wanted.add(lit.group(1).lower())
        elif m := _PROJECT.match(stage):
            columns = tuple(_column(c) for c in m.group(1).split(","))
            continue
        elif m := _ORDER.match(stage):
            descending = (m.group(1) or "asc").lower() == "desc"
            continue
        elif m := _LIMIT.match(stage):
            limit = int(m.group(1))
            continue
        else:
            raise GraphQueryError(
                "UnsupportedOperator",
                f"The emulator does not support '{stage}' (see EMULATOR.md, Resource Graph).",
            )
        types = wanted if types is None else types & wanted
    return Query(table, frozenset(types) if types is not None else None, columns, descending, limit)


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
    _keys: dict[tuple[Any, ...], list[str]] = field(default_factory=dict)

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
        found = self._rows(q, body.get("subscriptions"))
        total = len(found)
        token = options.get("$skipToken")
        start = _offset(token, q.key) if token else int(options.get("$skip") or 0)
        subs: list[dict[str, Any]] = list(self.backend.state["subscriptions"].values())
        tenant = subs[0].get("tenantId", "") if subs else ""
        resources = self.backend.state["resources"]
        if q.table == "resourcecontainers":
            page = found[start : start + top]
        else:
            read = (_peek(resources, k) for k in found[start : start + top])
            page = [_row(r, tenant) for r in read if r is not None]  # None: deleted since
        out: dict[str, Any] = {
            "totalRecords": total,
            "count": len(page),
            "resultTruncated": "false",
            "facets": [],
            "data": [{c[0]: _value(r, c) for c in q.columns} for r in page],
        }
        if start + top < total:
            if ("id", ("id",), False) in q.columns:
                out["$skipToken"] = _token(q.key, start + top)
            else:
                out["resultTruncated"] = "true"
        return out, headers

    def _rows(self, q: Query, subscriptions: list[str] | None) -> list[Any]:
        """The matching rows in id order; for Resources their keys (a page reads its rows)."""
        b = self.backend
        scope = {s.lower() for s in subscriptions} if subscriptions else None
        if q.table == "resourcecontainers":
            found = [
                r
                for r in _containers(b)
                if (q.types is None or r["type"] in q.types)
                and (scope is None or r["subscriptionId"].lower() in scope)
            ]
            found.sort(key=lambda r: r["id"].lower(), reverse=q.descending)
            return found[: q.limit] if q.limit is not None else found
        resources = b.state["resources"]
        # The next pages of a query reuse its ids while the resources stay as many (Azure's
        # pages are not a snapshot either: a row may move between pages when others change).
        cache_key = (q.key, tuple(sorted(scope or ())), len(resources))
        keys = self._keys.get(cache_key)
        if keys is None:
            keys = sorted(
                (k for k in resources if _matches(k, q.types, scope)), reverse=q.descending
            )
            if len(self._keys) >= 16:
                self._keys.clear()
            self._keys[cache_key] = keys
        return keys[: q.limit] if q.limit is not None else keys


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
