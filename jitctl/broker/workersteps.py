"""The worker's steps on one request each: initiate and verify, extend; and keeping the store
true to Azure's request history (grants Azure ended early). The round that runs them, and
the loop, are in worker.py; removing a revoked request's rules is in release.py.

Once Azure has taken an initiate, the request is never final-failed for want of time: Azure
promises no time to apply it. A wait that runs out lets the claim go (the request stays
`activating`), and a later round, on any replica, reads the history again: Initiated and live
is active, Failed is failed, an end time passed first is expired.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jitctl.broker.azureside import grant_json, justification, result_of, sent_before, vm_ref
from jitctl.broker.errors import WrongState
from jitctl.broker.extension import extend_in_azure
from jitctl.broker.history import IN_FORCE, ended_in_azure, own, status_words
from jitctl.broker.lifecycle import State
from jitctl.broker.reach import connect_json, proof_json
from jitctl.broker.records import RequestRecord
from jitctl.broker.release import UNSENT, overtaken
from jitctl.broker.store import Store
from jitctl.clock import Clock
from jitctl.errors import JitctlError, Unavailable
from jitctl.gateway import Gateway
from jitctl.services.access import RequestResult, find_policy, initiate_checked
from jitctl.services.firewall import firewall_address
from jitctl.services.reads import policies_of_vm
from jitctl.services.verify import WaitTimedOut, wait_until_effective

log = logging.getLogger("jitctl.broker.worker")

ACTIVE_LIMIT = 1000  # active requests whose grants one round compares with Azure's history


@dataclass(frozen=True)
class WorkerSettings:
    """wait_timeout: how long one attempt waits for access to go live after the initiate
    (Azure: about a minute, no promise); then the request stays activating and is looked at
    again every `recheck_every`. claim_stale_after: when another replica may take over a
    claim; longer than an initiate and its wait, so a live replica's claim is never taken.
    retry_after: Azure did not answer; try again this soon. check_every: how often a VM's
    JIT policy history is read to find grants Azure ended early (one list call)."""

    wait_timeout: float = 180.0
    claim_stale_after: timedelta = timedelta(minutes=10)
    batch: int = 10
    parallel: int = 4
    recheck_every: timedelta = timedelta(seconds=30)
    retry_after: timedelta = timedelta(seconds=5)
    check_every: timedelta = timedelta(minutes=1)


@dataclass(frozen=True)
class Initiated:
    """What one claimed request came to: active (verified live), failed or expired, or still
    activating (not live yet, Azure did not answer, or stopped), and why."""

    request_id: str
    state: State
    detail: str
    resent: bool = True  # False: the policy's history held our initiate; not sent again


@dataclass(frozen=True)
class Extended:
    """What one extension came to: granted (`ends_at`: Azure's new end) or not, and why."""

    request_id: str
    ok: bool
    detail: str
    ends_at: datetime | None = None
    resent: bool = True


class Stopped(Exception):
    """The worker was told to stop during a wait; its claim is let go at once."""


@dataclass
class StoppableClock:
    """The worker's clock: sleeps end early (raising Stopped) once stop is set."""

    inner: Clock
    stop: threading.Event = field(default_factory=threading.Event)

    def now(self) -> datetime:
        return self.inner.now()

    def sleep(self, seconds: float) -> None:
        while seconds > 0:
            if self.stop.is_set():
                raise Stopped()
            step = min(seconds, 0.5)
            self.inner.sleep(step)
            seconds -= step
        if self.stop.is_set():
            raise Stopped()


class Steps:
    def __init__(
        self, store: Store, gateway: Gateway, clock: Clock, name: str, settings: WorkerSettings
    ) -> None:
        self.store = store
        self.gw = gateway
        self.clock = StoppableClock(clock)
        self.name = name
        self.settings = settings
        self._lock = threading.Lock()
        self._due: set[str] = set()  # VMs whose history to read at the next check
        self._checked: dict[str, datetime] = {}  # VM -> when its history was last read

    # --- initiate, verify, finish -----------------------------------------------------------

    def initiate(self, rec: RequestRecord) -> Initiated:
        """The initiate of one claimed request (unless the history holds it), the wait until
        access is live, and the store's record: active, failed or expired with Azure's
        answer, or still activating (the claim let go, to be looked at again)."""
        ref = vm_ref(rec.vm_id)
        answer: dict[str, Any] = {}
        resent = True
        try:
            if not rec.source:
                raise JitctlError(
                    "The request names no source address to let in.",
                    "Ask again with the address to connect from (--source-ip).",
                )
            policy, pvm = find_policy(self.gw, ref, rec.ports, None)
            earlier = sent_before(policy, rec)
            if earlier is not None:
                resent = False
                granted = result_of(policy, rec, earlier)
                answer["note"] = (
                    "The policy's request history holds this request's initiate (sent "
                    "earlier): not sent again."
                )
            else:
                if self.store.get(rec.id).state is State.REVOKED:
                    return self._unsent(rec)
                granted = initiate_checked(
                    self.gw,
                    policy,
                    pvm,
                    rec.source,
                    self.clock.now(),
                    rec.ports,
                    rec.duration,
                    justification(rec),
                    clock=self.clock,
                )
            answer["request"] = grant_json(granted)
            settled = self._settled(rec, granted, answer, resent)
            if settled is not None:
                return settled
            budget = self.settings.wait_timeout if resent else self._left(granted)
            if budget <= 0 and not _applied(granted):
                return self._not_live(rec, answer, None, resent)  # one list call, no event
            proof, polls = wait_until_effective(
                self.gw,
                ref,
                rec.source.split("/")[0],
                self.clock,
                rec.ports,
                max(budget, 0.0),
                firewall=pvm.public_ip_address or firewall_address(self.gw, ref),
            )
        except Stopped:
            log.info("stopped while initiating %s; its claim is let go", rec.id)
            gone = self._let_go(rec, timedelta(0), what="the worker was stopped", resent=resent)
            return gone or Initiated(rec.id, State.ACTIVATING, "stopped", resent)
        except WaitTimedOut as err:  # only after Azure took the initiate
            return self._not_live(rec, answer, err, resent)
        except Unavailable as err:  # sent or not, the history read next time says which
            log.warning("request %s: Azure did not answer (%s); trying again", rec.id, err.message)
            said = f"Azure did not answer: {err.message}"
            gone = self._let_go(
                rec, self.settings.retry_after, holder=False, what=said, resent=resent
            )
            return gone or Initiated(rec.id, State.ACTIVATING, said, resent)
        except JitctlError as err:  # refused, no policy, no rights: final
            answer["error"] = _error_json(err)
            return self._finish(rec, ok=False, azure=answer, reason=err.message, resent=resent)
        answer["verification"] = proof_json(proof, polls)
        ends = max(p.end_time for p in granted.ports)
        reach = {
            "verification": answer["verification"],
            "connect": connect_json(self.gw, pvm, proof, granted.ports),
        }
        return self._finish(rec, ok=True, azure=answer, ends_at=ends, resent=resent, access=reach)

    def _settled(
        self, rec: RequestRecord, granted: RequestResult, answer: dict[str, Any], resent: bool
    ) -> Initiated | None:
        """What Azure's history already decided for a grant found there: Failed (failed),
        ended or past its end before it was seen live (expired); None: still to verify."""
        ports = granted.ports
        said = status_words(ports)
        if any(p.status.lower() == "failed" for p in ports):
            why = f"Azure took the initiate but could not apply it: its history says {said}."
            return self._finish(rec, ok=False, azure=answer, reason=why, resent=resent)
        if max(p.end_time for p in ports) <= self.clock.now():
            why = f"Its end time passed before access was seen live (Azure's history: {said})."
        elif all(p.status.lower() not in IN_FORCE for p in ports):
            why = f"Azure ended the grant before access was seen live: its history says {said}."
        else:
            return None
        return self._finish(rec, ok=False, azure=answer, reason=why, resent=resent, expired=True)

    def _left(self, granted: RequestResult) -> float:
        """What is left of the wait, counted from when Azure took the initiate."""
        if granted.start_time is None:
            return 0.0
        spent = (self.clock.now() - granted.start_time).total_seconds()
        return self.settings.wait_timeout - spent

    def _not_live(
        self,
        rec: RequestRecord,
        answer: dict[str, Any],
        err: WaitTimedOut | None,
        resent: bool,
    ) -> Initiated:
        """Azure took the initiate; access is not live yet: the request stays activating and
        any replica looks again after `recheck_every`. After a wait, an event says so."""
        reason = None
        if err is not None:
            answer["error"] = _error_json(err)
            reason = (
                f"Azure took the initiate; access is not live yet: {err.message} The broker "
                "keeps checking until access is live, Azure's history says Failed, or the "
                "request's end time passes."
            )
        gone = self._let_go(
            rec,
            self.settings.recheck_every,
            reason,
            {"azure": answer},
            holder=False,
            what="Azure has not applied the initiate yet",
            resent=resent,
        )
        return gone or Initiated(rec.id, State.ACTIVATING, reason or "not live yet", resent)

    def _let_go(
        self,
        rec: RequestRecord,
        retry_in: timedelta,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
        holder: bool = True,
        what: str = "",
        resent: bool = True,
    ) -> Initiated | None:
        """Let the claim go (None), or give it up saying `what` the worker saw: revoked."""
        if self.store.let_go(
            rec.id,
            self.name,
            retry_in=retry_in,
            stale_after=self.settings.claim_stale_after,
            reason=reason,
            data=data,
            holder=holder,
        ):
            return None
        return self._revoked_meanwhile(rec, what, data or {}, resent)

    def _revoked_meanwhile(
        self, rec: RequestRecord, what: str, data: dict[str, Any], resent: bool = True
    ) -> Initiated | None:
        """Revoked while this worker activated it: the claim is given up, the request stays
        revoked, the event says what the worker saw. None: not revoked (the claim was lost)."""
        reason = overtaken(what)
        if not self.store.give_up_revoked(rec.id, self.name, reason=reason, data=data):
            return None
        log.info("request %s: %s", rec.id, reason)
        return Initiated(rec.id, State.REVOKED, reason, resent)

    def _unsent(self, rec: RequestRecord) -> Initiated:
        """Revoked after the claim, before the initiate was sent: it never is, and with
        nothing sent there is nothing to remove (the release is recorded at once)."""
        data = {"removed": [], "sent": False}
        self.store.give_up_revoked(rec.id, self.name, reason=UNSENT, data=data, unsent=True)
        log.info("request %s: %s", rec.id, UNSENT)
        return Initiated(rec.id, State.REVOKED, UNSENT, resent=False)

    def _finish(
        self,
        rec: RequestRecord,
        *,
        ok: bool,
        azure: dict[str, Any],
        ends_at: datetime | None = None,
        reason: str | None = None,
        resent: bool = True,
        access: dict[str, Any] | None = None,
        expired: bool = False,
    ) -> Initiated:
        try:
            done = self.store.finish_initiate(
                rec.id,
                self.name,
                ok=ok,
                azure=azure,
                ends_at=ends_at,
                reason=reason,
                access=access,
                expired=expired,
            )
        except WrongState as err:  # revoked meanwhile, or our claim went stale and was taken
            saw = "access was verified live" if ok else (reason or "it failed")
            gone = self._revoked_meanwhile(rec, saw, {"azure": azure}, resent)
            if gone is not None:
                return gone
            log.warning("request %s: %s", rec.id, err.message)
            return Initiated(rec.id, State.ACTIVATING, err.message, resent)
        if ok:  # a newer grant: the older ones it superseded end now in Azure
            with self._lock:
                self._due.add(rec.vm_id.lower())
        detail = "access verified live" if ok else (reason or "failed")
        return Initiated(rec.id, done.state, detail, resent)

    # --- active grants Azure ended early ------------------------------------------------------

    def check_grants(self) -> tuple[tuple[str, str], ...]:
        """Close the active requests whose grants Azure ended before their end time (a newer
        request superseded them, say): each VM's policy history is read once per
        `check_every`, and at once after a request on it went live. (request id, why)."""
        now = self.clock.now()
        with self._lock:
            due, self._due = self._due, set()
        by_vm: dict[str, list[RequestRecord]] = {}
        for rec in self.store.list_requests(states=(State.ACTIVE,), limit=ACTIVE_LIMIT):
            if rec.extend_to is None:  # an extension in flight: finishing it decides
                by_vm.setdefault(rec.vm_id.lower(), []).append(rec)
        closed: list[tuple[str, str]] = []
        for vm, recs in by_vm.items():
            last = self._checked.get(vm)
            if vm not in due and last is not None and now - last < self.settings.check_every:
                continue
            self._checked[vm] = now
            try:
                policies = policies_of_vm(self.gw, vm_ref(recs[0].vm_id))
            except JitctlError as err:
                log.warning("reading the JIT policy of %s: %s", vm, err.message)
                continue
            for rec in recs:
                policy = next((p for p in policies if own(p, rec)), None)
                ended = ended_in_azure(policy, rec) if policy else None
                data = {"azure": ended.azure, "superseded_by": ended.superseded_by} if ended else {}
                if ended and self.store.close_ended(rec.id, ended.reason, data):
                    closed.append((rec.id, ended.reason))
        self._checked = {vm: t for vm, t in self._checked.items() if vm in by_vm}
        return tuple(closed)

    # --- extend -------------------------------------------------------------------------------

    def extend(self, rec: RequestRecord) -> Extended | None:
        """The new initiate of one claimed extension, the wait until Azure applied it and
        access is live, and the store's record of Azure's end. None: stopped (the claim is
        let go), or the claim was lost (it is taken over, not re-sent)."""
        end = rec.extend_to
        if end is None:
            return None
        try:
            out = extend_in_azure(self.gw, self.clock, rec, end, self.settings.wait_timeout)
        except Stopped:
            log.info("stopped while extending %s; its claim is let go", rec.id)
            self.store.let_go_extend(rec.id, self.name)
            return None
        try:
            self.store.finish_extend(
                rec.id,
                self.name,
                end,
                ok=out.ok,
                azure=out.azure,
                ends_at=out.ends_at,
                reason=out.reason,
            )
        except WrongState as err:
            log.warning("request %s: %s", rec.id, err.message)
            return None
        return Extended(rec.id, out.ok, out.reason, out.ends_at, out.resent)


def _applied(granted: RequestResult) -> bool:
    return all(p.status.lower() == "initiated" for p in granted.ports)


def _error_json(err: JitctlError) -> dict[str, Any]:
    out = {"type": type(err).__name__, "message": err.message}
    if err.hint:
        out["hint"] = err.hint
    return out
