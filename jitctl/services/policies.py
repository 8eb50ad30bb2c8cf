"""Enable and disable JIT on VMs: read, merge, write, re-read; never drop anyone else's config."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from jitctl.errors import BadInput, JitctlError, NotFound, Refused
from jitctl.gateway import Gateway
from jitctl.ids import VmRef
from jitctl.model import JitPolicy, PolicyVm, PortRule
from jitctl.policymerge import PortChange, applied, merge_ports, remove_ports
from jitctl.services.topology import has_nsg

MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class PolicyChange:
    """What happened (or would happen) to one JIT policy."""

    policy_id: str
    changes: tuple[PortChange, ...]
    action: str  # "unchanged" | "updated" | "created" | "deleted" | "would update" ...
    attempts: int = 0


@dataclass(frozen=True)
class PolicyChangeResult:
    policies: tuple[PolicyChange, ...] = field(default_factory=tuple)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return any(p.changes for p in self.policies)


def write_merged(
    gw: Gateway,
    current: JitPolicy | None,
    key: tuple[str, str, str, str],
    merge: Callable[[Sequence[PolicyVm]], tuple[tuple[PolicyVm, ...], tuple[PortChange, ...]]],
    dry_run: bool,
) -> PolicyChange:
    """Merge into the current policy and write; re-read and merge again if a concurrent writer
    dropped our change (there is no ETag on this resource)."""
    sub, rg, loc, name = key
    base = current or JitPolicy(sub, rg, loc, name)
    vms, changes = merge(base.vms)
    if not changes:
        return PolicyChange(base.id, (), "unchanged")
    verb = "delete" if not vms else ("update" if current else "create")
    if dry_run:
        return PolicyChange(base.id, changes, f"would {verb}")
    first_changes = changes
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if not vms:
            gw.delete_policy(base)
            return PolicyChange(base.id, first_changes, "deleted", attempt)
        gw.put_policy(replace(base, vms=vms))
        fresh = gw.get_policy(sub, rg, loc, name)
        if fresh is not None and applied(fresh.vms, changes):
            return PolicyChange(base.id, first_changes, f"{verb}d", attempt)
        base = fresh or JitPolicy(sub, rg, loc, name)
        vms, changes = merge(base.vms)
        if not changes:
            return PolicyChange(base.id, first_changes, f"{verb}d", attempt)
    raise JitctlError(
        f"Policy {base.id} kept changing under us; gave up after {MAX_ATTEMPTS} writes.",
        "Another tool is writing the same policy; try again.",
    )


def enable(
    gw: Gateway,
    vms: Sequence[VmRef],
    rules: Sequence[PortRule],
    policy_name: str = "default",
    dry_run: bool = False,
) -> PolicyChangeResult:
    """Add the VMs' ports to the JIT policy of their resource group and region.

    Checks every VM first (exists, has an NSG) so that bad input writes nothing; one write per policy.
    """
    if not vms:
        raise BadInput("No VM given.", "Name at least one VM.")
    groups: dict[tuple[str, str, str, str], list[str]] = {}
    for ref in vms:
        vm = gw.get_vm(ref)
        if not has_nsg(gw, vm):
            raise Refused(
                f"VM {vm.name} has no network security group on its NIC or subnet; JIT cannot protect it.",
                "Associate an NSG with its NIC or subnet, then enable again.",
            )
        key = (
            ref.subscription_id,
            ref.resource_group,
            vm.location.replace(" ", "").lower(),
            policy_name,
        )
        groups.setdefault(key, []).append(vm.id)
    results = []
    for key, vm_ids in groups.items():
        current = gw.get_policy(*key)
        results.append(
            write_merged(
                gw, current, key, partial(merge_ports, vm_ids=vm_ids, rules=rules), dry_run
            )
        )
    return PolicyChangeResult(tuple(results), dry_run)


def policies_of_vm(gw: Gateway, ref: VmRef, policy_name: str | None = None) -> list[JitPolicy]:
    """The JIT policies that cover a VM: one list call over its resource group."""
    found = [
        p
        for p in gw.list_policies(ref.subscription_id, ref.resource_group)
        if p.vm(ref.id) and (policy_name is None or p.name.lower() == policy_name.lower())
    ]
    return found


def disable(
    gw: Gateway,
    ref: VmRef,
    ports: Sequence[int] | None = None,
    policy_name: str | None = None,
    dry_run: bool = False,
) -> PolicyChangeResult:
    """Remove ports (all when none given) of one VM; delete a policy when its last VM goes."""
    policies = policies_of_vm(gw, ref, policy_name)
    if not policies:
        raise NotFound(
            f"VM {ref.name} is in no JIT policy of resource group {ref.resource_group}.",
            f"Nothing to disable; 'jitctl list -g {ref.resource_group}' shows the policies.",
        )
    if ports:
        configured = {
            p.number for pol in policies for p in (pol.vm(ref.id) or PolicyVm("", ())).ports
        }
        missing = sorted(set(ports) - configured)
        if missing:
            raise Refused(
                f"Port {', '.join(map(str, missing))} is not in the JIT policy of VM {ref.name}.",
                f"Configured: {', '.join(map(str, sorted(configured)))}.",
            )
    results = []
    for pol in policies:
        key = (pol.subscription_id, pol.resource_group, pol.location, pol.name)
        results.append(
            write_merged(gw, pol, key, lambda base: remove_ports(base, ref.id, ports), dry_run)
        )
    return PolicyChangeResult(tuple(results), dry_run)
