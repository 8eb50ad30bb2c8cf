"""Read-only views: policies with their VMs, ports and current grants; request history.

A grant's `state` is what it is now, read from Azure's per-port status and the clock: only an
`Initiated` grant whose end is ahead is "active". `Initiating` (outside the SDK's enum) means
the 202 was accepted and the rule is not there yet; a request Azure could not apply stays
`Initiating` or becomes `Failed`, and neither opens anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from jitctl.gateway import Gateway
from jitctl.ids import VmRef, name_of, same_id, segments
from jitctl.model import JitPolicy, PortRule
from jitctl.parsing import check_scope
from jitctl.services.reads import policies_of_vm, require_policies

if TYPE_CHECKING:
    from jitctl.fleet import FleetGateway

ACTIVE = "active"
INITIATING = "initiating"
FAILED = "failed"
EXPIRED = "expired"
SUPERSEDED = "superseded"
REVOKED = "revoked"
# Still to be reckoned with until their end: live, pending, or refused behind the 202.
CURRENT = (ACTIVE, INITIATING, FAILED)


def grant_state(status: str | None, reason: str | None, end_time: datetime, now: datetime) -> str:
    """What a grant is at `now`. Azure's statuses are open strings (the SDK enum lacks
    Initiating and Failed): an unknown one is shown as itself, lowercased."""
    s, r = (status or "").lower(), (reason or "").lower()
    ended = end_time <= now
    if s in ("initiated", "initiating"):  # Azure may lag in writing Revoked/Expired
        return EXPIRED if ended else (ACTIVE if s == "initiated" else INITIATING)
    if s == "revoked":
        return {"expired": EXPIRED, "newerrequestinitiated": SUPERSEDED}.get(r, REVOKED)
    return s or "unknown"


@dataclass(frozen=True)
class Grant:
    policy_id: str
    vm_id: str
    port: int
    source: str
    start_time: datetime | None
    end_time: datetime
    status: str
    status_reason: str | None
    requestor: str | None
    justification: str | None
    mapped_port: int | None
    state: str  # active, initiating, failed, expired, superseded, revoked (or Azure's own word)

    @property
    def subscription_id(self) -> str:
        return segments(self.vm_id).get("subscriptions", "")

    @property
    def vm_name(self) -> str:
        return name_of(self.vm_id)

    @property
    def resource_group(self) -> str:
        return segments(self.vm_id).get("resourcegroups", "")


@dataclass(frozen=True)
class VmView:
    vm_id: str
    ports: tuple[PortRule, ...]
    grants: tuple[Grant, ...]

    @property
    def name(self) -> str:
        return name_of(self.vm_id)


@dataclass(frozen=True)
class PolicyView:
    policy_id: str
    name: str
    resource_group: str
    location: str
    vms: tuple[VmView, ...]


@dataclass(frozen=True)
class PolicyList:
    policies: tuple[PolicyView, ...]


def grants(policy: JitPolicy, now: datetime) -> list[Grant]:
    """Every port of every request in the policy's history, newest first, with its state.
    Requests of the same second keep the history's order: Azure appends, the last is newest."""
    out = []
    for index, req in enumerate(policy.requests):
        for vm in req.vms:
            for port in vm.ports:
                grant = Grant(
                    policy.id,
                    vm.id,
                    port.number,
                    port.source,
                    req.start_time,
                    port.end_time,
                    port.status,
                    port.status_reason,
                    req.requestor,
                    req.justification,
                    port.mapped_port,
                    grant_state(port.status, port.status_reason, port.end_time, now),
                )
                out.append((grant.start_time or grant.end_time, index, grant))
    return [g for _, _, g in sorted(out, key=lambda t: t[:2], reverse=True)]


def active_grants(policy: JitPolicy, now: datetime) -> list[Grant]:
    """The grants Azure says are applied and not yet over: the ones that open a port."""
    return [g for g in grants(policy, now) if g.state == ACTIVE]


def current_grants(policy: JitPolicy, now: datetime) -> list[Grant]:
    """Grants to reckon with now: active ones, and the newest request of a VM's port while it
    is pending or failed (a newer request makes an older pending or failed one moot)."""
    out, seen = [], set()
    for g in grants(policy, now):  # newest first
        key = (g.vm_id.lower(), g.port)
        if g.state == ACTIVE or (g.state in CURRENT and key not in seen):
            out.append(g)
        seen.add(key)
    return out


def view(policy: JitPolicy, now: datetime, vm_id: str | None = None) -> PolicyView:
    live = current_grants(policy, now)
    vms = tuple(
        VmView(v.id, v.ports, tuple(g for g in live if same_id(g.vm_id, v.id)))
        for v in policy.vms
        if vm_id is None or same_id(v.id, vm_id)
    )
    return PolicyView(policy.id, policy.name, policy.resource_group, policy.location, vms)


def list_policies(
    gw: Gateway, subscription_id: str, resource_group: str | None, now: datetime
) -> PolicyList:
    check_scope(subscription_id, resource_group)
    return PolicyList(
        tuple(view(p, now) for p in gw.list_policies(subscription_id, resource_group))
    )


def in_group(policies: Iterable[JitPolicy], resource_group: str | None) -> list[JitPolicy]:
    if resource_group is None:
        return list(policies)
    return [p for p in policies if p.resource_group.lower() == resource_group.lower()]


def list_fleet(
    fleet: FleetGateway, subscription_ids: Sequence[str], resource_group: str | None, now: datetime
) -> PolicyList:
    """The policies of several subscriptions (one list each, in parallel); -g filters."""
    for sub in subscription_ids:
        check_scope(sub, resource_group)
    policies = in_group(fleet.policies(subscription_ids), resource_group)
    return PolicyList(tuple(view(p, now) for p in policies))


def show_vm(gw: Gateway, ref: VmRef, now: datetime) -> PolicyList:
    policies = require_policies(gw, ref)
    return PolicyList(tuple(view(p, now, ref.id) for p in policies))


@dataclass(frozen=True)
class GrantList:
    """Grants: the current ones by end time (status), or the history newest first."""

    grants: tuple[Grant, ...]
    history: bool = False


def _by_end(found: Iterable[Grant]) -> GrantList:
    return GrantList(tuple(sorted(found, key=lambda g: g.end_time)))


def _newest_first(found: Iterable[Grant]) -> GrantList:
    return GrantList(
        tuple(sorted(found, key=lambda g: g.start_time or g.end_time, reverse=True)), True
    )


def status(
    gw: Gateway,
    subscription_id: str,
    now: datetime,
    resource_group: str | None = None,
    vm: VmRef | None = None,
) -> GrantList:
    """Current grants (active, initiating, failed) of one VM, a resource group or the
    subscription (one list call)."""
    if vm is not None:
        policies = policies_of_vm(gw, vm)
    else:
        check_scope(subscription_id, resource_group)
        policies = gw.list_policies(subscription_id, resource_group)
    return _by_end(
        g for p in policies for g in current_grants(p, now) if vm is None or same_id(g.vm_id, vm.id)
    )


def status_fleet(
    fleet: FleetGateway,
    subscription_ids: Sequence[str],
    now: datetime,
    resource_group: str | None = None,
) -> GrantList:
    """Current grants of several subscriptions: one list each, in parallel."""
    for sub in subscription_ids:
        check_scope(sub, resource_group)
    policies = in_group(fleet.policies(subscription_ids), resource_group)
    return _by_end(g for p in policies for g in current_grants(p, now))


def history_fleet(
    fleet: FleetGateway,
    subscription_ids: Sequence[str],
    now: datetime,
    resource_group: str | None = None,
) -> GrantList:
    """Every request kept in the policies of several subscriptions, newest first."""
    for sub in subscription_ids:
        check_scope(sub, resource_group)
    policies = in_group(fleet.policies(subscription_ids), resource_group)
    return _newest_first(g for p in policies for g in grants(p, now))


def history_scope(
    gw: Gateway, subscription_id: str, now: datetime, resource_group: str | None = None
) -> GrantList:
    """Every request kept in the policies of a subscription or a resource group (one list
    call), newest first."""
    check_scope(subscription_id, resource_group)
    policies = gw.list_policies(subscription_id, resource_group)
    return _newest_first(g for p in policies for g in grants(p, now))


def history(gw: Gateway, vm: VmRef, now: datetime) -> GrantList:
    """Every request for the VM in its policies' history (Azure keeps it in the policy)."""
    policies = require_policies(gw, vm)
    return _newest_first(g for p in policies for g in grants(p, now) if same_id(g.vm_id, vm.id))
