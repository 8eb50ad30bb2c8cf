"""Work any replica may take: initiates to send, requests to expire, notifications to send
(and, in SideWork, the allow rules of revoked requests and extensions).

Each item goes to one replica: `FOR UPDATE SKIP LOCKED` on PostgreSQL (replicas skip rows
another holds), and on both databases a conditional UPDATE whose row count says who won.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from jitctl.broker.database import SYSTEM, Note, note_kind
from jitctl.broker.errors import (
    WrongState,
)
from jitctl.broker.lifecycle import Action, Role, State, check
from jitctl.broker.models import outbox, requests
from jitctl.broker.records import RequestRecord, record_of
from jitctl.broker.sidework import SideWork

# The event that says Azure took the initiate but access is not live yet (stays activating)
WAITING = "waiting"


class WorkQueue(SideWork):
    # --- work any replica may take ----------------------------------------------------------

    def claim_initiates(
        self, worker: str, *, limit: int = 10, stale_after: timedelta = timedelta(minutes=5)
    ) -> list[RequestRecord]:
        """Approved requests (and claims a dead broker left, or a replica let go) for `worker`
        to initiate, each claimed by one replica only: SKIP LOCKED on PostgreSQL, a
        conditional UPDATE on both."""
        with self._tx() as tx:
            stale = tx.now - stale_after
            rows = self.due(
                tx.conn,
                (
                    (requests.c.state == State.APPROVED.value)
                    | (
                        (requests.c.state == State.ACTIVATING.value)
                        & (requests.c.claimed_at < stale)
                    )
                ),
                requests.c.created_at,
                limit,
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
                    # a claim let go with no holder is a recheck, not a takeover: no event
                    # (a grant Azure is slow to apply is looked at every 30 s for hours)
                    if action is Action.CLAIM or rec.claimed_by:
                        data = {"previous_claim": rec.claimed_by} if rec.claimed_by else {}
                        tx.log(
                            rec.id, worker, Role.SYSTEM, action, rec.state, step.target, None, data
                        )
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
        expired: bool = False,
    ) -> RequestRecord:
        """activating -> active (Azure took the initiate and access was verified live),
        failed, or (`expired`) expired: its end passed, or Azure ended it, before it was ever
        live; only by the replica that holds the claim. `access`: where to connect and the
        proof, kept on the request for the requester's client."""
        if ok and ends_at is None:
            raise ValueError("an active request needs its end time (ends_at)")
        action = Action.ACTIVATE if ok else Action.EXPIRE if expired else Action.FAIL
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

    def let_go(
        self,
        request_id: str,
        worker: str,
        *,
        retry_in: timedelta,
        stale_after: timedelta,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
        holder: bool = True,
    ) -> bool:
        """Give up `worker`'s claim on an activating request so that any replica takes it
        again after `retry_in` (0: at the next round) instead of after `stale_after`: the
        claim is dated as if taken `stale_after - retry_in` ago. `holder`: keep `worker`'s
        name on it (taking it is a `reclaim` event naming it); without, taking it again is a
        silent recheck. `reason`: an event says why (activating -> activating). False: the
        claim was not `worker`'s any more."""
        with self._tx() as tx:
            done = tx.conn.execute(
                requests.update()
                .where(
                    requests.c.id == request_id,
                    requests.c.state == State.ACTIVATING.value,
                    requests.c.claimed_by == worker,
                )
                # a second older still: stale means older than `stale_after`, not as old
                .values(
                    claimed_at=tx.now - stale_after + retry_in - timedelta(seconds=1),
                    claimed_by=worker if holder else None,
                )
            )
            if done.rowcount != 1:
                return False
            if reason:
                tx.log(
                    request_id,
                    worker,
                    Role.SYSTEM,
                    WAITING,
                    State.ACTIVATING,
                    State.ACTIVATING,
                    reason,
                    data,
                )
            return True

    def close_ended(
        self, request_id: str, reason: str, data: dict[str, Any]
    ) -> RequestRecord | None:
        """active -> expired because Azure ended the grant before its end time (a newer
        request for the same VM and port superseded it, say). None: no longer active, or an
        extension is in flight (finishing it says what Azure granted)."""
        with self._tx() as tx:
            rec = self._locked(tx.conn, request_id)
            if rec.state is not State.ACTIVE or rec.extend_to is not None:
                return None
            step = check(Action.EXPIRE, rec.state, {Role.SYSTEM})
            self._move(tx, rec, step.target)
            tx.log(rec.id, SYSTEM, Role.SYSTEM, Action.EXPIRE, rec.state, step.target, reason, data)
            tx.notify(
                rec.id,
                Note(
                    note_kind(Action.EXPIRE, step.target),
                    {"id": rec.id, "requester": rec.requester, "reason": reason},
                ),
            )
            return self._fetch(tx.conn, rec.id)

    def sweep(self, *, limit: int = 100) -> list[tuple[str, State]]:
        """Pending requests past their time to live, active ones past their end (unless an
        extension is in flight): closed once, by whichever replica gets there first."""
        moved: list[tuple[str, State]] = []
        with self._tx() as tx:
            due = self.due(
                tx.conn,
                (
                    (
                        (requests.c.state == State.PENDING.value)
                        & (requests.c.pending_until <= tx.now)
                    )
                    | (
                        (requests.c.state == State.ACTIVE.value)
                        & (requests.c.ends_at <= tx.now)
                        # an extension in flight: Azure may be granting the new end now;
                        # finishing it sets the end (or clears it, and then this closes it)
                        & requests.c.extend_to.is_(None)
                    )
                ),
                requests.c.created_at,
                limit,
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

    def note_sent(self, note_id: int, worker: str) -> bool:
        """Record a delivery, only while `worker` holds the note's lease: a delivery that
        outlived its lease (another replica took the note) is not recorded over its work.
        False: not recorded."""
        with self._tx() as tx:
            done = tx.conn.execute(
                outbox.update().where(*_holding(note_id, worker)).values(sent_at=tx.now)
            )
            return done.rowcount == 1

    def note_failed(
        self,
        note_id: int,
        worker: str,
        error: str,
        retry_in: timedelta,
        delivered: Iterable[str] = (),
    ) -> bool:
        """Try again after `retry_in`; `delivered`: the receivers that took it this time or
        before (a retry goes only to the others). Only while `worker` holds the lease."""
        with self._tx() as tx:
            done = tx.conn.execute(
                outbox.update()
                .where(*_holding(note_id, worker))
                .values(
                    attempts=outbox.c.attempts + 1,
                    last_error=error[:500],
                    next_attempt_at=tx.now + retry_in,
                    delivered=json.dumps(sorted(set(delivered))),
                )
            )
            return done.rowcount == 1


def _holding(note_id: int, worker: str) -> tuple[Any, ...]:
    """An unsent note `worker` still holds: no other replica took it over since (a lease
    that ran out with nobody taking the note over still counts: the delivery happened)."""
    return (outbox.c.id == note_id, outbox.c.sent_at.is_(None), outbox.c.claimed_by == worker)
