"""Tables of grants for people: policies with their grants (list, show), current grants
(status) and request history (history). JSON comes from the one renderer, unchanged."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from jitctl.cli.shapes import protocol_name, table, when
from jitctl.parsing import format_human_duration


def state_text(g: Any) -> str:
    """A grant's state for people, with Azure's reason when it says more."""
    if g.state == "expired" and (g.status or "").lower() == "initiating":
        return "expired (never applied)"  # Azure never said it was applied
    known = ("active", "initiating", "expired", "superseded", "revoked")
    return g.state + (f" ({g.status_reason})" if g.status_reason and g.state not in known else "")


def policy_list(result: Any, now: datetime) -> str:
    rows = []
    for pol in result.policies:
        for vm in pol.vms:
            for port in vm.ports:
                live = [g for g in vm.grants if g.port == port.number]
                grant = (
                    "; ".join(
                        f"{g.source} {state_text(g)} until {when(g.end_time, now)}" for g in live
                    )
                    or "-"
                )
                rows.append(
                    [
                        pol.resource_group,
                        pol.location,
                        pol.name,
                        vm.name,
                        f"{port.number}/{protocol_name(port.protocol)}",
                        ",".join(port.sources),
                        format_human_duration(port.max_duration),
                        grant,
                    ]
                )
    if not rows:
        return "No JIT policies found."
    return table(rows, ["GROUP", "REGION", "POLICY", "VM", "PORT", "SOURCES", "MAX", "GRANTS"])


def _period(start: datetime | None, end: datetime) -> str:
    """A request's time span in UTC, the end's date left out when it is the start's."""
    fmt = "%Y-%m-%d %H:%M"
    e = end.astimezone(timezone.utc)
    if start is None:
        return f"- to {e:{fmt}}"
    s = start.astimezone(timezone.utc)
    return f"{s:{fmt}}-{e:%H:%M}" if s.date() == e.date() else f"{s:{fmt}} to {e:{fmt}}"


def _where(result: Any) -> tuple[list[str], Callable[[Any], list[str]]]:
    """The subscription and group columns: the subscription only when the grants span several
    (a column with one value is folded above the table)."""
    subs = len({g.subscription_id.lower() for g in result.grants}) > 1
    if subs:
        return ["SUBSCRIPTION", "GROUP"], lambda g: [g.subscription_id, g.resource_group]
    return ["GROUP"], lambda g: [g.resource_group]


def grant_list(result: Any, now: datetime) -> str:
    if not result.grants:
        return "No requests found." if result.history else "No active grants."
    head, where = _where(result)
    if result.history:
        rows = [
            [
                *where(g),
                _period(g.start_time, g.end_time),
                g.vm_name,
                str(g.port),
                g.source,
                state_text(g),
                g.requestor or "-",
                g.justification or "-",
            ]
            for g in result.grants
        ]
        header = ["WHEN (UTC)", "VM", "PORT", "SOURCE", "STATE", "REQUESTOR", "JUSTIFICATION"]
        return table(rows, [*head, *header], aside=("REQUESTOR", "JUSTIFICATION"))
    rows = [
        [
            *where(g),
            g.vm_name,
            str(g.port),
            g.source,
            state_text(g),
            when(g.end_time),
            format_human_duration(g.end_time - now),
        ]
        for g in result.grants
    ]
    return table(rows, [*head, "VM", "PORT", "SOURCE", "STATE", "UNTIL", "LEFT"])
