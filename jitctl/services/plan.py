"""Policies as code: resolve policy files to VMs, plan the changes per JIT policy, apply them.

Reads are by the list: VMs, NICs, virtual networks and JIT policies once per subscription,
whatever the number of VMs, all of them at once; writes are one read-merge-write per JIT policy
that changes. Every step is a dict lookup per VM, so 10 times the VMs cost 10 times as much.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from jitctl.clock import Clock
from jitctl.errors import BadInput
from jitctl.gateway import Gateway
from jitctl.ids import id_key, policy_id, segments
from jitctl.model import JitPolicy, Nic, PortRule, Subnet, Vm
from jitctl.policyfile import LoadedFile, Target, port_rule
from jitctl.policymerge import PortChange, same_rule, set_ports
from jitctl.policynames import policy_name_for
from jitctl.services.approvalsplan import ApprovalsPlan
from jitctl.services.planscope import (
    in_scope,
    prune_scope,
    refuse_empty_prune,
    target_subscriptions,
)
from jitctl.services.writes import PolicyChange, PolicyKey, WritePolicy, write_merged
from jitctl.targetmatch import vm_matches


@dataclass(frozen=True)
class Unprotected:
    vm_id: str
    origin: str  # file:line of the target that matched it


@dataclass(frozen=True)
class PolicyPlan:
    policy_id: str
    changes: tuple[PortChange, ...]
    exists: bool
    key: PolicyKey
    desired: dict[str, tuple[PortRule, ...]] = field(default_factory=dict, repr=False)
    remove: tuple[str, ...] = ()  # VM ids --prune drops


@dataclass(frozen=True)
class Plan:
    policies: tuple[PolicyPlan, ...]
    unprotected: tuple[Unprotected, ...] = ()
    unmanaged: tuple[str, ...] = ()  # VM ids no file matches, in policies in the files' scope
    prune: bool = False
    gone: tuple[str, ...] = ()  # VM ids in JIT policies whose VM was deleted: always removed
    # VM ids in JIT policies outside the files' scope (prune_scope): left alone, even by --prune
    out_of_scope: tuple[str, ...] = ()
    # the files' `approvals:` against a baseline (Azure stores none); None: not compared
    approvals: ApprovalsPlan | None = None

    @property
    def changed(self) -> bool:
        return any(p.changes for p in self.policies) or bool(
            self.approvals and self.approvals.changes
        )


@dataclass(frozen=True)
class ApplyResult:
    plan: Plan
    policies: tuple[PolicyChange, ...]

    @property
    def writes(self) -> int:
        return sum(p.attempts for p in self.policies)


class Inventory:
    """What a subscription holds, read by the list once: all at once by `prefetch`, else on
    first use."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._vms: dict[str, list[Vm]] = {}
        self._by_id: dict[str, dict[str, Vm]] = {}
        self._protected: dict[str, set[str]] = {}
        self._policies: dict[str, list[JitPolicy]] = {}

    def prefetch(self, subs: Sequence[str], policies: Sequence[str] = ()) -> None:
        """Read the VMs, NICs and subnets of `subs` and the JIT policies of `policies`, all
        lists side by side (each list's pages follow one another)."""
        subs = [s for s in dict.fromkeys(s.lower() for s in subs) if s not in self._vms]
        todo = [s for s in dict.fromkeys(p.lower() for p in policies) if s not in self._policies]
        # The long lists (a page per 100 VMs or NICs) first, the one-page ones after: the pool
        # then ends together instead of waiting on a long list that started last.
        calls: list[Callable[[], Any]] = [
            *(
                partial(list_of, s)
                for s in subs
                for list_of in (self.gw.list_vms, self.gw.list_nics)
            ),
            *(partial(self.gw.list_subnets, s) for s in subs),
            *(partial(self.gw.list_policies, s) for s in todo),
        ]
        results = self.gw.parallel(calls)
        n = len(subs)
        for i, s in enumerate(subs):
            vms, nics, subnets = results[2 * i], results[2 * i + 1], results[2 * n + i]
            self._vms[s] = vms
            self._protected[s] = _protected_nics(subnets, nics)
        for i, s in enumerate(todo):
            self._policies[s] = results[3 * n + i]

    def vms(self, sub: str) -> list[Vm]:
        if sub.lower() not in self._vms:
            self._vms[sub.lower()] = self.gw.list_vms(sub)
        return self._vms[sub.lower()]

    def vm(self, vm_id: str) -> Vm | None:
        sub = segments(vm_id)["subscriptions"].lower()
        if sub not in self._by_id:
            self._by_id[sub] = {id_key(v.id): v for v in self.vms(sub)}
        return self._by_id[sub].get(id_key(vm_id))

    def policies(self, sub: str) -> list[JitPolicy]:
        if sub.lower() not in self._policies:
            self._policies[sub.lower()] = self.gw.list_policies(sub)
        return self._policies[sub.lower()]

    def protected(self, sub: str) -> set[str]:
        """Ids (lower-case) of NICs that have an NSG on themselves or on a subnet."""
        if sub.lower() not in self._protected:
            self._protected[sub.lower()] = _protected_nics(
                self.gw.list_subnets(sub), self.gw.list_nics(sub)
            )
        return self._protected[sub.lower()]

    def has_nsg(self, vm: Vm) -> bool:
        sub = segments(vm.id)["subscriptions"]
        return any(n.id.lower() in self.protected(sub) for n in vm.nics)


def _protected_nics(subnets: Sequence[Subnet], nics: Sequence[Nic]) -> set[str]:
    guarded_subnets = {s.id.lower() for s in subnets if s.nsg_id}
    return {
        n.id.lower()
        for n in nics
        if n.nsg_id or any((c.subnet_id or "").lower() in guarded_subnets for c in n.ip_configs)
    }


def _matches(vm: Vm, target: Target) -> bool:
    return vm_matches(
        vm.id,
        vm.tags,
        name=vm.name,
        resource_group=target.resourceGroup,
        names=target.names,
        tags=target.tags,
    )


def _select(
    inv: Inventory, f: LoadedFile, i: int, target: Target, chosen: Sequence[str]
) -> list[Vm]:
    if target.ids:
        found = []
        for j, vm_id in enumerate(target.ids):
            vm = inv.vm(vm_id)
            if vm is None:
                raise BadInput(
                    f"{f.origin('targets', i, 'ids', j)}: targets[{i}].ids[{j}]: VM not found: {vm_id}"
                )
            found.append(vm)
        return found
    subs = target_subscriptions(f, target, chosen)
    return [vm for sub in subs for vm in inv.vms(sub) if _matches(vm, target)]


def desired_state(
    gw: Gateway, files: Sequence[LoadedFile], chosen: Sequence[str], inv: Inventory | None = None
) -> tuple[dict[PolicyKey, dict[str, tuple[PortRule, ...]]], list[Unprotected], Inventory]:
    """VM -> ports, grouped by JIT policy; conflicting definitions are an error naming both."""
    inv = inv or Inventory(gw)
    # (VM id, policy name) -> (VM, port -> (rule, where it was defined))
    per_vm: dict[tuple[str, str], tuple[Vm, dict[int, tuple[PortRule, str]]]] = {}
    unprotected: dict[str, Unprotected] = {}
    for f in files:
        for i, target in enumerate(f.model.targets):
            name = target.policyName or f.model.defaults.policyName
            origin = f.origin("targets", i)
            rules = [port_rule(spec, f.model.defaults) for spec in target.ports]  # once a target
            for vm in _select(inv, f, i, target, chosen):
                if not inv.has_nsg(vm):
                    unprotected.setdefault(id_key(vm.id), Unprotected(vm.id, origin))
                    continue
                try:
                    vm_policy = policy_name_for(name, vm.name)
                except BadInput as err:
                    raise BadInput(f"{origin}: policyName: {err.message}", err.hint) from None
                _, ports = per_vm.setdefault((id_key(vm.id), vm_policy), (vm, {}))
                for j, (spec, rule) in enumerate(zip(target.ports, rules, strict=True)):
                    here = f.origin("targets", i, "ports", j)
                    if spec.number in ports and not same_rule(ports[spec.number][0], rule):
                        raise BadInput(
                            f"{here}: port {spec.number} of VM {vm.name} conflicts with "
                            f"{ports[spec.number][1]}.",
                            "Define each VM's port once.",
                        )
                    ports.setdefault(spec.number, (rule, here))
    desired: dict[PolicyKey, dict[str, tuple[PortRule, ...]]] = {}
    for (_, name), (vm, ports) in per_vm.items():
        seg = segments(vm.id)
        key = (
            seg["subscriptions"],
            seg["resourcegroups"],
            vm.location.replace(" ", "").lower(),
            name,
        )
        ordered = sorted(ports.values(), key=lambda x: x[0].number)
        desired.setdefault(key, {})[vm.id] = tuple(r for r, _ in ordered)
    return desired, list(unprotected.values()), inv


def _key(p: JitPolicy) -> PolicyKey:
    return (p.subscription_id, p.resource_group, p.location.lower(), p.name)


def _lower(key: PolicyKey) -> PolicyKey:
    sub, rg, loc, name = (x.lower() for x in key)
    return sub, rg, loc, name


def _lowers(keys: Iterable[PolicyKey]) -> set[PolicyKey]:
    return {_lower(k) for k in keys}


def make_plan(
    gw: Gateway,
    files: Sequence[LoadedFile],
    subscriptions: str | Sequence[str],
    prune: bool = False,
    *,
    allow_empty_prune: bool = False,
    source: str = "the policy files",
) -> Plan:
    """The plan over the chosen `subscriptions` (one id, or several: -s repeated,
    --all-subscriptions): a target without `subscriptions:` (its own or its file's) selects VMs
    in each of them, and their JIT policies (and those of the subscriptions files name) are
    the ones the unmanaged list considers.

    --prune removes only inside the files' scope (planscope.prune_scope), as terraform destroys only
    what its configuration manages; files that select no VM at all (or no files) never mean
    "empty every policy": EmptyPrune names what would go, unless `allow_empty_prune`."""
    chosen = [subscriptions] if isinstance(subscriptions, str) else list(subscriptions)
    inv = Inventory(gw)
    targeted = [
        s
        for f in files
        for target in f.model.targets
        for s in target_subscriptions(f, target, chosen)
    ]
    listed = [*targeted, *chosen, *(s for f in files for s in f.model.subscriptions or [])]
    inv.prefetch(targeted, listed)  # every list at once
    desired, unprotected, _ = desired_state(gw, files, chosen, inv)
    subs = {k[0].lower(): k[0] for k in desired} | {s.lower(): s for s in chosen}
    for f in files:
        for s in f.model.subscriptions or []:
            subs.setdefault(s.lower(), s)
    current = [p for s in subs.values() for p in inv.policies(s)]
    scope = prune_scope(files, chosen)
    # A deleted VM stays in its policy and Azure then refuses every write of that policy
    # (MicrosoftDocs/azure-docs#11987): the plan removes it, whatever the files say.
    existing = {
        id_key(vm.id)
        for s in {segments(v.id)["subscriptions"] for p in current for v in p.vms}
        for vm in inv.vms(s)
    }
    managed = {id_key(vm_id) for vms in desired.values() for vm_id in vms}
    gone: dict[str, str] = {}
    unmanaged: dict[str, str] = {}
    outside: dict[str, str] = {}
    for p in current:
        for v in p.vms:
            k = id_key(v.id)
            if k in managed:
                continue
            if not in_scope(p, scope):
                outside.setdefault(k, v.id)
            elif k not in existing:
                gone.setdefault(k, v.id)
            else:
                unmanaged.setdefault(k, v.id)
    by_key = {_lower(_key(p)): p for p in reversed(current)}  # the first of equal keys wins
    plans = []
    wanted_keys = _lowers(desired)
    keys = list(desired) + [_key(p) for p in current if _lower(_key(p)) not in wanted_keys]
    for key in keys:
        policy = by_key.get(_lower(key))
        remove = tuple(
            v.id
            for v in (policy.vms if policy and in_scope(policy, scope) else ())
            if id_key(v.id) in gone or (prune and id_key(v.id) in unmanaged)
        )
        wanted = desired.get(key, {})
        _, changes = set_ports(policy.vms if policy else (), wanted, remove)
        plans.append(
            PolicyPlan(
                policy.id if policy else policy_id(*key),
                changes,
                policy is not None,
                key,
                wanted,
                remove,
            )
        )
    if prune and not desired and not allow_empty_prune:
        refuse_empty_prune(((p.policy_id, p.remove) for p in plans), bool(files), source)
    return Plan(
        tuple(plans),
        tuple(unprotected),
        tuple(sorted(unmanaged.values())),
        prune,
        tuple(sorted(gone.values())),
        tuple(sorted(v for k, v in outside.items() if k not in unmanaged and k not in gone)),
    )


def apply_plan(
    gw: Gateway,
    plan: Plan,
    *,
    clock: Clock,
    settings: WritePolicy | None = None,
    rng: random.Random | None = None,
) -> ApplyResult:
    """One read-merge-write per policy with changes, merged again on the fresh policy and
    confirmed over a window (see WritePolicy); Contended when it does not stick."""
    results = []
    for pol in plan.policies:
        if not pol.changes:
            continue
        merge = partial(set_ports, desired=pol.desired, remove=pol.remove)
        results.append(
            write_merged(
                gw,
                gw.get_policy(*pol.key),
                pol.key,
                merge,
                False,
                clock=clock,
                settings=settings,
                rng=rng,
            )
        )
    return ApplyResult(plan, tuple(results))
