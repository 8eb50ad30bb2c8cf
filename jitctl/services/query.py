"""Read-only views: policies with their VMs, ports and active grants; request history."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from jitctl.errors import NotFound, suggest
from jitctl.gateway import Gateway
from jitctl.ids import VmRef, name_of, same_id, segments
from jitctl.model import JitPolicy, PortRule
from jitctl.parsing import check_scope
from jitctl.services.policies import policies_of_vm

if TYPE_CHECKING:
    from jitctl.fleet import FleetGateway

ACTIVE_STATUSES = ("initiated", "initiating")


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
    mapped_port: int | None = None

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


def grants(policy: JitPolicy) -> list[Grant]:
    """Every port of every request in the policy's history, newest first."""
    out = []
    for req in policy.requests:
        for vm in req.vms:
            for port in vm.ports:
                out.append(
                    Grant(
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
                    )
                )
    return sorted(out, key=lambda g: g.start_time or g.end_time, reverse=True)


def active_grants(policy: JitPolicy, now: datetime) -> list[Grant]:
    return [
        g
        for g in grants(policy)
        if (g.status or "").lower() in ACTIVE_STATUSES and g.end_time > now
    ]


def view(policy: JitPolicy, now: datetime, vm_id: str | None = None) -> PolicyView:
    live = active_grants(policy, now)
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
    policies = policies_of_vm(gw, ref)
    if not policies:
        fix = suggest(
            "enable", ref.name, "-g", ref.resource_group, subscription=ref.subscription_id
        )
        raise NotFound(
            f"VM {ref.name} is in no JIT policy of resource group {ref.resource_group}.",
            f"Enable it with: {fix}",
            [fix],
        )
    return PolicyList(tuple(view(p, now, ref.id) for p in policies))


@dataclass(frozen=True)
class GrantList:
    """Grants, newest first: the live ones (status) or the whole history of a VM."""

    grants: tuple[Grant, ...]
    history: bool = False


def status(
    gw: Gateway,
    subscription_id: str,
    now: datetime,
    resource_group: str | None = None,
    vm: VmRef | None = None,
) -> GrantList:
    """Active grants of one VM, a resource group or the subscription (one list call)."""
    if vm is not None:
        policies = policies_of_vm(gw, vm)
    else:
        check_scope(subscription_id, resource_group)
        policies = gw.list_policies(subscription_id, resource_group)
    live = [
        g for p in policies for g in active_grants(p, now) if vm is None or same_id(g.vm_id, vm.id)
    ]
    return GrantList(tuple(sorted(live, key=lambda g: g.end_time)))


def status_fleet(
    fleet: FleetGateway,
    subscription_ids: Sequence[str],
    now: datetime,
    resource_group: str | None = None,
) -> GrantList:
    """Active grants of several subscriptions: one list each, in parallel."""
    for sub in subscription_ids:
        check_scope(sub, resource_group)
    policies = in_group(fleet.policies(subscription_ids), resource_group)
    live = [g for p in policies for g in active_grants(p, now)]
    return GrantList(tuple(sorted(live, key=lambda g: g.end_time)))


def history_fleet(
    fleet: FleetGateway, subscription_ids: Sequence[str], resource_group: str | None = None
) -> GrantList:
    """Every request kept in the policies of several subscriptions, newest first."""
    for sub in subscription_ids:
        check_scope(sub, resource_group)
    policies = in_group(fleet.policies(subscription_ids), resource_group)
    found = [g for p in policies for g in grants(p)]
    return GrantList(
        tuple(sorted(found, key=lambda g: g.start_time or g.end_time, reverse=True)), True
    )


def history(gw: Gateway, vm: VmRef) -> GrantList:
    """Every request for the VM in its policies' history (Azure keeps it in the policy)."""
    policies = policies_of_vm(gw, vm)
    if not policies:
        raise NotFound(
            f"VM {vm.name} is in no JIT policy of resource group {vm.resource_group}.",
            "There is no history without a policy.",
        )
    found = [g for p in policies for g in grants(p) if same_id(g.vm_id, vm.id)]
    return GrantList(
        tuple(sorted(found, key=lambda g: g.start_time or g.end_time, reverse=True)), True
    )
