"""What the services read before they write or show: many VMs at once (does an NSG guard
each?), in as few round trips and calls as a resource group allows; the policies that name a VM.

A resource group that holds more than BATCH of the VMs is read by the list: its VMs, NICs,
virtual networks (with their subnets) and JIT policies, the four lists side by side; other VMs
by a GET each, all at once. NICs and subnets in other groups are read next, the same way; a
subnet only for a NIC without an NSG. One VM costs what it did: VM, NIC, and its subnet only
when the NIC has no NSG.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

from jitctl.errors import VmNotInPolicy
from jitctl.gateway import Gateway
from jitctl.ids import VmRef, segments
from jitctl.model import JitPolicy, Nic, Subnet, Vm
from jitctl.policynames import policy_name_for

BATCH = 3  # more than this many VMs in one resource group: lists instead of a GET each


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_HasId)
Group = tuple[str, str]  # subscription, resource group (lower case)


@dataclass(frozen=True)
class Inspected:
    vms: list[Vm]  # in the order asked
    protected: dict[str, bool]  # VM id (lower case) -> an NSG guards a NIC of it
    policies: dict[Group, list[JitPolicy]] = field(default_factory=dict)  # groups listed


def _group(resource_id: str) -> tuple[str, str]:
    seg = segments(resource_id)
    return seg.get("subscriptions", ""), seg.get("resourcegroups", "")


def _key(group: tuple[str, str]) -> Group:
    return group[0].lower(), group[1].lower()


def _one(get: Callable[[str], R], rid: str) -> list[R]:
    return [get(rid)]


def _by_id(
    gw: Gateway,
    ids: Iterable[str],
    get: Callable[[str], R],
    list_group: Callable[[str, str], list[R]],
    known: dict[str, R],
) -> dict[str, R]:
    """`known` plus the other resources by lower-cased id, read at once: one list of a group
    that holds more than BATCH of them, else a GET each. One missing from its list is read by
    GET (which raises Azure's own error for it)."""
    groups: dict[Group, list[str]] = {}
    for rid in dict.fromkeys(i for i in ids if i.lower() not in known):
        groups.setdefault(_key(_group(rid)), []).append(rid)
    calls: list[Callable[[], list[R]]] = []
    for members in groups.values():
        if len(members) > BATCH:
            calls.append(partial(list_group, *_group(members[0])))
        else:
            calls.extend(partial(_one, get, rid) for rid in members)
    found = dict(known)
    found.update((r.id.lower(), r) for batch in gw.parallel(calls) for r in batch)
    missing = [rid for members in groups.values() for rid in members if rid.lower() not in found]
    for batch in gw.parallel([partial(_one, get, m) for m in missing]):
        found.update((r.id.lower(), r) for r in batch)
    return found


def inspect_vms(gw: Gateway, refs: Sequence[VmRef], with_policies: bool = False) -> Inspected:
    """The VMs and whether an NSG guards each (see the module's note on what is read)."""
    groups: dict[Group, list[VmRef]] = {}
    for ref in refs:
        groups.setdefault(_key((ref.subscription_id, ref.resource_group)), []).append(ref)
    big = {g: members[0] for g, members in groups.items() if len(members) > BATCH}
    calls: list[Callable[[], Any]] = []
    for first in big.values():
        sub, rg = first.subscription_id, first.resource_group
        calls += [partial(gw.list_vms, sub, rg), partial(gw.list_nics, sub, rg)]
        calls.append(partial(gw.list_subnets, sub, rg))
    if with_policies:  # every group's, in the same round trip
        calls += [partial(gw.list_policies, *_group(members[0].id)) for members in groups.values()]
    small = [r for g, members in groups.items() if g not in big for r in members]
    calls += [partial(gw.get_vm, r) for r in small]
    results = iter(gw.parallel(calls))
    vms: dict[str, Vm] = {}
    nics: dict[str, Nic] = {}
    subnets: dict[str, Subnet] = {}
    policies: dict[Group, list[JitPolicy]] = {}
    for _ in big:
        vms.update((v.id.lower(), v) for v in next(results))
        nics.update((n.id.lower(), n) for n in next(results))
        subnets.update((s.id.lower(), s) for s in next(results))
    if with_policies:
        policies = {g: next(results) for g in groups}
    vms.update((v.id.lower(), v) for v in results)
    for ref in refs:  # not in its group's list (a race, or a name Azure spells otherwise)
        if ref.id.lower() not in vms:
            vms[ref.id.lower()] = gw.get_vm(ref)
    ordered = [vms[r.id.lower()] for r in refs]
    return Inspected(ordered, _guarded(gw, ordered, nics, subnets), policies)


def _guarded(
    gw: Gateway, vms: Sequence[Vm], nics: dict[str, Nic], subnets: dict[str, Subnet]
) -> dict[str, bool]:
    nics = _by_id(gw, (n.id for vm in vms for n in vm.nics), gw.get_nic, gw.list_nics, nics)
    out = {vm.id.lower(): any(nics[n.id.lower()].nsg_id for n in vm.nics) for vm in vms}
    wanted = [
        cfg.subnet_id
        for vm in vms
        if not out[vm.id.lower()]
        for n in vm.nics
        for cfg in nics[n.id.lower()].ip_configs
        if cfg.subnet_id
    ]
    subnets = _by_id(gw, wanted, gw.get_subnet, gw.list_subnets, subnets)
    for vm in vms:
        if not out[vm.id.lower()]:
            out[vm.id.lower()] = any(
                subnets[cfg.subnet_id.lower()].nsg_id
                for n in vm.nics
                for cfg in nics[n.id.lower()].ip_configs
                if cfg.subnet_id
            )
    return out


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


def require_policies(gw: Gateway, ref: VmRef, policy_name: str | None = None) -> list[JitPolicy]:
    """policies_of_vm, and VmNotInPolicy when there is none."""
    found = policies_of_vm(gw, ref, policy_name)
    if not found:
        name = policy_name_for(policy_name, ref.name) if policy_name is not None else None
        raise VmNotInPolicy(ref.name, ref.resource_group, name, ref.subscription_id)
    return found
