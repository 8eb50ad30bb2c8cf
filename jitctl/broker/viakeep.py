"""`--keep-alive --via-broker`: keep access open through the broker while a client runs.

A requester cannot lengthen a grant (an extension is an approver's), so before the grant ends
this asks the broker again, as `--keep-alive` asks Azure again: a new request for the same VM,
port, source, reason and ticket. The broker's rules decide it as any request: auto-approved,
it is active in a moment and its newer initiate supersedes the older grant in Azure; needing
approval, it is pending again, and this says so, keeps looking, and when the grant in force
ends first says that access ended and stops. A refused or denied renewal is said once and not
asked again (approvers are not asked over and over). A renewal still pending when the client
exits or access ends is cancelled, so no one is asked to approve what no one uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jitctl.broker.via import WAITING, BrokerApi, BrokerAsk, BrokerReady, ready_of
from jitctl.clock import Clock
from jitctl.errors import ExitCode, JitctlError
from jitctl.services.keepalive import KeepAliveReport, Renewal, renew_margin

LOOK_EVERY = 5.0  # seconds between looks at a renewal the broker has not made active yet
RETRY_AFTER = timedelta(minutes=1)  # after the broker could not be reached
APPROVAL_TIME = timedelta(
    minutes=10
)  # asked this early (at most half the grant): a person may decide
# the broker said no: asking again would be refused again, or pester the approvers
FINAL_ANSWERS = (ExitCode.BAD_INPUT, ExitCode.FORBIDDEN, ExitCode.REFUSED, ExitCode.NOT_SIGNED_IN)


def margin(length: timedelta) -> timedelta:
    """Ask this long before the end: as direct keep-alive, or earlier for an approval."""
    return max(renew_margin(length), min(APPROVAL_TIME, length / 2))


@dataclass
class BrokerKeepAlive:
    api: BrokerApi
    ask: BrokerAsk
    clock: Clock
    ready: BrokerReady  # the grant in force
    on_event: Callable[[str], None] = lambda _msg: None
    on_moved: Callable[[int], None] | None = None  # the firewall maps the port anew
    on_readdressed: Callable[[str], None] | None = None  # the VM's public address changed
    step: float = 1.0  # seconds between looks at the client
    renewals: list[Renewal] = field(default_factory=list)
    _pending: dict[str, Any] | None = None
    _asked_at: datetime | None = None
    _said_waiting: bool = False
    _given_up: bool = False

    def run(self, running: Callable[[], bool]) -> KeepAliveReport:
        length = self.ask.duration or (self.ready.end_time - self.clock.now())
        next_try = self.ready.end_time - margin(max(length, timedelta(minutes=1)))
        next_look = self.clock.now()
        while running():
            now = self.clock.now()
            if self._pending is not None and now >= next_look:
                if self._look():
                    next_try = self.ready.end_time - margin(length)
                next_look = now + timedelta(seconds=LOOK_EVERY)
                continue
            if now >= self.ready.end_time:
                waiting = self._pending
                self._say(
                    f"Access to {self.ready.vm_name} ended at {self.ready.end_time:%H:%M} UTC"
                    + (f" before renewal request {waiting['id']} was approved" if waiting else "")
                    + ": new connections are refused; established ones stay."
                )
                self._cancel("access ended")
                return self._report(True)
            if self._pending is None and not self._given_up and now >= next_try:
                if not self._renew():
                    next_try = min(now + RETRY_AFTER, self.ready.end_time)
                next_look = now
                continue
            wait = self.step
            if self._pending is None and not self._given_up:
                wait = min(wait, max((next_try - now).total_seconds(), 0.0))
            self.clock.sleep(max(wait, 0.01))
        self._cancel("the client exited")
        return self._report(False)

    def _say(self, message: str) -> None:
        self.on_event(message)

    def _report(self, ended: bool) -> KeepAliveReport:
        return KeepAliveReport(tuple(self.renewals), self.ready.end_time, ended)

    def _renew(self) -> bool:
        """Ask the broker again; False when it could not be reached (try again later)."""
        now = self.clock.now()
        try:
            doc = self.api.call("POST", "/requests", self.ask.body())
        except JitctlError as err:
            final = err.code in FINAL_ANSWERS
            self._say(
                f"The broker {'refused' if final else 'could not take'} the renewal of access "
                f"to {self.ready.vm_name}: {err.message} Access lasts until "
                f"{self.ready.end_time:%H:%M} UTC"
                + ("; not asking again." if final else "; trying again in a minute.")
            )
            self.renewals.append(Renewal(now, None, False, 0, err.message))
            self._given_up = final
            return final
        self._pending, self._asked_at, self._said_waiting = doc, now, False
        self._say(f"Asked the broker to renew access: request {doc['id']} is {doc['state']}.")
        return True

    def _look(self) -> bool:
        """One look at the pending renewal; True once it is active and in force."""
        assert self._pending is not None
        rid = self._pending["id"]
        try:
            doc = self.api.call("GET", f"/requests/{rid}")
        except JitctlError as err:
            self._say(f"Could not read renewal request {rid}: {err.message}")
            return False
        state = doc["state"]
        if state in WAITING:
            self._pending = doc
            if state == "pending" and not self._said_waiting:
                self._said_waiting = True
                self._say(
                    f"Renewal request {rid} waits for approval (the rules ask for it); access "
                    f"lasts until {self.ready.end_time:%H:%M} UTC. Approvers: jitctl broker "
                    f"approve {rid}"
                )
            return False
        self._pending = None
        at = self._asked_at or self.clock.now()
        if state != "active":
            self._given_up = True
            self._say(
                f"Renewal request {rid} is {state}: access to {self.ready.vm_name} ends at "
                f"{self.ready.end_time:%H:%M} UTC; not asking again."
            )
            self.renewals.append(Renewal(at, None, False, 0, f"renewal {state}"))
            return False
        try:
            newer = ready_of(doc, self.ask, reused=False)
        except JitctlError as err:
            self._say(f"Renewal request {rid} is active, but {err.message}")
            self.renewals.append(Renewal(at, None, False, 0, err.message))
            return False
        before, self.ready = self.ready, newer
        self.renewals.append(Renewal(at, newer.end_time, True, 0))
        self._say(
            f"Renewed access to {newer.vm_name} until {newer.end_time:%H:%M} UTC "
            f"(broker request {rid})."
        )
        if newer.connect_port != before.connect_port and self.on_moved is not None:
            self._say(
                f"Connect to port {newer.connect_port} now (was {before.connect_port}); "
                "open connections stay."
            )
            self.on_moved(newer.connect_port)
        if newer.connect_host != before.connect_host and self.on_readdressed is not None:
            self._say(f"Connect to {newer.connect_host} now (was {before.connect_host}).")
            self.on_readdressed(newer.connect_host)
        return True

    def _cancel(self, why: str) -> None:
        if self._pending is None:
            return
        rid, self._pending = self._pending["id"], None
        try:
            self.api.call("POST", f"/requests/{rid}/cancel", {"comment": f"keep-alive: {why}"})
        except JitctlError as err:
            self._say(f"Could not cancel renewal request {rid}: {err.message}")
            return
        self._say(f"Cancelled renewal request {rid}: {why}.")
