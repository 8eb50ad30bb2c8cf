"""Enable and disable JIT on VMs: read, merge, write, confirm; never drop anyone else's config."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from jitctl.clock import SystemClock
from jitctl.errors import BadInput, NotFound, Refused, suggest
from jitctl.gateway import Gateway
from jitctl.ids import VmRef
from jitctl.model import JitPolicy, PolicyVm, PortRule
from jitctl.policymerge import merge_ports, remove_ports
from jitctl.policynames import check_policy_name, policy_name_for
from jitctl.services.reads import inspect_vms
from jitctl.services.writes import Clock, PolicyChange, WritePolicy, write_merged

__all__ = [
    "PolicyChange",
    "PolicyChangeResult",
    "WritePolicy",
    "disable",
    "enable",
    "policies_of_vm",
]


@dataclass(frozen=True)
class PolicyChangeResult:
    policies: tuple[PolicyChange, ...] = field(default_factory=tuple)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return any(p.changes for p in self.policies)


DEFAULT_POLICY = "default"  # the portal's name for a resource group and region's policy


def enable(
    gw: Gateway,
    vms: Sequence[VmRef],
    rules: Sequence[PortRule],
    policy_name: str | None = None,
    dry_run: bool = False,
    *,
    clock: Clock | None = None,
    settings: WritePolicy | None = None,
    rng: random.Random | None = None,
) -> PolicyChangeResult:
    """Add the VMs' ports to the JIT policy of their resource group and region.

    Checks every VM first (exists, has an NSG) so that bad input writes nothing; one write per
    policy, confirmed over a window (see WritePolicy). `policy_name` may be a template with
    {vm} (one policy per VM); without it, each VM's policy is found by listing its resource
    group's policies: the one that names the VM, else 'default' (a VM in several policies is
    an error that asks for `policy_name`).
    """
    if not vms:
        raise BadInput("No VM given.", "Name at least one VM.")
    if policy_name is not None:
        check_policy_name(policy_name)
    # without a name, each VM's policy is found by listing its group's policies
    seen = inspect_vms(gw, vms, with_policies=policy_name is None)
    found = seen.vms
    for vm in found:
        if not seen.protected[vm.id.lower()]:
            raise Refused(
                f"VM {vm.name} has no network security group on its NIC or subnet; JIT cannot protect it.",
                "Associate an NSG with its NIC or subnet, then enable again.",
            )
    listed = seen.policies
    groups: dict[tuple[str, str, str, str], list[str]] = {}
    for ref, vm in zip(vms, found, strict=True):
        location = vm.location.replace(" ", "").lower()
        if policy_name is None:
            group = (ref.subscription_id.lower(), ref.resource_group.lower())
            name = _policy_of(listed[group], ref, location)
        else:
            name = policy_name_for(policy_name, ref.name)
        vm_ids = groups.setdefault((ref.subscription_id, ref.resource_group, location, name), [])
        if vm.id not in vm_ids:
            vm_ids.append(vm.id)
    keys = list(groups)
    unread = [key for key in keys if (key[0].lower(), key[1].lower()) not in listed]
    read = dict(zip(unread, gw.parallel([partial(gw.get_policy, *k) for k in unread]), strict=True))
    currents = [
        read[key] if key in read else _find(listed[(key[0].lower(), key[1].lower())], key)
        for key in keys
    ]
    writes = [
        partial(
            write_merged,
            gw,
            current,
            key,
            partial(merge_ports, vm_ids=groups[key], rules=rules),
            dry_run,
            clock=clock or SystemClock(),
            settings=settings,
            rng=rng,
        )
        for key, current in zip(keys, currents, strict=True)
    ]
    return PolicyChangeResult(tuple(gw.parallel(writes)), dry_run)


def _find(policies: Sequence[JitPolicy], key: tuple[str, str, str, str]) -> JitPolicy | None:
    return next(
        (p for p in policies if p.location.lower() == key[2] and p.name.lower() == key[3].lower()),
        None,
    )


def _policy_of(policies: Sequence[JitPolicy], ref: VmRef, location: str) -> str:
    """The name of the one policy of the VM's region that names it, else 'default'. Microsoft's
    own scripts and the PowerShell docs make one policy per VM, named after it (Azure's
    Defender for Cloud repository; MicrosoftDocs/azure-docs#36343), so 'default' is a guess."""
    mine = [p for p in policies if p.location.lower() == location and p.vm(ref.id)]
    if len(mine) > 1:
        raise several_policies(ref, mine)
    return mine[0].name if mine else DEFAULT_POLICY


def several_policies(ref: VmRef, policies: Sequence[JitPolicy]) -> BadInput:
    names = ", ".join(sorted(p.name for p in policies))
    return BadInput(
        f"VM {ref.name} is in {len(policies)} JIT policies ({names}).",
        "Choose one with --policy-name NAME.",
    )


def policies_of_vm(gw: Gateway, ref: VmRef, policy_name: str | None = None) -> list[JitPolicy]:
    """The JIT policies that cover a VM: one list call over its resource group.

    `policy_name` filters (a template with {vm} resolves to this VM's name)."""
    wanted = policy_name_for(policy_name, ref.name).lower() if policy_name is not None else None
    found = [
        p
        for p in gw.list_policies(ref.subscription_id, ref.resource_group)
        if p.vm(ref.id) and (wanted is None or p.name.lower() == wanted)
    ]
    return found


def disable(
    gw: Gateway,
    ref: VmRef,
    ports: Sequence[int] | None = None,
    policy_name: str | None = None,
    dry_run: bool = False,
    *,
    clock: Clock | None = None,
    settings: WritePolicy | None = None,
    rng: random.Random | None = None,
) -> PolicyChangeResult:
    """Remove ports (all when none given) of one VM; delete a policy when its last VM goes
    (read again right before: a policy that gained VMs meanwhile is written, not deleted)."""
    policies = policies_of_vm(gw, ref, policy_name)
    if not policies:
        shows = suggest("list", "-g", ref.resource_group, subscription=ref.subscription_id)
        raise NotFound(
            f"VM {ref.name} is in no JIT policy of resource group {ref.resource_group}.",
            f"Nothing to disable; '{shows}' shows the policies.",
            [shows],
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
            write_merged(
                gw,
                pol,
                key,
                partial(remove_ports, vm_id=ref.id, numbers=ports),
                dry_run,
                clock=clock or SystemClock(),
                settings=settings,
                rng=rng,
            )
        )
    return PolicyChangeResult(tuple(results), dry_run)
