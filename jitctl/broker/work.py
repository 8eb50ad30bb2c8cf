"""Work any replica may take: initiates to send, requests to expire, notifications to send.

Each item goes to one replica: `FOR UPDATE SKIP LOCKED` on PostgreSQL (replicas skip rows
another holds), and on both databases a conditional UPDATE whose row count says who won.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from jitctl.broker.database import SYSTEM, Database, Note, note_kind
from jitctl.broker.errors import (
    WrongState,
)
from jitctl.broker.lifecycle import Action, Role, State, check
from jitctl.broker.models import outbox, requests
from jitctl.broker.records import RequestRecord, record_of

# The event that says what revoking did in Azure (not a transition: the request stays revoked)
RELEASE = "release"
# The events that say what Azure made of an extension's initiate (the request stays active)
EXTENDED = "extended"
EXTEND_FAILED = "extend_failed"


class WorkQueue(Database):
    # --- work any replica may take ----------------------------------------------------------

    def claim_initiates(
        self, worker: str, *, limit: int = 10, stale_after: timedelta = timedelta(minutes=5)
    ) -> list[RequestRecord]:
        """Approved requests (and claims a dead broker left) for `worker` to initiate, each
        claimed by one replica only: SKIP LOCKED on PostgreSQL, a conditional UPDATE on both."""
        with self._tx() as tx:
            stale = tx.now - stale_after
            rows = (
                tx.conn.execute(
                    select(requests)
                    .where(
                        (requests.c.state == State.APPROVED.value)
                        | (
                            (requests.c.state == State.ACTIVATING.value)
                            & (requests.c.claimed_at < stale)
                        )
                    )
                    .order_by(requests.c.created_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
                .mappings()
                .all()
            )
            claimed = []
            for row in rows:
                rec = record_of(row)
                action = Action.CLAIM if rec.state is State.APPROVED else Action.RECLAIM
                step = check(action, rec.state, {Role.SYSTEM})
                cond = (
                    requests.c.claimed_at == rec.claimed_at
                    if rec.claimed_at
                    else requests.c.claimed_at.is_(None)
                )
                done = tx.conn.execute(
                    requests.update()
                    .where(requests.c.id == rec.id, requests.c.state == rec.state.value, cond)
                    .values(
                        state=step.target.value,
                        version=rec.version + 1,
                        updated_at=tx.now,
                        claimed_by=worker,
                        claimed_at=tx.now,
                    )
                )
                if done.rowcount == 1:
                    data = {"previous_claim": rec.claimed_by} if rec.claimed_by else {}
                    tx.log(rec.id, worker, Role.SYSTEM, action, rec.state, step.target, None, data)
                    claimed.append(rec.id)
            return [self._fetch(tx.conn, i) for i in claimed]

    def finish_initiate(
        self,
        request_id: str,
        worker: str,
        *,
        ok: bool,
        azure: dict[str, Any],
        ends_at: datetime | None = None,
        reason: str | None = None,
        access: dict[str, Any] | None = None,
    ) -> RequestRecord:
        """activating -> active (Azure took the initiate and access was verified live) or
        failed; only by the replica that holds the claim. `access`: where to connect and the
        proof, kept on the request for the requester's client."""
        if ok and ends_at is None:
            raise ValueError("an active request needs its end time (ends_at)")
        action = Action.ACTIVATE if ok else Action.FAIL
        with self._tx() as tx:
            rec = self._locked(tx.conn, request_id)
            step = check(action, rec.state, {Role.SYSTEM})
            if rec.claimed_by != worker:
                raise WrongState(
                    f"Request {rec.id} is claimed by {rec.claimed_by}, not {worker}.",
                    "Leave it to the replica that holds the claim.",
                )
            kept = json.dumps(access, sort_keys=True) if ok and access else None
            self._move(tx, rec, step.target, ends_at=ends_at, access=kept)
            tx.log(
                rec.id,
                worker,
                Role.SYSTEM,
                action,
                rec.state,
                step.target,
                reason,
                {"azure": azure},
            )
            tx.notify(
                rec.id,
                Note(
                    note_kind(action, step.target),
                    {"id": rec.id, "requester": rec.requester, "reason": reason},
                ),
            )
            return self._fetch(tx.conn, rec.id)

    def sweep(self, *, limit: int = 100) -> list[tuple[str, State]]:
        """Pending requests past their time to live, active ones past their end: closed once,
        by whichever replica gets there first."""
        moved: list[tuple[str, State]] = []
        with self._tx() as tx:
            due = (
                tx.conn.execute(
                    select(requests)
                    .where(
                        (
                            (requests.c.state == State.PENDING.value)
                            & (requests.c.pending_until <= tx.now)
                        )
                        | (
                            (requests.c.state == State.ACTIVE.value)
                            & (requests.c.ends_at <= tx.now)
                        )
                    )
                    .order_by(requests.c.created_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
                .mappings()
                .all()
            )
            for row in due:
                rec = record_of(row)
                action = Action.EXPIRE_PENDING if rec.state is State.PENDING else Action.EXPIRE
                step = check(action, rec.state, {Role.SYSTEM})
                self._move(tx, rec, step.target)
                tx.log(rec.id, SYSTEM, Role.SYSTEM, action, rec.state, step.target)
                tx.notify(
                    rec.id,
                    Note(
                        note_kind(action, step.target), {"id": rec.id, "requester": rec.requester}
                    ),
                )
                moved.append((rec.id, step.target))
        return moved

    # --- the outbox -------------------------------------------------------------------------

    def claim_notes(
        self, worker: str, *, limit: int = 20, lease: timedelta = timedelta(minutes=1)
    ) -> list[tuple[int, Note]]:
        with self._tx() as tx:
            rows = tx.conn.execute(
                select(
                    outbox.c.id,
                    outbox.c.kind,
                    outbox.c.payload,
                    outbox.c.attempts,
                    outbox.c.delivered,
                )
                .where(outbox.c.sent_at.is_(None), outbox.c.next_attempt_at <= tx.now)
                .order_by(outbox.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            for r in rows:
                tx.conn.execute(
                    outbox.update()
                    .where(outbox.c.id == r.id)
                    .values(claimed_by=worker, claimed_at=tx.now, next_attempt_at=tx.now + lease)
                )
        return [
            (
                int(r.id),
                Note(
                    r.kind,
                    json.loads(r.payload),
                    int(r.attempts),
                    tuple(json.loads(r.delivered or "[]")),
                ),
            )
            for r in rows
        ]

    def note_sent(self, note_id: int) -> None:
        with self._tx() as tx:
            tx.conn.execute(outbox.update().where(outbox.c.id == note_id).values(sent_at=tx.now))

    def note_failed(
        self, note_id: int, error: str, retry_in: timedelta, delivered: Iterable[str] = ()
    ) -> None:
        """Try again after `retry_in`; `delivered`: the receivers that took it this time or
        before (a retry goes only to the others)."""
        with self._tx() as tx:
            tx.conn.execute(
                outbox.update()
                .where(outbox.c.id == note_id)
                .values(
                    attempts=outbox.c.attempts + 1,
                    last_error=error[:500],
                    next_attempt_at=tx.now + retry_in,
                    delivered=json.dumps(sorted(set(delivered))),
                )
            )

    # --- a revoked request's allow rules --------------------------------------------------

    def claim_releases(
        self, worker: str, *, limit: int = 10, stale_after: timedelta = timedelta(minutes=5)
    ) -> list[RequestRecord]:
        """Revoked requests whose JIT allow rules the broker has not removed yet (or whose
        remover died: its claim went stale), each claimed by one replica."""
        due = (requests.c.state == State.REVOKED.value) & requests.c.released_at.is_(None)
        return self._claim_side_work(due, "release", worker, limit, stale_after)

    def finish_release(
        self, request_id: str, worker: str, *, reason: str, data: dict[str, Any]
    ) -> RequestRecord:
        """Record what removing the allow rules did (one event), by the claim's holder."""
        with self._tx() as tx:
            done = tx.conn.execute(
                requests.update()
                .where(
                    requests.c.id == request_id,
                    requests.c.state == State.REVOKED.value,
                    requests.c.released_at.is_(None),
                    requests.c.release_claimed_by == worker,
                )
                .values(released_at=tx.now)
            )
            if done.rowcount != 1:
                raise WrongState(
                    f"Request {request_id} is not revoked and held by {worker} for release.",
                    "Leave it to the replica that holds the claim.",
                )
            tx.log(
                request_id, worker, Role.SYSTEM, RELEASE, State.REVOKED, State.REVOKED, reason, data
            )
            return self._fetch(tx.conn, request_id)

    # --- an extension: a new initiate for the new end ---------------------------------------

    def claim_extends(
        self, worker: str, *, limit: int = 10, stale_after: timedelta = timedelta(minutes=5)
    ) -> list[RequestRecord]:
        """Active requests with an extension Azure has not granted yet (or whose sender died:
        its claim went stale), each claimed by one replica."""
        due = (requests.c.state == State.ACTIVE.value) & requests.c.extend_to.is_not(None)
        return self._claim_side_work(due, "extend", worker, limit, stale_after)

    def _claim_side_work(
        self, due: Any, kind: str, worker: str, limit: int, stale_after: timedelta
    ) -> list[RequestRecord]:
        """Claim the rows `due` selects for one kind of work (`<kind>_claimed_by/_at`): rows no
        replica holds, or whose claim went stale; each by a conditional UPDATE on the claim
        seen, so two replicas never both hold one."""
        at, by = requests.c[f"{kind}_claimed_at"], f"{kind}_claimed_by"
        with self._tx() as tx:
            stale = tx.now - stale_after
            rows = (
                tx.conn.execute(
                    select(requests)
                    .where(due, at.is_(None) | (at < stale))
                    .order_by(requests.c.updated_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
                .mappings()
                .all()
            )
            claimed = []
            for row in rows:
                before = row[at.name]
                done = tx.conn.execute(
                    requests.update()
                    .where(
                        requests.c.id == row["id"], due, at == before if before else at.is_(None)
                    )
                    .values({by: worker, at.name: tx.now})
                )
                if done.rowcount == 1:
                    claimed.append(row["id"])
            return [self._fetch(tx.conn, i) for i in claimed]

    def finish_extend(
        self,
        request_id: str,
        worker: str,
        extend_to: datetime,
        *,
        ok: bool,
        azure: dict[str, Any],
        ends_at: datetime | None = None,
        reason: str | None = None,
    ) -> RequestRecord:
        """Record what Azure made of the extension `extend_to` (one event): granted, `ends_at`
        becomes Azure's end; refused, the end stays as Azure has it. An extension decided
        meanwhile (a newer `extend_to`) stays to be sent."""
        if ok and ends_at is None:
            raise ValueError("a granted extension needs Azure's end time (ends_at)")
        with self._tx() as tx:
            rec = self._locked(tx.conn, request_id)
            if rec.state is not State.ACTIVE or rec.extend_to is None:
                raise WrongState(
                    f"Request {rec.id} is {rec.state.value}, with no extension to finish.",
                    "Nothing to do: it ended meanwhile.",
                )
            values: dict[str, Any] = {"extend_claimed_by": None, "extend_claimed_at": None}
            if rec.extend_to == extend_to:
                values["extend_to"] = None
            if ok:
                values["ends_at"] = ends_at
            done = tx.conn.execute(
                requests.update()
                .where(
                    requests.c.id == rec.id,
                    requests.c.state == State.ACTIVE.value,
                    requests.c.extend_claimed_by == worker,
                )
                .values(version=rec.version + 1, updated_at=tx.now, **values)
            )
            if done.rowcount != 1:
                raise WrongState(
                    f"Request {rec.id}'s extension is not held by {worker}.",
                    "Leave it to the replica that holds the claim.",
                )
            action = EXTENDED if ok else EXTEND_FAILED
            tx.log(
                rec.id,
                worker,
                Role.SYSTEM,
                action,
                State.ACTIVE,
                State.ACTIVE,
                reason,
                {"extend_to": extend_to.isoformat(), "azure": azure},
            )
            if not ok:
                tx.notify(
                    rec.id,
                    Note(
                        "request.extend_failed",
                        {"id": rec.id, "requester": rec.requester, "reason": reason},
                    ),
                )
            return self._fetch(tx.conn, rec.id)
