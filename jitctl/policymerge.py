"""Merge changes into a JIT policy's VM list without touching anything else (pure logic).

A PUT replaces the whole virtualMachines list (JIT-REFERENCE section 1), so every write is
read -> merge -> write, and the merge must leave every other VM and port exactly as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from jitctl.ids import id_key
from jitctl.model import PolicyVm, PortRule
from jitctl.parsing import canonical_protocol, canonical_source


@dataclass(frozen=True)
class PortChange:
    vm_id: str
    port: int
    action: str  # add | change | remove
    before: PortRule | None
    after: PortRule | None


def merge_ports(
    vms: Sequence[PolicyVm], vm_ids: Iterable[str], rules: Sequence[PortRule]
) -> tuple[tuple[PolicyVm, ...], tuple[PortChange, ...]]:
    """Add or update `rules` on each VM; other VMs and other ports stay as they were."""
    out = list(vms)
    changes: list[PortChange] = []
    where = _positions(out)
    for vm_id in vm_ids:
        idx = where.get(id_key(vm_id)) if vm_id else None
        current = out[idx] if idx is not None else PolicyVm(id=vm_id, ports=())
        ports = list(current.ports)
        for rule in rules:
            pos = next((i for i, p in enumerate(ports) if p.number == rule.number), None)
            if pos is None:
                ports.append(rule)
                changes.append(PortChange(current.id, rule.number, "add", None, rule))
            elif not same_rule(ports[pos], rule):
                changes.append(PortChange(current.id, rule.number, "change", ports[pos], rule))
                ports[pos] = rule
        updated = replace(current, ports=tuple(ports))
        if idx is None:
            where[id_key(vm_id)] = len(out)
            out.append(updated)
        else:
            out[idx] = updated
    return tuple(out), tuple(changes)


def _positions(vms: Sequence[PolicyVm]) -> dict[str, int]:
    """Index of each VM in the list by id (the first one, as a linear search finds it)."""
    where: dict[str, int] = {}
    for i, vm in enumerate(vms):
        if vm.id:
            where.setdefault(id_key(vm.id), i)
    return where


def remove_ports(
    vms: Sequence[PolicyVm], vm_id: str, numbers: Sequence[int] | None
) -> tuple[tuple[PolicyVm, ...], tuple[PortChange, ...]]:
    """Remove the given ports (all when None) from one VM; a VM left with no port goes."""
    out: list[PolicyVm] = []
    changes: list[PortChange] = []
    key = id_key(vm_id)
    for vm in vms:
        if id_key(vm.id) != key:
            out.append(vm)
            continue
        keep = []
        for p in vm.ports:
            if numbers is None or p.number in numbers:
                changes.append(PortChange(vm.id, p.number, "remove", p, None))
            else:
                keep.append(p)
        if keep:
            out.append(replace(vm, ports=tuple(keep)))
    return tuple(out), tuple(changes)


def same_rule(a: PortRule | None, b: PortRule | None) -> bool:
    """The one rule equality of jitctl: equal for Azure. A one-item prefix list is the single
    prefix, the order of prefixes does not matter, each prefix is compared by meaning
    (parsing.canonical_source: '*', 'Any' and 0.0.0.0/0 are one source; 'Internet' is
    another), the protocol by its case-insensitive name (TCP, Tcp) and the longest request
    by its length (PT3H is PT180M: both are parsed into a timedelta)."""
    if a is None or b is None:
        return a is b
    return _rule_key(a) == _rule_key(b)


def _rule_key(rule: PortRule) -> tuple[int, str, timedelta, frozenset[str]]:
    return (
        rule.number,
        canonical_protocol(rule.protocol),
        rule.max_duration,
        frozenset(canonical_source(s) for s in rule.sources),
    )


def set_ports(
    vms: Sequence[PolicyVm], desired: Mapping[str, Sequence[PortRule]], remove: Iterable[str] = ()
) -> tuple[tuple[PolicyVm, ...], tuple[PortChange, ...]]:
    """Make each desired VM's ports exactly `desired[vm]` and drop the VMs in `remove`;
    every other VM stays as it was (policies as code: the file is authoritative for its VMs)."""
    wanted = {id_key(k): (k, list(v)) for k, v in desired.items()}
    drop = {id_key(r) for r in remove}
    out: list[PolicyVm] = []
    changes: list[PortChange] = []
    for vm in vms:
        key = id_key(vm.id)
        if key in drop:
            changes.extend(PortChange(vm.id, p.number, "remove", p, None) for p in vm.ports)
            continue
        if key not in wanted:
            out.append(vm)
            continue
        _, rules = wanted.pop(key)
        current = {p.number: p for p in vm.ports}
        ports: list[PortRule] = []
        for rule in rules:
            before = current.get(rule.number)
            if before is None:
                changes.append(PortChange(vm.id, rule.number, "add", None, rule))
                ports.append(rule)
            elif same_rule(before, rule):
                ports.append(before)
            else:
                changes.append(PortChange(vm.id, rule.number, "change", before, rule))
                ports.append(rule)
        numbers = {r.number for r in rules}
        changes.extend(
            PortChange(vm.id, p.number, "remove", p, None)
            for p in vm.ports
            if p.number not in numbers
        )
        out.append(replace(vm, ports=tuple(ports)))
    for vm_id, rules in wanted.values():
        out.append(PolicyVm(vm_id, tuple(rules)))
        changes.extend(PortChange(vm_id, r.number, "add", None, r) for r in rules)
    return tuple(out), tuple(changes)


def applied(vms: Sequence[PolicyVm], changes: Sequence[PortChange]) -> bool:
    """True when every change is visible in `vms` (used to re-check after a write)."""
    where = _positions(vms)
    for c in changes:
        idx = where.get(id_key(c.vm_id)) if c.vm_id else None
        vm = vms[idx] if idx is not None else None
        port = vm.port(c.port) if vm else None
        if c.action == "remove":
            if port is not None:
                return False
        elif not same_rule(port, c.after):
            return False
    return True
