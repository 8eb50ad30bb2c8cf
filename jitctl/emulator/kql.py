"""The subset of KQL that the emulator's Resource Graph runs (EMULATOR.md, Resource Graph).

A parser for the query shapes a fleet reader sends, not a KQL engine; written for the emulator
alone (it shares nothing with the product code it serves):

    Resources | where type =~ 'T' | project id, name, nics = tostring(properties.x.y)
    Resources | where type in~ ('T1', 'T2') | order by id asc | limit 10
    Resources | where type =~ 'T' | mv-expand nic = properties.networkProfile.networkInterfaces
        | project id, nicId = tolower(tostring(nic.id))
        | join kind=leftouter (Resources | where type =~ 'U' | project nicId = tolower(id)) on nicId
    ResourceContainers | where type =~ 'microsoft.resources/subscriptions' | project id, name
    Resources | where type =~ 'T' | where properties.ipAddress == '20.61.17.4' | project id
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jitctl.emulator.backend import ArmError

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
JOIN_KINDS = ("leftouter", "inner")

_WHERE_EQ = re.compile(r"^where\s+type\s*(=~|==)\s*'([^']*)'$", re.IGNORECASE)
_WHERE_IN = re.compile(r"^where\s+type\s+in~?\s*\(([^)]*)\)$", re.IGNORECASE)
_PROJECT = re.compile(r"^project\s+(.+)$", re.IGNORECASE | re.DOTALL)
_ORDER = re.compile(r"^(?:order|sort)\s+by\s+id(?:\s+(asc|desc))?$", re.IGNORECASE)
_LIMIT = re.compile(r"^(?:limit|take)\s+(\d+)$", re.IGNORECASE)
_LITERAL = re.compile(r"^\s*'([^']*)'\s*$")
_PATH = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_WHERE_FIELD = re.compile(rf"^where\s+({_PATH})\s*(=~|==)\s*'([^']*)'$", re.IGNORECASE)
_EXPAND = re.compile(rf"^mv-expand\s+([A-Za-z_]\w*)\s*=\s*({_PATH})$", re.IGNORECASE)
_JOIN = re.compile(
    r"^join\s+kind\s*=\s*(\w+)\s*\((.*)\)\s*on\s+([A-Za-z_]\w*)$", re.IGNORECASE | re.DOTALL
)
# name | alias = path | alias = f(path) | alias = tolower(tostring(path)), f: tostring, tolower
_ALIAS = re.compile(
    rf"^([A-Za-z_]\w*)\s*=\s*(?:(tolower|tostring)\s*\(\s*(?:(tostring)\s*\(\s*({_PATH})\s*\)"
    rf"|({_PATH}))\s*\)|({_PATH}))$",
    re.IGNORECASE,
)


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


def unsupported(stage: str) -> GraphQueryError:
    return GraphQueryError(
        "UnsupportedOperator",
        f"The emulator does not support '{stage}' (see EMULATOR.md, Resource Graph).",
    )


@dataclass(frozen=True)
class Column:
    """An output column: `path` into the row, then tostring() and tolower() as asked."""

    name: str
    path: tuple[str, ...]
    text: bool = False
    lower: bool = False

    def value(self, row: dict[str, Any]) -> Any:
        value: Any = row
        for key in self.path:
            value = value.get(key) if isinstance(value, dict) else None
        if self.text or self.lower:  # a string stays itself, null is "", the rest JSON
            value = "" if value is None else value if isinstance(value, str) else json.dumps(value)
        return value.lower() if self.lower else value

    @property
    def is_id(self) -> bool:
        return self.name == "id" and self.path == ("id",) and not self.lower


ALL = tuple(Column(c, (c,)) for c in COLUMNS)


@dataclass(frozen=True)
class Filter:
    """`where path == 'text'` (`=~`: letter case aside), the value read as tostring() reads it."""

    path: tuple[str, ...]
    text: str
    any_case: bool

    def holds(self, row: dict[str, Any]) -> bool:
        value = Column("", self.path, text=True).value(row)
        return value.lower() == self.text.lower() if self.any_case else value == self.text


@dataclass(frozen=True)
class Expand:
    """`mv-expand name = path`: a row per element (null: one row; an empty array: none)."""

    name: str
    path: tuple[str, ...]

    def elements(self, row: dict[str, Any]) -> list[Any]:
        value: Any = row
        for key in self.path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return [None]
        return list(value) if isinstance(value, list) else [value]


@dataclass(frozen=True)
class Join:
    """`join kind=K (right) on name`: each row with every right row of the same `name` value
    (leftouter keeps a row without one, its right columns null; inner drops it)."""

    kind: str
    right: Query
    on: str

    def right_names(self, left: tuple[Column, ...]) -> tuple[str, ...]:
        """KQL's output names: a right column named like a left one gets a suffix (on1)."""
        taken = {c.name for c in left}
        out = []
        for c in self.right.columns:
            name, n = c.name, 1
            while name in taken:
                name, n = f"{c.name}{n}", n + 1
            taken.add(name)
            out.append(name)
        return tuple(out)


@dataclass(frozen=True)
class Query:
    table: str  # "resources" | "resourcecontainers"
    types: frozenset[str] | None  # lower-cased; None: every type
    columns: tuple[Column, ...] = ALL
    descending: bool = False
    limit: int | None = None
    expand: Expand | None = None
    join: Join | None = None
    filters: tuple[Filter, ...] = ()

    @property
    def key(self) -> str:
        """What a skip token is bound to: the same query (its order and shape)."""
        return repr((self.table, sorted(self.types or ()), self.columns, self.descending)) + repr(
            (self.expand, self.join, self.filters)
        )

    @property
    def pageable(self) -> bool:
        return any(c.is_id for c in self.columns)


def stages(text: str) -> list[str]:
    """The `|` stages of a query, a join's parenthesised query kept whole."""
    out, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    out.append(text[start:].strip())
    return out


def _column(text: str, known: tuple[str, ...]) -> Column:
    text = " ".join(text.split())
    m = _ALIAS.match(text)
    if m:
        fn = (m.group(2) or "").lower()
        path = m.group(4) or m.group(5) or m.group(6)
        inner_text = m.group(3) is not None
        column = Column(
            m.group(1),
            tuple(path.split(".")),
            text=fn == "tostring" or inner_text,
            lower=fn == "tolower",
        )
    elif re.fullmatch(r"\w+", text):
        column = Column(text, (text,))
    else:
        column = None
    if column is None or column.path[0] not in known:
        raise GraphQueryError(
            "UnsupportedProjection", f"Column '{text}' is not supported by the emulator."
        )
    return column


def _types(wanted: set[str], types: set[str] | None) -> set[str]:
    return wanted if types is None else types & wanted


def parse(text: str) -> Query:
    """The supported subset, or GraphQueryError naming the part it does not support."""
    parts = stages(text.strip())
    table = parts[0].lower()
    if table not in ("resources", "resourcecontainers"):
        raise GraphQueryError(
            "UnsupportedTable",
            f"Table '{parts[0]}' is not supported by the emulator: use Resources or "
            "ResourceContainers.",
        )
    types: set[str] | None = None
    fields: dict[str, Any] = {}
    known: tuple[str, ...] = COLUMNS
    for stage in parts[1:]:
        if m := _WHERE_EQ.match(stage):
            if "expand" in fields or "columns" in fields:
                raise unsupported(stage)  # only the first stages filter
            types = _types({m.group(2).lower()}, types)
        elif m := _WHERE_IN.match(stage):
            if "expand" in fields or "columns" in fields:
                raise unsupported(stage)
            wanted = set()
            for item in m.group(1).split(","):
                lit = _LITERAL.match(item)
                if lit is None:
                    raise GraphQueryError("ParserFailure", f"Not a string literal: {item.strip()}")
                wanted.add(lit.group(1).lower())
            types = _types(wanted, types)
        elif m := _WHERE_FIELD.match(stage):
            path = tuple(m.group(1).split("."))
            if "expand" in fields or "columns" in fields or path[0] not in COLUMNS:
                raise unsupported(stage)
            found = Filter(path, m.group(3), m.group(2) == "=~")
            fields["filters"] = (*fields.get("filters", ()), found)
        elif (m := _EXPAND.match(stage)) and table == "resources":
            if "expand" in fields or "columns" in fields:
                raise unsupported(stage)  # one mv-expand, before the projection
            fields["expand"] = Expand(m.group(1), tuple(m.group(2).split(".")))
            known = (*COLUMNS, m.group(1))
        elif m := _PROJECT.match(stage):
            if "join" in fields or "columns" in fields:
                raise unsupported(stage)
            fields["columns"] = tuple(_column(c, known) for c in m.group(1).split(","))
        elif (m := _JOIN.match(stage)) and table == "resources":
            fields["join"] = _join(stage, m, fields.get("columns", ALL))
        elif m := _ORDER.match(stage):
            fields["descending"] = (m.group(1) or "asc").lower() == "desc"
        elif m := _LIMIT.match(stage):
            fields["limit"] = int(m.group(1))
        else:
            raise unsupported(stage)
    return Query(table, frozenset(types) if types is not None else None, **fields)


def _join(stage: str, m: re.Match[str], left: tuple[Column, ...]) -> Join:
    kind = m.group(1).lower()
    if kind not in JOIN_KINDS:
        raise GraphQueryError(
            "UnsupportedJoinFlavor", f'The join kind "{m.group(1)}" is not supported.'
        )
    right = parse(m.group(2))
    if right.table != "resources" or right.join or right.expand:
        raise unsupported(stage)
    on = m.group(3)
    if on not in {c.name for c in left} or on not in {c.name for c in right.columns}:
        raise GraphQueryError(
            "UnsupportedProjection", f"Both sides of the join must have the column '{on}'."
        )
    return Join(kind, right, on)
