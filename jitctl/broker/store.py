"""The broker's store: requests, approvals, the audit log and the outbox, in SQL.

SQLite (WAL, a private file in jitctl's state folder) by default; PostgreSQL through psycopg 3
(`postgresql+psycopg://...`) for teams running several brokers. Every transition is one
conditional UPDATE (`WHERE id = :id AND state = :expected`, its row count checked) and one
event, with the notifications it causes, in one transaction. SQLite transactions start with
BEGIN IMMEDIATE (one writer at a time); PostgreSQL locks rows (FOR UPDATE, SKIP LOCKED for
work any replica may take) and the chain head, so the log stays one line.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from jitctl.broker import auditlog
from jitctl.broker.auditlog import LogCheck
from jitctl.broker.database import Note, default_url, note_kind, open_engine
from jitctl.broker.errors import (
    AlreadyReviewed,
    BadRequestInput,
    NotPermitted,
)
from jitctl.broker.lifecycle import Action, Role, State, check, held_roles
from jitctl.broker.models import approvals, requests
from jitctl.broker.records import RequestRecord, record_of
from jitctl.broker.rules import Ask, Decision, Outcome, Principal, may_approve
from jitctl.broker.work import WorkQueue
from jitctl.clock import Clock
from jitctl.errors import Refused
from jitctl.textsafe import printable

__all__ = ["Note", "Store", "default_url", "open_engine"]


class Store(WorkQueue):
    """Requests, approvals and decisions, the audit log; and (WorkQueue) the replicas' work."""

    @classmethod
    def open(cls, url: str | None, clock: Clock) -> Store:
        """`url`, else SQLite in jitctl's state folder."""
        return cls(open_engine(url or default_url()), clock)

    # --- requests -------------------------------------------------------------------------

    def create(self, ask: Ask, decision: Decision, source: str | None = None) -> RequestRecord:
        """Store a request the rules let through: pending, or approved at once (auto-approved,
        break-glass). A refusal stores only its audit event (whatever the input's problems);
        bad input stores nothing."""
        who = ask.requester.upn.lower()
        if decision.outcome is Outcome.DENIED:
            with self._tx() as tx:
                tx.log(
                    None,
                    who,
                    Role.REQUESTER,
                    "refuse",
                    None,
                    None,
                    decision.reasons[-1],
                    {
                        "vm_id": ask.vm_id,
                        "ports": list(ask.ports),
                        "reasons": list(decision.reasons),
                    },
                )
            raise Refused(
                f"Request refused: {decision.reasons[-1]}.",
                "Ask an approver or an admin about the approval rules.",
            )
        if decision.problems:
            raise BadRequestInput(
                "; ".join(decision.problems) + ".", "Fix the request and send it again."
            )
        target = State.PENDING if decision.outcome is Outcome.NEEDS_APPROVAL else State.APPROVED
        check(Action.REQUEST, None, {Role.REQUESTER}, target)
        rid = str(uuid.uuid4())
        with self._tx() as tx:
            row = {
                "id": rid,
                "created_at": tx.now,
                "updated_at": tx.now,
                "state": target.value,
                "version": 1,
                "requester": who,
                "requester_oid": ask.requester.oid,
                "requester_tid": ask.requester.tid,
                "requester_groups": json.dumps(sorted(ask.requester.groups)),
                "vm_id": ask.vm_id,
                "ports": json.dumps(list(ask.ports)),
                "source": source,
                "duration_s": int(ask.duration.total_seconds()),
                "reason": ask.reason,
                "ticket": ask.ticket,
                "break_glass": ask.break_glass,
                "outcome": decision.outcome.value,
                "min_approvals": decision.min_approvals,
                "approver_sets": json.dumps([list(s) for s in decision.approver_sets]),
                "rules": json.dumps(list(decision.rules)),
                "pending_until": tx.now + decision.pending_ttl,
            }
            tx.conn.execute(requests.insert().values(**row))
            tx.work = target is State.APPROVED  # auto-approved or break-glass: initiate now
            facts = {
                "vm_id": ask.vm_id,
                "ports": list(ask.ports),
                "duration_s": row["duration_s"],
                "source": source,
                "ticket": ask.ticket,
                "outcome": decision.outcome.value,
                "rules": list(decision.rules),
                "reasons": list(decision.reasons),
            }
            tx.log(rid, who, Role.REQUESTER, Action.REQUEST, None, target, ask.reason, facts)
            # break-glass is announced to everyone, apart from the ordinary notifications
            loud = decision.outcome is Outcome.BREAK_GLASS_ALLOWED
            kind = "break_glass" if loud else note_kind(Action.REQUEST, target)
            tx.notify(rid, Note(kind, {"id": rid, "requester": who, **facts, "reason": ask.reason}))
            return record_of(row)

    def list_requests(
        self,
        *,
        states: Sequence[State] = (),
        requester: str | None = None,
        requester_oid: str | None = None,
        limit: int = 100,
        until: datetime | None = None,
        offset: int = 0,
    ) -> list[RequestRecord]:
        """Newest first. `until` (created at or before) and `offset` (rows of that very
        instant already seen) page on through the (state, created_at) index: a page deep in
        10,000 requests costs what the first does. A requester is found by object id when given
        (a renamed person still finds what they asked before; a reused name finds nothing of
        the name's former holder), by name where a request has no object id."""
        query = select(requests).order_by(requests.c.created_at.desc()).limit(limit)
        if states:
            query = query.where(requests.c.state.in_([s.value for s in states]))
        if requester and requester_oid:  # as Principal.same_as: the oid where both have one
            query = query.where(
                (requests.c.requester_oid == requester_oid)
                | (requests.c.requester_oid.is_(None) & (requests.c.requester == requester.lower()))
            )
        elif requester:
            query = query.where(requests.c.requester == requester.lower())
        if until is not None:
            query = query.where(requests.c.created_at <= until)
        if offset:
            query = query.offset(offset)
        with self.reading() as conn:
            return [record_of(r) for r in conn.execute(query).mappings()]

    def approve(
        self,
        request_id: str,
        approver: Principal,
        comment: str | None = None,
        roles: frozenset[Role] | set[Role] = frozenset(),
    ) -> RequestRecord:
        """One approval by a distinct person; the one that reaches minApprovals approves.
        Who may approve was fixed when the request was made (its approver sets), so a rule
        edited later neither strands nor widens a pending request. `roles`: what else the
        approver holds (an admin), for the hint of a refusal."""
        who = approver.upn.lower()
        with self._tx() as tx:
            rec = self._locked(tx.conn, request_id)
            held = _roles_on(rec, approver, {*roles, Role.APPROVER}, Action.APPROVE)
            if not may_approve(rec.approver_sets, rec.requester, approver, rec.requester_oid):
                wanted = " and ".join(" or ".join(s) for s in rec.approver_sets) or "nobody"
                raise NotPermitted(
                    f"{printable(approver.upn)} may not approve request {rec.id}.",
                    f"Its approvers are: {printable(wanted)}.",
                )
            check(Action.REVIEW, rec.state, held, verb=Action.APPROVE)
            already = AlreadyReviewed(
                f"{printable(approver.upn)} has already approved request {rec.id}.",
                "Another approver must approve it.",
            )
            # distinct people by object id: a renamed approver is still the one who approved
            if (
                approver.oid
                and tx.conn.execute(
                    select(approvals.c.id).where(
                        approvals.c.request_id == rec.id,
                        func.lower(approvals.c.approver_oid) == approver.oid.lower(),
                    )
                ).first()
            ):
                raise already
            try:
                with tx.conn.begin_nested():
                    tx.conn.execute(
                        approvals.insert().values(
                            request_id=rec.id,
                            approver=who,
                            approver_oid=approver.oid,
                            at=tx.now,
                            comment=comment,
                        )
                    )
            except IntegrityError:
                raise already from None
            count = tx.conn.execute(
                select(func.count()).select_from(approvals).where(approvals.c.request_id == rec.id)
            ).scalar_one()
            target = State.APPROVED if count >= rec.min_approvals else State.PENDING
            action = Action.APPROVE if target is State.APPROVED else Action.REVIEW
            self._move(tx, rec, target)
            tx.log(
                rec.id,
                who,
                Role.APPROVER,
                action,
                rec.state,
                target,
                comment,
                {"approvals": count, "min_approvals": rec.min_approvals},
            )
            if target is State.APPROVED:
                tx.notify(
                    rec.id,
                    Note(
                        note_kind(action, target),
                        {"id": rec.id, "requester": rec.requester, "by": who},
                    ),
                )
            return self._fetch(tx.conn, rec.id)

    def decide(
        self,
        request_id: str,
        action: Action,
        actor: str | Principal,
        roles: frozenset[Role] | set[Role],
        reason: str | None = None,
        data: dict[str, Any] | None = None,
        **values: Any,
    ) -> RequestRecord:
        """deny, cancel, revoke, extend (and the system's moves): check, move, log, notify.
        `actor`: the person (their object id decides whether the request is theirs), or a
        name."""
        person = actor if isinstance(actor, Principal) else Principal(actor)
        actor = person.upn
        with self._tx() as tx:
            rec = self._locked(tx.conn, request_id)
            roles = _roles_on(rec, person, roles, action)
            step = check(action, rec.state, roles)
            self._move(tx, rec, step.target, **values)
            role = next(
                r
                for r in (Role.SYSTEM, Role.ADMIN, Role.APPROVER, Role.REQUESTER)
                if r in step.roles and r in roles
            )
            tx.log(rec.id, actor.lower(), role, action, rec.state, step.target, reason, data)
            tx.notify(
                rec.id,
                Note(
                    note_kind(action, step.target),
                    {
                        "id": rec.id,
                        "requester": rec.requester,
                        "by": actor.lower(),
                        "reason": reason,
                    },
                ),
            )
            return self._fetch(tx.conn, rec.id)

    # --- the audit log ----------------------------------------------------------------------

    def verify_log(self) -> LogCheck:
        with self.reading() as conn:
            return auditlog.verify(conn)

    def events_of(self, request_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The audit trail of some requests, oldest first (the pages show it)."""
        if not request_ids:
            return []
        with self.reading() as conn:
            return list(auditlog.rows(conn, request_ids=request_ids))

    def export_log(self, out: TextIO, fmt: str = "jsonl", since: datetime | None = None) -> int:
        """Write the events as JSON Lines or CSV; returns how many."""
        write = {"jsonl": auditlog.write_jsonl, "csv": auditlog.write_csv}[fmt]
        with self.reading() as conn:
            return write(auditlog.rows(conn, since), out)


def _roles_on(
    rec: RequestRecord, actor: Principal, roles: frozenset[Role] | set[Role], action: Action
) -> set[Role]:
    """The roles `actor` holds on this request for `action` (lifecycle.held_roles)."""
    return held_roles(roles, actor.same_as(rec.requester, rec.requester_oid), action)
