"""The broker's worker: the Azure side of approved requests, and the clean-up around them.

One round (`Worker._round`, the one definition `run_once` and `run_forever` both run): claim
and start the initiates (an approval's initiate waits for nothing else), close what is due
(`store.sweep`: pending past its time to live, active past its end), close active requests
whose grants Azure ended early (its request history, read at a modest cadence), remove the
allow rules of revoked requests, and send the extensions due. `run_once` waits for the
initiates it started; `run_forever` runs them on a small thread pool, so that one slow wait
does not hold the others, and the notifications on a thread of their own, so that a slow
receiver holds nothing.

Exactly once: a request is claimed (store: one replica wins) before its initiate is sent.
Whoever takes a claim over (a stopped replica lets its claims go at once; a killed one's go
stale) reads the JIT policy's request history first and, when the initiate is there (its
justification starts `broker:<request id>:`), goes on with that grant instead of sending
another.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from jitctl.broker.azureside import justification
from jitctl.broker.errors import StoreUnavailable, WrongState
from jitctl.broker.lifecycle import State
from jitctl.broker.notify import Notifier, SendResult
from jitctl.broker.records import RequestRecord
from jitctl.broker.release import REVOKE_NOTE, Released, release_in_azure
from jitctl.broker.store import Store
from jitctl.broker.workersteps import (
    Extended,
    Initiated,
    Steps,
    Stopped,
    WorkerSettings,
)
from jitctl.clock import Clock
from jitctl.errors import Unavailable
from jitctl.gateway import Gateway

__all__ = [
    "REVOKE_NOTE",
    "Extended",
    "Initiated",
    "Released",
    "Round",
    "Stopped",
    "Worker",
    "WorkerSettings",
    "justification",
    "worker_name",
]

log = logging.getLogger("jitctl.broker.worker")

STOP_CHECK = 0.2  # seconds: how soon a worker waiting for work notices it was told to stop

T = TypeVar("T")


@dataclass(frozen=True)
class Round:
    swept: tuple[tuple[str, State], ...] = ()
    initiated: tuple[Initiated, ...] = ()
    released: tuple[Released, ...] = ()
    notes: SendResult | None = None
    extended: tuple[Extended, ...] = ()
    closed: tuple[tuple[str, str], ...] = ()  # (request id, why): grants Azure ended early


def worker_name() -> str:
    """This replica's name in claims and events: host, process, and a random part."""
    return f"broker@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker(Steps):
    """`gateway`: the broker's own Azure identity (it holds the initiate right; requesters do
    not). `notifier`: None sends nothing (the outbox keeps the notifications)."""

    def __init__(
        self,
        store: Store,
        gateway: Gateway,
        clock: Clock,
        *,
        name: str | None = None,
        notifier: Notifier | None = None,
        settings: WorkerSettings | None = None,
    ) -> None:
        super().__init__(store, gateway, clock, name or worker_name(), settings or WorkerSettings())
        self.notifier = notifier

    # --- one round ----------------------------------------------------------------------------

    def _round(self, room: int, start: Callable[[list[RequestRecord]], T]) -> tuple[T, Round]:
        """The round: claim up to `room` initiates and `start` them first, then the rest in
        order. What `start` gave, and what the rest did."""
        claimed = (
            self.store.claim_initiates(
                self.name, limit=room, stale_after=self.settings.claim_stale_after
            )
            if room > 0
            else []
        )
        started = start(claimed)
        swept = tuple(self.store.sweep())
        closed = self.check_grants()
        released = self.release_due()
        extended = self.extend_due()
        return started, Round(swept, (), released, None, extended, closed)

    def run_once(self) -> Round:
        """One round, its initiates side by side and waited for; then the notifications due."""
        with ThreadPoolExecutor(max(1, self.settings.parallel), "jitctl-broker") as pool:

            def start(recs: list[RequestRecord]) -> tuple[Initiated, ...]:
                return tuple(pool.map(self.initiate, recs))

            initiated, done = self._round(self.settings.batch, start)
        notes = self.notifier.send_due() if self.notifier else None
        return Round(done.swept, initiated, done.released, notes, done.extended, done.closed)

    def release_due(self) -> tuple[Released, ...]:
        claimed = self.store.claim_releases(self.name, stale_after=self.settings.claim_stale_after)
        return tuple(r for rec in claimed if (r := self.release(rec)) is not None)

    def extend_due(self) -> tuple[Extended, ...]:
        claimed = self.store.claim_extends(self.name, stale_after=self.settings.claim_stale_after)
        return tuple(e for rec in claimed if (e := self.extend(rec)) is not None)

    def release(self, rec: RequestRecord) -> Released | None:
        """Remove the JIT allow rules this request opened, where no newer grant holds the
        port; the release event says what was removed and what was left. None: Azure did not
        answer (the claim goes stale and it is tried again), the claim was lost, or (revoked
        while activating) Azure is still applying the initiate: looked at again after
        `recheck_every`, the release still pending."""
        try:
            out = release_in_azure(self.gw, rec)
        except Unavailable as err:
            log.warning("request %s: releasing failed (%s); will try again", rec.id, err.message)
            return None
        if out is None:
            self.store.let_go_release(
                rec.id,
                self.name,
                retry_in=self.settings.recheck_every,
                stale_after=self.settings.claim_stale_after,
            )
            return None
        try:
            self.store.finish_release(rec.id, self.name, reason=out.reason(), data=out.data)
        except WrongState as err:
            log.warning("request %s: %s", rec.id, err.message)
            return None
        return Released(rec.id, tuple(out.removed), out.error, tuple(sorted(out.left)))

    # --- serve ------------------------------------------------------------------------------

    def run_forever(self, stop_event: threading.Event, interval: float = 2.0) -> None:
        """Rounds every `interval` seconds until `stop_event` is set: initiates on a pool
        (a free slot takes the next claim), notifications on a thread of their own. A
        database that does not answer is logged and tried again next round."""
        self.clock.stop = stop_event
        notes = (
            threading.Thread(
                target=self._loop,
                args=(stop_event, interval, self.notifier.send_due),
                name="jitctl-broker-notify",
                daemon=True,
            )
            if self.notifier
            else None
        )
        if notes:
            notes.start()
        busy: set[Future[Initiated]] = set()
        pool = ThreadPoolExecutor(max(1, self.settings.parallel), "jitctl-broker")
        try:

            def start(recs: Sequence[RequestRecord]) -> None:
                for rec in recs:
                    job = pool.submit(self.initiate, rec)
                    # a slot set free takes the next approved request at once
                    job.add_done_callback(lambda _: self.store.work_ready.set())
                    busy.add(job)

            def one_round() -> None:
                busy.difference_update({f for f in busy if f.done()})
                self._round(self.settings.parallel - len(busy), start)

            self._loop(stop_event, interval, one_round, self.store.work_ready)
        finally:
            pool.shutdown(wait=True)  # the waits end at once: the clock raises Stopped
            if notes:
                notes.join()

    @staticmethod
    def _loop(
        stop: threading.Event,
        interval: float,
        step: Callable[[], Any],
        wake: threading.Event | None = None,
    ) -> None:
        """`step` every `interval` seconds until `stop`; with `wake`, also as soon as it is
        set (the store sets it when an approval, a revoke or an extension commits)."""
        while not stop.is_set():
            if wake is not None:
                wake.clear()  # before the round: work committed during it starts another
            try:
                step()
            except StoreUnavailable as err:
                log.warning("%s", err.message)
            except Exception:  # a round's bug must not end the service
                log.exception("broker worker round failed")
            if wake is None:
                stop.wait(interval)
            else:
                _pause(stop, wake, interval)


def _pause(stop: threading.Event, wake: threading.Event, interval: float) -> None:
    """Until `interval` has passed, `wake` is set or `stop` is (looked at every STOP_CHECK
    seconds: one Event cannot wait on two)."""
    deadline = time.monotonic() + interval
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0 or wake.wait(min(left, STOP_CHECK)):
            return
