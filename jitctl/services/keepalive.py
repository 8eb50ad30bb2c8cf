"""Keep access open while a client runs: request again before the grant ends.

A newer request for the same VM and port supersedes the older one: Azure removes the old allow
rule when it applies the new one (statusReason NewerRequestInitiated). So the renewal is made
early enough for the new rule to be applied before the old one's end, and access is verified at
each poll until the newer grant is live, so a gap in the switch is seen and said.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from jitctl.clock import Clock
from jitctl.errors import JitctlError
from jitctl.gateway import Gateway
from jitctl.ids import same_id
from jitctl.services.access import find_policy, initiate_checked
from jitctl.services.connect import AccessRequest, public_host
from jitctl.services.query import active_grants
from jitctl.services.verify import VerifyResult, verify

MIN_MARGIN = timedelta(minutes=2)
RETRY_AFTER = timedelta(minutes=1)
END_SLACK = timedelta(minutes=1)  # Azure may round the end time it records


def renew_margin(duration: timedelta) -> timedelta:
    """Renew when less than this is left: max(2 min, 10% of the grant's length)."""
    return max(MIN_MARGIN, duration / 10)


@dataclass(frozen=True)
class Renewal:
    at: datetime
    until: datetime | None  # None: the renewal failed
    continuous: bool  # access was effective at every poll of the switch
    polls: int
    problem: str | None = None


@dataclass(frozen=True)
class KeepAliveReport:
    renewals: tuple[Renewal, ...]
    end_time: datetime  # the end of the last grant
    ended: bool  # the last grant ended while the client ran


@dataclass
class KeepAlive:
    """What to keep open, and how; `run(running)` renews until `running()` is false."""

    gw: Gateway
    req: AccessRequest  # checked: the VM, source, port, duration, justification and policy
    clock: Clock
    end_time: datetime  # the end of the grant in force
    on_event: Callable[[str], None] | None = None
    step: float = 1.0  # seconds between looks at the client
    switch_timeout: float = 300.0  # seconds to wait for the newer grant to be applied
    # Behind Azure Firewall: the mapped port of the grant in force, and who to tell when a
    # renewal maps the port anew (the older DNAT rule goes when the newer one is applied).
    mapped_port: int | None = None
    on_moved: Callable[[int], None] | None = None
    # Through the VM's public IP: the address in use, read again after each renewal (a dynamic
    # one changes when the VM is deallocated and started), and who to tell when it changed.
    connect_host: str | None = None
    on_readdressed: Callable[[str], None] | None = None
    _firewall: str | None = None
    _public_ip_id: str | None = None

    def _say(self, message: str) -> None:
        if self.on_event is not None:
            self.on_event(message)

    def _length(self) -> timedelta:
        _, pvm = find_policy(self.gw, self.req.vm, [self.req.port], self.req.policy_name)
        rule = pvm.port(self.req.port)
        maximum = rule.max_duration if rule else timedelta(hours=3)
        return min(self.req.duration, maximum) if self.req.duration else maximum

    def run(self, running: Callable[[], bool]) -> KeepAliveReport:
        renewals: list[Renewal] = []
        length = self.req.duration or timedelta(hours=3)
        with contextlib.suppress(JitctlError):  # else the first renewal says what is wrong
            length = self._length()
        next_try = self.end_time - renew_margin(length)
        while running():
            now = self.clock.now()
            if now >= self.end_time:
                self._say(
                    f"Access to {self.req.vm.name} ended at {self.end_time:%H:%M} UTC: new "
                    "connections are refused; established ones stay."
                )
                return KeepAliveReport(tuple(renewals), self.end_time, True)
            if now >= next_try:
                renewal = self.renew()
                renewals.append(renewal)
                if renewal.until is not None:
                    next_try = renewal.until - renew_margin(length)
                else:
                    next_try = min(self.clock.now() + RETRY_AFTER, self.end_time)
                continue
            self.clock.sleep(min(self.step, (next_try - now).total_seconds()))
        return KeepAliveReport(tuple(renewals), self.end_time, False)

    def renew(self) -> Renewal:
        """One renewal: request again, then poll until the newer grant is live, checking that
        access stays effective at each poll."""
        now = self.clock.now()
        name = self.req.vm.name
        try:
            policy, pvm = find_policy(self.gw, self.req.vm, [self.req.port], self.req.policy_name)
            self._firewall = pvm.public_ip_address
            rule = pvm.port(self.req.port)
            length = self.req.duration or (rule.max_duration if rule else None)
            if rule is not None and length is not None:
                length = min(length, rule.max_duration)
            request = initiate_checked(
                self.gw,
                policy,
                pvm,
                self.req.source,
                now,
                [self.req.port],
                length,
                self.req.justification,
                clock=self.clock,
            )
        except JitctlError as err:
            self._say(
                f"Could not renew access to {name}: {err.message} It lasts until "
                f"{self.end_time:%H:%M} UTC; trying again in a minute."
            )
            return Renewal(now, None, False, 0, err.message)
        until = request.ports[0].end_time
        continuous, polls, problem = self._switch(until)
        if problem is None:
            self.end_time = until
            self._say(f"Renewed access to {name} until {until:%H:%M} UTC.")
            self._follow(request.ports[0].mapped_port)
            self._readdress()
        else:
            self._say(
                f"Renewal of access to {name} was requested, but {problem}. It lasts until "
                f"{self.end_time:%H:%M} UTC."
            )
        if not continuous:
            self._say(f"Access to {name} was not effective during the switch to the newer grant.")
        return Renewal(now, until if problem is None else None, continuous, polls, problem)

    def _follow(self, mapped: int | None) -> None:
        """A renewal behind Azure Firewall may get another mapped port: follow it."""
        if mapped is None or mapped == self.mapped_port or not self._firewall:
            return
        before, self.mapped_port = self.mapped_port, mapped
        self._say(
            f"Azure Firewall now maps port {self.req.port} of {self.req.vm.name} to "
            f"{self._firewall}:{mapped}"
            + (f" (was {before})" if before else "")
            + "; new connections go there, open ones stay."
        )
        if self.on_moved is not None:
            self.on_moved(mapped)

    def _readdress(self) -> None:
        """The VM's public address now; when it changed, say so and tell `on_readdressed`."""
        if self.connect_host is None or self._public_ip_id is None:
            return
        name = self.req.vm.name
        try:
            host = public_host(self.gw, self._public_ip_id)
        except JitctlError as err:
            self._say(f"Could not read the public address of {name}: {err.message}")
            return
        if not host:
            self._say(
                f"The public IP of {name} has no address now (the VM is deallocated?): "
                f"connections to {self.connect_host} fail until it is started again."
            )
            return
        if host == self.connect_host:
            return
        before, self.connect_host = self.connect_host, host
        self._say(
            f"The public address of {name} is now {host} (was {before}: the VM was "
            "deallocated and started again); connect again there."
        )
        if self.on_readdressed is not None:
            self.on_readdressed(host)

    def _applied(self, until: datetime) -> bool:
        policy, _ = find_policy(self.gw, self.req.vm, [self.req.port], self.req.policy_name)
        return any(
            same_id(g.vm_id, self.req.vm.id)
            and g.port == self.req.port
            and g.source == self.req.source
            and (g.status or "").lower() == "initiated"
            and abs(g.end_time - until) <= END_SLACK
            for g in active_grants(policy, self.clock.now())
        )

    def _verify(self) -> VerifyResult:
        result = verify(
            self.gw,
            self.req.vm,
            self.req.source,
            [self.req.port],
            firewall=self._firewall,
            now=self.clock.now(),
        )
        self._public_ip_id = result.public_ip_id
        return result

    def _switch(self, until: datetime) -> tuple[bool, int, str | None]:
        """(effective at every poll, polls, what went wrong or None)."""
        start = self.clock.now()
        delay, polls, continuous = 1.0, 0, True
        while True:
            polls += 1
            result = self._verify()
            continuous = continuous and result.effective
            if self._applied(until):
                if not result.effective:  # applied between the two reads: read once more
                    result = self._verify()
                if result.effective:
                    return continuous, polls, None
                return continuous, polls, f"access is not effective: {result.problem()}"
            elapsed = (self.clock.now() - start).total_seconds()
            if elapsed >= self.switch_timeout:
                return continuous, polls, "the newer grant was not applied in time"
            self.clock.sleep(min(delay, self.switch_timeout - elapsed))
            delay = min(5.0, delay * 1.6)
