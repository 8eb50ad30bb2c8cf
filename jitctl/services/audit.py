"""Audit a fleet: which VMs JIT protects (and why not), which rules bypass it, which policies
are too wide, which grants are open now. Pure over an Inventory; reads go through FleetGateway.

Bypass uses verify's NSG evaluation (jitctl.nsgeval.evaluate): for every non-JIT allow rule on
a VM's path whose source holds Internet addresses, an address of that source is evaluated on
each management port; allowed, on a guarded path, and not by a JIT rule, is a bypass.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jitctl.errors import BadInput
from jitctl.fleet import FleetGateway, Inventory
from jitctl.ids import name_of, segments
from jitctl.model import JitPolicy, Nic, Nsg, PolicyVm, SecurityRule, Vm
from jitctl.nsgeval import Evaluation, Flow, evaluate, is_internet, is_jit_rule, rule_matches
from jitctl.parsing import wide_open
from jitctl.services.auditrules import RULES, SEVERITIES
from jitctl.services.query import active_grants

MANAGEMENT_PORTS = (22, 3389, 5985, 5986)
# Stands for "any Internet address" when a rule's source is '*', 'Internet' or 0.0.0.0/0.
INTERNET_SAMPLE = "203.0.113.7"
LONGEST = timedelta(hours=24)


@dataclass(frozen=True)
class Finding:
    rule_id: str
    severity: str
    resource_id: str  # the VM (for a stale entry: the id the policy lists)
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def vm_name(self) -> str:
        return name_of(self.resource_id)

    @property
    def subscription_id(self) -> str:
        return segments(self.resource_id).get("subscriptions", "")

    @property
    def resource_group(self) -> str:
        return segments(self.resource_id).get("resourcegroups", "")


@dataclass(frozen=True)
class VmAudit:
    """Whether JIT protects a VM; `reason` says why not."""

    vm_id: str
    protected: bool
    reason: str | None = None
    policy_id: str | None = None

    @property
    def name(self) -> str:
        return name_of(self.vm_id)


@dataclass(frozen=True)
class AuditResult:
    subscriptions: tuple[str, ...]
    vms: tuple[VmAudit, ...]
    findings: tuple[Finding, ...]

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}

    def failing(self, severities: Iterable[str]) -> list[Finding]:
        wanted = set(severities)
        return [f for f in self.findings if f.severity in wanted]


def parse_fail_on(text: str) -> tuple[str, ...]:
    """'high,medium' -> ('high', 'medium'); 'none' -> () (never fail on findings)."""
    names = tuple(dict.fromkeys(p.strip().lower() for p in text.split(",") if p.strip()))
    if names == ("none",):
        return ()
    bad = [n for n in names if n not in SEVERITIES]
    if bad or not names:
        raise BadInput(
            f"'{text}' is not a list of severities.",
            "Use --fail-on with high, medium, low (comma-separated), or none.",
        )
    return names


def _finding(rule_id: str, resource_id: str, message: str, **evidence: Any) -> Finding:
    return Finding(rule_id, RULES[rule_id].severity, resource_id, message, evidence)


# --- bypass: verify's evaluation from Internet addresses the rules let in ------------------


def _openers(nsg: Nsg | None) -> list[SecurityRule]:
    """The NSG's allow rules that are not JIT's: only they can open a port past JIT."""
    return [
        r
        for r in (nsg.rules if nsg else ())
        if r.access.lower() == "allow"
        and r.direction.lower() == "inbound"
        and not is_jit_rule(r)
        and not r.source_asgs
    ]


def _sources(rules: Sequence[SecurityRule]) -> set[str]:
    """Internet addresses the rules let in (one per prefix)."""
    found: set[str] = set()
    for rule in rules:
        prefixes = list(rule.source_address_prefixes) or [rule.source_address_prefix or ""]
        for prefix in prefixes:
            if wide_open(prefix):
                found.add(INTERNET_SAMPLE)
                continue
            try:
                net = ipaddress.ip_network(prefix.strip(), strict=False)
            except ValueError:
                continue  # a service tag: not resolvable offline
            if net.version != 4:
                continue
            host = net.network_address + (1 if net.num_addresses > 2 else 0)
            if is_internet(host):
                found.add(str(host))
    return found


def _narrowed(nsg: Nsg | None, flow: Flow, memo: dict[Any, Nsg]) -> Nsg | None:
    """The NSG less the rules that cannot match the flow's source, port and protocol, whatever
    its destination: evaluating it decides as the whole NSG does (the first matching rule by
    priority wins, and a dropped rule matches no such flow), at a fraction of the work when
    JIT's rules for many VMs share the NSG. Memoised by NSG and all of the flow but its
    destination."""
    if nsg is None:
        return None
    key = (nsg.id.lower(), flow.source_ip, flow.port, flow.protocol, flow.vnet_prefixes)
    found = memo.get(key)
    if found is None:
        kept = tuple(r for r in nsg.rules if rule_matches(_any_destination(r), flow, []))
        found = memo[key] = dataclasses.replace(nsg, rules=kept)
    return found


def _any_destination(rule: SecurityRule) -> SecurityRule:
    return dataclasses.replace(
        rule, destination_address_prefix="*", destination_address_prefixes=(), destination_asgs=()
    )


@dataclass
class _Memo:
    """What the bypass checks reuse across VMs: NSGs' openers, NSGs narrowed to a flow."""

    openers: dict[str, list[SecurityRule]] = field(default_factory=dict)
    narrowed: dict[Any, Nsg] = field(default_factory=dict)


def _bypasses(vm: Vm, nic: Nic, inv: Inventory, ports: Sequence[int], memo: _Memo) -> list[Finding]:
    cfg = nic.primary_ip_config
    if cfg is None or not cfg.private_ip:
        return []
    subnet = inv.subnet(cfg.subnet_id)
    subnet_nsg = inv.nsg(subnet.nsg_id if subnet else None)
    nic_nsg = inv.nsg(nic.nsg_id)
    openers = []
    for nsg in (subnet_nsg, nic_nsg):
        if nsg is not None:
            if nsg.id.lower() not in memo.openers:
                memo.openers[nsg.id.lower()] = _openers(nsg)
            openers += memo.openers[nsg.id.lower()]
    if not openers:
        return []
    prefixes = subnet.address_prefixes if subnet else ()
    out = []
    for port in ports:
        for source in sorted(_sources(openers)):
            flow = Flow(source, cfg.private_ip, port, "Tcp", cfg.asg_ids, prefixes)
            if not any(rule_matches(r, flow, []) for r in openers):
                continue  # no rule that could open it: JIT's rules or the defaults decide
            narrowed = memo.narrowed
            ev = evaluate(
                _narrowed(subnet_nsg, flow, narrowed), _narrowed(nic_nsg, flow, narrowed), flow
            )
            if ev.bypassed:
                address = inv.public_ips.get((cfg.public_ip_id or "").lower())
                out.append(_bypass_finding(vm, nic, port, source, ev, cfg.public_ip_id, address))
                break
    return out


def _bypass_finding(
    vm: Vm,
    nic: Nic,
    port: int,
    source: str,
    ev: Evaluation,
    public_ip_id: str | None,
    address: str | None,
) -> Finding:
    rules = [
        {
            "nsg": v.nsg_id,
            "level": v.level,
            "rule": v.rule.name,
            "priority": v.rule.priority,
        }
        for v in ev.levels
        if v.nsg_id and v.rule is not None
    ]
    named = ", ".join(f"{r['rule']} (priority {r['priority']}, {r['level']} NSG)" for r in rules)
    at = f" (public IP {address})" if address else ""
    return _finding(
        "bypass",
        vm.id,
        f"Port {port} of {vm.name}{at} is open to {source} by {named}, not by JIT.",
        port=port,
        source=source,
        nic=nic.id,
        public_ip=public_ip_id,
        public_ip_address=address,
        rules=rules,
    )


# --- the audit -------------------------------------------------------------------------------


def _has_nsg(vm: Vm, inv: Inventory) -> bool:
    for ref in vm.nics:
        nic = inv.nic(ref.id)
        if nic is None:
            continue
        if inv.nsg(nic.nsg_id):
            return True
        for cfg in nic.ip_configs:
            subnet = inv.subnet(cfg.subnet_id)
            if subnet is not None and inv.nsg(subnet.nsg_id):
                return True
    return False


def _policy_findings(policy: JitPolicy, entry: PolicyVm) -> list[Finding]:
    out = []
    for port in entry.ports:
        if any(wide_open(s) for s in port.sources):
            out.append(
                _finding(
                    "any-source",
                    entry.id,
                    f"Policy {policy.name} lets requests open port {port.number} of "
                    f"{name_of(entry.id)} to any source ({', '.join(port.sources)}).",
                    policy=policy.id,
                    port=port.number,
                    sources=list(port.sources),
                )
            )
        if port.max_duration >= LONGEST:
            out.append(
                _finding(
                    "long-duration",
                    entry.id,
                    f"Policy {policy.name} allows requests of 24 hours on port {port.number} "
                    f"of {name_of(entry.id)}.",
                    policy=policy.id,
                    port=port.number,
                    max_duration=port.max_duration,
                )
            )
    return out


def audit_inventory(inv: Inventory, now: datetime) -> AuditResult:
    """Every VM of the inventory, every entry of its policies; findings most severe first."""
    vm_ids = {vm.id.lower() for vm in inv.vms}
    entries: dict[str, tuple[JitPolicy, PolicyVm]] = {}
    findings: list[Finding] = []
    for policy in inv.policies:
        for entry in policy.vms:
            if entry.id.lower() not in vm_ids:
                findings.append(
                    _finding(
                        "stale-policy-entry",
                        entry.id,
                        f"Policy {policy.name} lists {name_of(entry.id)}, which Resource Graph "
                        "does not have: deleted (or created minutes ago).",
                        policy=policy.id,
                    )
                )
                continue
            entries.setdefault(entry.id.lower(), (policy, entry))
            findings.extend(_policy_findings(policy, entry))
        for grant in active_grants(policy, now):
            findings.append(
                _finding(
                    "open-grant",
                    grant.vm_id,
                    f"Port {grant.port} of {grant.vm_name} is open to {grant.source} until "
                    f"{grant.end_time:%Y-%m-%d %H:%M} UTC.",
                    policy=policy.id,
                    port=grant.port,
                    source=grant.source,
                    end_time=grant.end_time,
                    requestor=grant.requestor,
                )
            )
    vms = []
    memo = _Memo()
    for vm in sorted(inv.vms, key=lambda v: v.id.lower()):
        found = entries.get(vm.id.lower())
        missing = [ref.id for ref in vm.nics if inv.nic(ref.id) is None]
        if missing:  # lag, or a page that moved: judged without them, the verdict could be wrong
            names = ", ".join(name_of(m) for m in missing)
            vms.append(VmAudit(vm.id, False, f"NIC {names} not in Resource Graph yet"))
            findings.append(
                _finding(
                    "nic-not-indexed",
                    vm.id,
                    f"Resource Graph has no NIC {names} of {vm.name}: its NSG path is not judged.",
                    nics=missing,
                )
            )
            if found is None:
                findings.append(_finding("not-in-policy", vm.id, f"{vm.name} is in no JIT policy."))
            continue
        if not _has_nsg(vm, inv):
            vms.append(VmAudit(vm.id, False, "no NSG on its NICs or subnets"))
            findings.append(
                _finding("no-nsg", vm.id, f"No NSG guards {vm.name}: JIT cannot protect it.")
            )
            continue
        if found is None:
            vms.append(VmAudit(vm.id, False, "in no JIT policy"))
            findings.append(_finding("not-in-policy", vm.id, f"{vm.name} is in no JIT policy."))
        else:
            vms.append(VmAudit(vm.id, True, None, found[0].id))
        ports = sorted({*MANAGEMENT_PORTS, *(p.number for p in (found[1].ports if found else ()))})
        for ref in vm.nics:
            nic = inv.nic(ref.id)
            if nic is not None:
                findings.extend(_bypasses(vm, nic, inv, ports, memo))
    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: (order[f.severity], f.rule_id, f.resource_id.lower()))
    return AuditResult(inv.subscriptions, tuple(vms), tuple(findings))


def audit(fleet: FleetGateway, subscription_ids: Sequence[str], now: datetime) -> AuditResult:
    """One fleet read (a bounded number of calls, whatever the VM count), then pure checks."""
    return audit_inventory(fleet.inventory(subscription_ids), now)
