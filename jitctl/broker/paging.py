"""Pages of requests, newest first, for the web pages and the JSON API alike: one scan that reads
the store's index in batches until a page of what the caller may see is full, and a cursor
that says where the next page starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from jitctl.broker.lifecycle import Role, State
from jitctl.broker.records import RequestRecord
from jitctl.broker.rules import Principal
from jitctl.broker.views import Access
from jitctl.errors import BadInput
from jitctl.textsafe import printable

BATCH = 500  # at most this many rows read at a time, looking for a page the person may see


class Lister(Protocol):
    """What a scan reads (jitctl.broker.store.Store.list_requests)."""

    def list_requests(
        self,
        *,
        states: Sequence[State] = ...,
        requester: str | None = ...,
        requester_oid: str | None = ...,
        limit: int = ...,
        until: datetime | None = ...,
        offset: int = ...,
    ) -> list[RequestRecord]: ...


@dataclass(frozen=True)
class Page:
    rows: list[RequestRecord]
    older: str | None  # the cursor of the next page; None: no more


def scope_page(
    lister: Lister, access: Access, who: Principal, scope: str, size: int, cursor: str | None
) -> Page:
    """A page of a scope: mine; pending ones `who` may decide (never their own); all they may
    see (admins and auditors: every one)."""
    if scope == "mine":
        return scan(lister, lambda _: True, size, cursor, requester=who.upn, oid=who.oid)
    if scope == "pending":

        def to_decide(rec: RequestRecord) -> bool:
            roles = access.roles(rec, who)
            return bool(roles & {Role.APPROVER, Role.ADMIN}) and Role.REQUESTER not in roles

        return scan(lister, to_decide, size, cursor, states=(State.PENDING,))
    if scope == "all":
        return scan(lister, lambda r: access.may_see(r, who), size, cursor)
    raise BadInput(f"Unknown scope '{printable(scope)}'.", "Use mine, pending or all.")


def scan(
    lister: Lister,
    keep: Callable[[RequestRecord], bool],
    size: int,
    cursor: str | None = None,
    states: tuple[State, ...] = (),
    requester: str | None = None,
    oid: str | None = None,
) -> Page:
    """A page of the requests `keep` lets through, newest first, from `cursor` on. However few
    of the rows the caller may see, the page is full when there are enough: the scan reads on
    (BATCH rows at a time through the store's index) rather than stopping at a window."""
    # the position after the last row read: its time, and how many rows of that very time
    # were read (requests made in one instant page on without a gap or a repeat)
    at, skip = parse_cursor(cursor)
    found: list[RequestRecord] = []
    page_end: tuple[datetime | None, int] = (at, skip)
    limit = size + 1  # most rows are the caller's to see: read a page first, then more
    while len(found) <= size:
        batch = lister.list_requests(
            states=states,
            requester=requester,
            requester_oid=oid,
            limit=limit,
            until=at,
            offset=skip,
        )
        for rec in batch:
            at, skip = (at, skip + 1) if rec.created_at == at else (rec.created_at, 1)
            if keep(rec):
                found.append(rec)
                if len(found) == size:
                    page_end = (at, skip)
                elif len(found) > size:
                    break
        if len(batch) < limit:
            break
        limit = min(limit * 4, BATCH)
    older = None
    if len(found) > size and page_end[0] is not None:
        older = f"{page_end[0].isoformat()}|{page_end[1]}"
    return Page(found[:size], older)


def parse_cursor(text: str | None) -> tuple[datetime | None, int]:
    if not text:
        return None, 0
    at, _, seen = text.partition("|")
    try:
        when = datetime.fromisoformat(at)
        count = max(int(seen), 0)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise BadInput(
            "The 'older' cursor is not one.",
            "Pass the 'older' value a page gave (or follow the page's links).",
        )
    return when, count
