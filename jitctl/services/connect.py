"""The pre-connect step: reuse or request a grant, wait until it is live, find where to connect."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from jitctl.clock import Clock
from jitctl.errors import Refused
from jitctl.gateway import Gateway
from jitctl.ids import VmRef, name_of, same_id
from jitctl.model import JitPolicy, PolicyVm
from jitctl.parsing import (
    check_duration,
    check_justification,
    checkable_address,
    parse_port,
    parse_source,
)
from jitctl.services.access import RequestResult, find_policy, initiate_checked
from jitctl.services.query import Grant, active_grants
from jitctl.services.verify import VerifyResult, wait_until_effective


@dataclass(frozen=True)
class AccessReady:
    """Access that is live now: the grant (reused or new) and the proof."""

    vm_id: str
    port: int
    source: str
    end_time: datetime
    reused: bool
    request: RequestResult | None
    verification: VerifyResult
    connect_host: str
    connect_port: int
    via: str  # "public" | "private" | "firewall"

    @property
    def vm_name(self) -> str:
        return name_of(self.vm_id)


def reusable_grant(
    policy: JitPolicy, vm_id: str, port: int, source: str, now: datetime, min_remaining: timedelta
) -> Grant | None:
    """A live grant for this VM, port and source with at least `min_remaining` left."""
    for grant in active_grants(policy, now):
        if (
            same_id(grant.vm_id, vm_id)
            and grant.port == port
            and grant.source == source
            and grant.end_time - now >= min_remaining
        ):
            return grant
    return None


def public_host(gw: Gateway, public_ip_id: str) -> str | None:
    """Where to reach a VM's public IP now: its DNS name, else its address (None while it has
    none). Read each time: a dynamic public IP gets another address when the VM is deallocated
    and started again (a DNS name follows it by itself)."""
    pip = gw.get_public_ip(public_ip_id)
    return pip.fqdn or pip.ip_address


def connect_target(
    gw: Gateway, pvm: PolicyVm, result: VerifyResult, port: int, private: bool, mapped: int | None
) -> tuple[str, int, str]:
    """Where a client connects once access is live: (host, port, via), via "private",
    "firewall" (its address and the DNAT's mapped port) or "public"; Refused when the VM has
    no public address to connect to."""
    if private:
        return result.private_ip, port, "private"
    if pvm.public_ip_address:  # behind Azure Firewall: the firewall's address and the DNAT port
        return pvm.public_ip_address, mapped or port, "firewall"
    if not result.public_ip_id:
        raise Refused(
            f"VM {result.vm_name} has no public IP address.",
            "Connect over VPN or peering with --private, or give the VM a public IP.",
        )
    host = public_host(gw, result.public_ip_id)  # now, after the wait, right before the launch
    if not host:
        raise Refused(
            f"The public IP of VM {result.vm_name} has no address yet.", "Start the VM first."
        )
    return host, port, "public"


@dataclass(frozen=True)
class AccessRequest:
    """What the pre-connect step is asked for: the VM, who to let in, the port, and how long."""

    vm: VmRef
    source: str
    port: int
    duration: timedelta | None = None  # None: the policy's maximum
    justification: str | None = None
    min_remaining: timedelta = timedelta(minutes=15)  # reuse a live grant with this much left
    timeout: timedelta = timedelta(minutes=5)  # how long to wait until access is effective
    private: bool = False  # connect to the private address (VPN or peering)
    policy_name: str | None = None  # the policy to use when several cover the VM

    def checked(self) -> AccessRequest:
        """The same request with its values checked (the CLI's refusals, for library callers;
        durations may also be given as seconds)."""
        return replace(
            self,
            min_remaining=check_duration(self.min_remaining, minimum=timedelta(0)),
            timeout=check_duration(self.timeout, minimum=timedelta(seconds=1)),
            source=checkable_address(parse_source(self.source)),
            port=parse_port(self.port),
            justification=check_justification(self.justification),
            duration=check_duration(self.duration) if self.duration is not None else None,
        )


def ensure_access(
    gw: Gateway,
    req: AccessRequest,
    clock: Clock,
    on_event: Callable[[str], None] | None = None,
    progress: Callable[[float, VerifyResult], None] | None = None,
) -> AccessReady:
    """Reuse a grant with enough time left, else request one; then wait until it is effective."""
    say = on_event or (lambda _msg: None)
    req = req.checked()  # before any ARM call
    ref, source, port = req.vm, req.source, req.port
    now = clock.now()
    policy, pvm = find_policy(gw, ref, [port], req.policy_name)
    grant = reusable_grant(policy, pvm.id, port, source, now, req.min_remaining)
    request = None
    mapped = None
    if grant is not None:
        end, mapped = grant.end_time, grant.mapped_port
        say(f"Reusing the grant for {source} on port {port}, until {end:%H:%M} UTC.")
    else:
        request = initiate_checked(
            gw, policy, pvm, source, now, [port], req.duration, req.justification, clock=clock
        )
        for note in request.notes:
            say(note)
        end, mapped = request.ports[0].end_time, request.ports[0].mapped_port
        say(f"Requested port {port} for {source} until {end:%H:%M} UTC.")
    timeout = req.timeout.total_seconds()
    result, _ = wait_until_effective(
        gw, ref, source, clock, [port], timeout, progress=progress, firewall=pvm.public_ip_address
    )
    trust = result.trust_note()
    if trust:  # the firewall could not be read: say so once, the result says it too
        say(f"warning: {trust}.")
    host, connect_port, via = connect_target(gw, pvm, result, port, req.private, mapped)
    return AccessReady(
        pvm.id, port, source, end, grant is not None, request, result, host, connect_port, via
    )
