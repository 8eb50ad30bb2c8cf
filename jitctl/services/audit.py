"""Audit a fleet: which VMs JIT protects (and why not), which rules bypass it, which policies
are too wide, which grants are open now. Pure over an Inventory; reads go through FleetGateway.

A bypass is a management port that Internet addresses reach through rules that are not JIT's,
by verify's NSG evaluation; it names every source those rules let in (services/exposure.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jitctl.errors import BadInput
from jitctl.fleet import FleetGateway, Inventory
from jitctl.ids import name_of, segments
from jitctl.model import JitPolicy, Nic, PolicyVm, Vm
from jitctl.parsing import wide_open
from jitctl.services.auditrules import RULES, SEVERITIES
from jitctl.services.exposure import Exposure, Memo, exposures
from jitctl.services.query import active_grants

MANAGEMENT_PORTS = (22, 3389, 5985, 5986)
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


# --- bypass: every source a rule that is not JIT's lets in (verify's evaluation) -------------


def _bypasses(vm: Vm, nic: Nic, inv: Inventory, ports: Sequence[int], memo: Memo) -> list[Finding]:
    cfg = nic.primary_ip_config
    subnet = inv.subnet(cfg.subnet_id if cfg else None)
    nsgs = (inv.nsg(subnet.nsg_id if subnet else None), inv.nsg(nic.nsg_id))
    public_ip_id = cfg.public_ip_id if cfg else None
    address = inv.public_ips.get((public_ip_id or "").lower())
    found, doubts = exposures(nic, subnet, nsgs, ports, memo)
    at = f" (public IP {address})" if address else ""
    return [_bypass_finding(vm, nic, f, public_ip_id, address) for f in found] + [
        _finding(
            "unjudged-rule",
            vm.id,
            f"Port {d.port} of {vm.name}{at} may be open past JIT by {d.rule.name} (priority "
            f"{d.rule.priority}, {d.level} NSG): its {' and '.join(d.reasons)} cannot be judged "
            "offline, so audit and verify take it to match no one.",
            port=d.port,
            nic=nic.id,
            rule={
                "nsg": d.nsg_id,
                "level": d.level,
                "rule": d.rule.name,
                "priority": d.rule.priority,
            },
            unjudged=list(d.reasons),
        )
        for d in doubts
    ]


def _bypass_finding(
    vm: Vm, nic: Nic, found: Exposure, public_ip_id: str | None, address: str | None
) -> Finding:
    rules = [
        {
            "nsg": v.nsg_id,
            "level": v.level,
            "rule": v.rule.name,
            "priority": v.rule.priority,
        }
        for v in found.evaluation.levels
        if v.nsg_id and v.rule is not None
    ]
    named = ", ".join(f"{r['rule']} (priority {r['priority']}, {r['level']} NSG)" for r in rules)
    at = f" (public IP {address})" if address else ""
    return _finding(
        "bypass",
        vm.id,
        f"Port {found.port} of {vm.name}{at} is open to {found.source} by {named}, not by JIT.",
        port=found.port,
        source=found.source,
        sources=list(found.sources),
        excluded=list(found.excluded),
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


def audit_inventory(inv: Inventory, now: datetime, memo: Memo | None = None) -> AuditResult:
    """Every VM of the inventory, every entry of its policies; findings most severe first.
    VMs whose NSG paths are alike share their exposure checks (in `memo`, a new one if none)."""
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
    memo = memo if memo is not None else Memo()
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
