"""What every renderer builds on: a result's JSON shape and a table's cells.

Below render.py and reports.py alike, so that the one renderer can hand an audit to its report
formats without the two importing each other.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime, timedelta, timezone
from typing import Any

from jitctl.parsing import format_human_duration, format_iso_duration
from jitctl.textsafe import printable

# Fields left out of the JSON (Azure's XOR pair is shown as `sources`; the plan's working data).
JSON_SKIP = {
    "PortRule": ("allowed_source_address_prefix", "allowed_source_address_prefixes"),
    "PolicyPlan": ("desired",),
    "Check": ("suggested",),  # written into the hint, with the global options in force
}


@functools.cache
def _names(cls: type) -> tuple[str, ...]:
    """A dataclass's JSON keys: its fields (less JSON_SKIP's), then its public properties."""
    skip = JSON_SKIP.get(cls.__name__, ())
    fields = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    properties = [
        name
        for klass in reversed(cls.__mro__)
        for name, value in vars(klass).items()
        if isinstance(value, property) and not name.startswith("_")
    ]
    return (*fields, *properties)


def jsonable(obj: Any, now: datetime | None = None) -> Any:
    """JSON-shaped data: a dataclass's fields, then its derived properties (`ok`, `vm_name`...),
    then `seconds_left` for anything with an end time; times ISO 8601 UTC to the second,
    durations ISO 8601, protocols as typed (tcp, udp, any)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {n: jsonable(getattr(obj, n), now) for n in _names(type(obj))}
        if isinstance(out.get("protocol"), str):
            out["protocol"] = protocol_name(out["protocol"])
        end = getattr(obj, "end_time", None)
        if now is not None and isinstance(end, datetime):
            out["seconds_left"] = max(0, int((end - now).total_seconds()))
        return out
    if isinstance(obj, datetime):
        utc = obj.astimezone(timezone.utc).replace(microsecond=0)
        return utc.isoformat().replace("+00:00", "Z")
    if isinstance(obj, timedelta):
        return format_iso_duration(obj)
    if isinstance(obj, (list, tuple)):
        return [jsonable(x, now) for x in obj]
    if isinstance(obj, dict):
        return {str(k): jsonable(v, now) for k, v in obj.items()}
    return obj


def table(
    rows: list[list[str]], header: list[str], limit: int | None = None, aside: tuple[str, ...] = ()
) -> str:
    """Rows for people: escaped, fitted to `limit` columns (default: the width), context
    columns folded, `aside` columns under each row when the table is too narrow for them
    (cli/tables.py)."""
    from jitctl.cli.tables import layout

    return layout([[printable(c) for c in r] for r in rows], header, limit, aside)


def protocol_name(p: str) -> str:
    """One spelling everywhere: tcp, udp, any (Azure writes TCP, Tcp or *)."""
    return {"*": "any"}.get(p, p.lower())


def when(t: datetime | None, now: datetime | None = None) -> str:
    if t is None:
        return "-"
    text = t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if now is not None:
        left = t - now
        text += f" ({format_human_duration(left)} left)" if left.total_seconds() > 0 else " (ended)"
    return text
