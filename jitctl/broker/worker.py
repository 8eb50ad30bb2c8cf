"""The broker's worker: the Azure side of approved requests, and the clean-up around them.

One round (`Worker.run_once`): close what is due (`store.sweep`: pending past its time to
live, active past its end), initiate what was approved, remove the allow rules of revoked
requests, and send the notifications due. `run_forever` does the same on a timer for
`jitctl broker serve`, the initiates on a small thread pool so that one slow wait does not
hold the others, the notifications on a thread of their own so that a slow receiver holds
nothing.

Exactly once: a request is claimed (store: one replica wins) before its initiate is sent. A
broker killed between the claim and the initiate, or during the wait, leaves a claim that goes
stale; whichever replica reclaims it first reads the JIT policy's request history and, when
the initiate is there (its justification starts `broker:<request id>:`), waits on that grant
instead of sending another.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jitctl.broker.azureside import (
    grant_json,
    justification,
    result_of,
    sent_before,
    vm_ref,
)
from jitctl.broker.errors import StoreUnavailable, WrongState
from jitctl.broker.extension import extend_in_azure
from jitctl.broker.lifecycle import State
from jitctl.broker.notify import Notifier, SendResult
from jitctl.broker.reach import connect_json, proof_json
from jitctl.broker.records import RequestRecord
from jitctl.broker.store import Store
from jitctl.clock import Clock
from jitctl.errors import JitctlError, NotFound, Unavailable
from jitctl.gateway import Gateway
from jitctl.ids import VmRef
from jitctl.model import Nsg, SecurityRule
from jitctl.nsgeval import is_jit_rule
from jitctl.services.access import find_policy, initiate_checked
from jitctl.services.firewall import firewall_address
from jitctl.services.topology import read_nsgs, read_path
from jitctl.services.verify import wait_until_effective

log = logging.getLogger("jitctl.broker.worker")

STOP_CHECK = 0.2  # seconds: how soon a worker waiting for work notices it was told to stop

# What revoking does, in the words every release event and the docs use.
REVOKE_NOTE = (
    "Azure has no call to end a JIT request early: the broker removed the JIT allow rule from "
    "the VM's network security groups. Connections already open survive until they close, and "
    "the JIT policy's request history still lists the request until its end time."
)


@dataclass(frozen=True)
class WorkerSettings:
    """wait_timeout: how long access may take to go live after the initiate (Azure: about a
    minute, no promise). claim_stale_after: when another replica may take over a claim; longer
    than an initiate and its wait, so a live replica's claim is never taken."""

    wait_timeout: float = 180.0
    claim_stale_after: timedelta = timedelta(minutes=10)
    batch: int = 10
    parallel: int = 4


@dataclass(frozen=True)
class Initiated:
    """What one claimed request came to: active (verified live) or failed, and why."""

    request_id: str
    state: State
    detail: str
    resent: bool = True  # False: the policy's history held our initiate; not sent again


@dataclass(frozen=True)
class Released:
    request_id: str
    removed: tuple[str, ...]  # "<nsg name>/<rule name>"
    error: str | None = None


@dataclass(frozen=True)
class Extended:
    """What one extension came to: granted (`ends_at`: Azure's new end) or not, and why."""

    request_id: str
    ok: bool
    detail: str
    ends_at: datetime | None = None
    resent: bool = True


@dataclass(frozen=True)
class Round:
    swept: tuple[tuple[str, State], ...] = ()
    initiated: tuple[Initiated, ...] = ()
    released: tuple[Released, ...] = ()
    notes: SendResult | None = None
    extended: tuple[Extended, ...] = ()


def worker_name() -> str:
    """This replica's name in claims and events: host, process, and a random part."""
    return f"broker@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Stopped(Exception):
    """The worker was told to stop during a wait; the claim stays, to be taken over."""


@dataclass
class _StoppableClock:
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


class Worker:
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
        self.store = store
        self.gw = gateway
        self.clock = _StoppableClock(clock)
        self.name = name or worker_name()
        self.notifier = notifier
        self.settings = settings or WorkerSettings()

    # --- one round ----------------------------------------------------------------------------

    def run_once(self) -> Round:
        """Sweep, initiate every claimed request (side by side) and wait for each, release
        revoked requests, send the notifications due; what happened."""
        swept = tuple(self.store.sweep())
        claimed = self.store.claim_initiates(
            self.name, limit=self.settings.batch, stale_after=self.settings.claim_stale_after
        )
        with ThreadPoolExecutor(max(1, self.settings.parallel), "jitctl-broker") as pool:
            initiated = tuple(pool.map(self.initiate, claimed))
        released = self.release_due()
        extended = self.extend_due()
        notes = self.notifier.send_due() if self.notifier else None
        return Round(swept, initiated, released, notes, extended)

    def release_due(self) -> tuple[Released, ...]:
        claimed = self.store.claim_releases(self.name, stale_after=self.settings.claim_stale_after)
        return tuple(r for rec in claimed if (r := self.release(rec)) is not None)

    def extend_due(self) -> tuple[Extended, ...]:
        claimed = self.store.claim_extends(self.name, stale_after=self.settings.claim_stale_after)
        return tuple(e for rec in claimed if (e := self.extend(rec)) is not None)

    def extend(self, rec: RequestRecord) -> Extended | None:
        """The new initiate of one claimed extension, the wait until Azure applied it and
        access is live, and the store's record of Azure's end. None: stopped, or the claim
        was lost (it is taken over, not re-sent)."""
        end = rec.extend_to
        if end is None:
            return None
        try:
            out = extend_in_azure(self.gw, self.clock, rec, end, self.settings.wait_timeout)
        except Stopped:
            log.info("stopped while extending %s; the claim will be taken over", rec.id)
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

    # --- initiate, verify, finish -----------------------------------------------------------

    def initiate(self, rec: RequestRecord) -> Initiated:
        """The initiate of one claimed request (unless the history holds it), the wait until
        access is live, and the store's finish: active, or failed with Azure's answer."""
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
                    "The policy's request history holds this request's initiate (a broker "
                    "stopped after sending it): not sent again."
                )
            else:
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
            proof, polls = wait_until_effective(
                self.gw,
                ref,
                rec.source.split("/")[0],
                self.clock,
                rec.ports,
                self.settings.wait_timeout,
                firewall=pvm.public_ip_address or firewall_address(self.gw, ref),
            )
        except Stopped:
            log.info("stopped while initiating %s; the claim will be taken over", rec.id)
            return Initiated(rec.id, State.ACTIVATING, "stopped", resent)
        except JitctlError as err:
            answer["error"] = {"type": type(err).__name__, "message": err.message}
            if err.hint:
                answer["error"]["hint"] = err.hint
            return self._finish(rec, ok=False, azure=answer, reason=err.message, resent=resent)
        answer["verification"] = proof_json(proof, polls)
        ends = max(p.end_time for p in granted.ports)
        reach = {
            "verification": answer["verification"],
            "connect": connect_json(self.gw, pvm, proof, granted.ports),
        }
        return self._finish(rec, ok=True, azure=answer, ends_at=ends, resent=resent, access=reach)

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
    ) -> Initiated:
        try:
            done = self.store.finish_initiate(
                rec.id, self.name, ok=ok, azure=azure, ends_at=ends_at, reason=reason, access=access
            )
        except WrongState as err:  # our claim went stale and another replica took it
            log.warning("request %s: %s", rec.id, err.message)
            return Initiated(rec.id, State.ACTIVATING, err.message, resent)
        detail = "access verified live" if ok else (reason or "failed")
        return Initiated(rec.id, done.state, detail, resent)

    # --- revoke: remove the allow rules -------------------------------------------------------

    def release(self, rec: RequestRecord) -> Released | None:
        """Remove the JIT allow rules this request opened (same VM, port, source) from every
        NSG on the VM's paths; the release event says what was removed and what was not. None:
        Azure did not answer; the claim goes stale and is tried again."""
        ref = vm_ref(rec.vm_id)
        data: dict[str, Any] = {"note": REVOKE_NOTE}
        removed: list[str] = []
        error: str | None = None
        try:
            for nsg, rule in self._allow_rules_of(rec, ref):
                try:
                    self.gw.delete_nsg_rule(nsg.id, rule.name)
                except NotFound:
                    continue  # expired or removed meanwhile: gone either way
                removed.append(f"{nsg.name}/{rule.name}")
            fw = firewall_address(self.gw, ref)
            if fw:
                data["firewall"] = (
                    f"The VM is reached through Azure Firewall {fw}: its JIT DNAT rule was not "
                    "removed and lets the source in until the request's end time."
                )
        except Unavailable as err:
            log.warning("request %s: releasing failed (%s); will try again", rec.id, err.message)
            return None
        except JitctlError as err:  # e.g. Forbidden: no network write right
            error = err.message
            data["error"] = {"type": type(err).__name__, "message": err.message, "hint": err.hint}
        data["removed"] = removed
        if error:
            reason = f"The allow rules were not removed: {error}"
        elif removed:
            reason = f"Removed {len(removed)} JIT allow rule(s); open connections survive."
        else:
            reason = "No JIT allow rule for this request was left to remove."
        try:
            self.store.finish_release(rec.id, self.name, reason=reason, data=data)
        except WrongState as err:
            log.warning("request %s: %s", rec.id, err.message)
            return None
        return Released(rec.id, tuple(removed), error)

    def _allow_rules_of(self, rec: RequestRecord, ref: VmRef) -> list[tuple[Nsg, SecurityRule]]:
        vm = self.gw.get_vm(ref)
        found: list[tuple[Nsg, SecurityRule]] = []
        seen: set[str] = set()
        for nic in vm.nics:
            path = read_path(self.gw, vm, nic.id)
            for nsg in read_nsgs(self.gw, path):
                if nsg is None or nsg.id.lower() in seen:
                    continue
                seen.add(nsg.id.lower())
                found += [(nsg, r) for r in nsg.rules if _opened_by(r, rec, path.private_ip)]
        return found

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

            def one_round() -> None:
                nonlocal busy
                busy = {f for f in busy if not f.done()}
                free = self.settings.parallel - len(busy)
                if free > 0:  # first: an approval's initiate waits for no sweep
                    for rec in self.store.claim_initiates(
                        self.name, limit=free, stale_after=self.settings.claim_stale_after
                    ):
                        job = pool.submit(self.initiate, rec)
                        # a slot set free takes the next approved request at once
                        job.add_done_callback(lambda _: self.store.work_ready.set())
                        busy.add(job)
                self.store.sweep()
                self.release_due()
                self.extend_due()

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


def _opened_by(rule: SecurityRule, rec: RequestRecord, private_ip: str) -> bool:
    """A JIT allow rule for this request: inbound, to the VM's address, one of its ports,
    from its source (as Azure writes it: with or without /32)."""
    if not (is_jit_rule(rule) and rule.access.lower() == "allow"):
        return False
    if rule.direction.lower() != "inbound":
        return False
    sources = {s.removesuffix("/32") for s in (*rule.source_address_prefixes,) if s}
    if rule.source_address_prefix:
        sources.add(rule.source_address_prefix.removesuffix("/32"))
    if (rec.source or "").removesuffix("/32") not in sources:
        return False
    dests = {*rule.destination_address_prefixes, rule.destination_address_prefix or ""}
    if private_ip not in dests:
        return False
    ports = {*rule.destination_port_ranges, rule.destination_port_range or ""}
    return any(str(p) in ports for p in rec.ports)
