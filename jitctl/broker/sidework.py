"""Work on requests already decided that any replica may take, beside their initiate: the
allow rules of revoked requests to remove, and extensions to send. Each row is claimed by one
replica (`<kind>_claimed_by/_at`), by a conditional UPDATE on the claim seen.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_

from jitctl.broker.database import Database, Note
from jitctl.broker.errors import WrongState
from jitctl.broker.lifecycle import Role, State
from jitctl.broker.models import requests
from jitctl.broker.records import RequestRecord

# The event that says what revoking did in Azure (not a transition: the request stays revoked)
RELEASE = "release"
# The event that says the worker gave up the initiate of a request revoked while it activated it
GAVE_UP = "gave_up"
# The events that say what Azure made of an extension's initiate (the request stays active)
EXTENDED = "extended"
EXTEND_FAILED = "extend_failed"


class SideWork(Database):
    # --- a revoked request's allow rules --------------------------------------------------

    def claim_releases(
        self, worker: str, *, limit: int = 10, stale_after: timedelta = timedelta(minutes=5)
    ) -> list[RequestRecord]:
        """Revoked requests whose JIT allow rules the broker has not removed yet (or whose
        remover died: its claim went stale), each claimed by one replica. One revoked while
        activating waits while a replica holds its initiate's claim (it may be sending the
        initiate now, and gives the claim up once it sees the revoke)."""
        initiating = (
            requests.c.ends_at.is_(None)
            & requests.c.claimed_by.is_not(None)
            & (requests.c.claimed_at >= self.clock.now() - stale_after)
        )
        due = (
            (requests.c.state == State.REVOKED.value)
            & requests.c.released_at.is_(None)
            & ~initiating
        )
        return self._claim_side_work(due, "release", worker, limit, stale_after)

    def let_go_release(
        self, request_id: str, worker: str, *, retry_in: timedelta, stale_after: timedelta
    ) -> bool:
        """Give up `worker`'s claim on a release Azure is not ready for (its initiate is still
        being applied): any replica takes it again after `retry_in`."""
        with self._tx() as tx:
            done = tx.conn.execute(
                requests.update()
                .where(
                    requests.c.id == request_id,
                    requests.c.released_at.is_(None),
                    requests.c.release_claimed_by == worker,
                )
                # a second older still: stale means older than `stale_after`, not as old
                .values(release_claimed_at=tx.now - stale_after + retry_in - timedelta(seconds=1))
            )
            return done.rowcount == 1

    def give_up_revoked(
        self,
        request_id: str,
        worker: str,
        *,
        reason: str,
        data: dict[str, Any],
        unsent: bool = False,
    ) -> bool:
        """`worker` held the initiate's claim of a request revoked meanwhile: the claim is
        given up (the request stays revoked) with an event that says what the worker saw.
        `unsent`: the initiate was never sent, so nothing is left to remove in Azure: the
        release is recorded too (release event). False: the request is not revoked, or the
        claim is not `worker`'s."""
        with self._tx() as tx:
            values: dict[str, Any] = {"claimed_by": None}
            if unsent:
                values["released_at"] = tx.now
            done = tx.conn.execute(
                requests.update()
                .where(
                    requests.c.id == request_id,
                    requests.c.state == State.REVOKED.value,
                    requests.c.released_at.is_(None),
                    requests.c.claimed_by == worker,
                )
                .values(values)
            )
            if done.rowcount != 1:
                return False
            action = RELEASE if unsent else GAVE_UP
            tx.log(
                request_id, worker, Role.SYSTEM, action, State.REVOKED, State.REVOKED, reason, data
            )
            tx.work = not unsent  # the release may go ahead now
            return True

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
            rows = self.due(
                tx.conn, and_(due, at.is_(None) | (at < stale)), requests.c.updated_at, limit
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

    def let_go_extend(self, request_id: str, worker: str) -> bool:
        """Give up `worker`'s claim on an extension (it was stopped): any replica takes it at
        its next round, and finds the initiate in the history if it was sent."""
        with self._tx() as tx:
            done = tx.conn.execute(
                requests.update()
                .where(requests.c.id == request_id, requests.c.extend_claimed_by == worker)
                .values(extend_claimed_by=None, extend_claimed_at=None)
            )
            return done.rowcount == 1

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
