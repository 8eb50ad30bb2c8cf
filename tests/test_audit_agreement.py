"""`audit` and `verify` agree, world by world (issue 21: audit said 192.0.2.1 where verify let
8.8.8.8 in through the same rule).

For every VM of every world (in `fleet`, every VM with a finding or a rule that is not JIT's on
its path, and every 50th other), audit runs as the CLI does (Resource Graph and the JIT lists
through the real SDK clients over the emulator), verify reads the VM's path from ARM, and each
probe address is evaluated by verify's own code on each port audit checks:

- an address a bypass finding says it admits: verify says EFFECTIVE, not by JIT, through the
  rules the finding names;
- an address a bypass finding says it does not admit: verify does not let it in through those
  rules;
- an Internet address verify lets in past JIT: a finding names those rules and admits it;
- an open grant's source: verify says EFFECTIVE, by JIT.

The probes are the first and last address of every prefix on the path and in the findings,
the addresses just outside them, and a few fixed ones (public, private, Azure's own). Whether an
address is "from the Internet" is the test's own reading, not nsgeval's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from jitctl.app import App
from jitctl.emulator import Backend, FakeClock, Settings
from jitctl.emulator.worlds import WORLDS
from jitctl.ids import VmRef, name_of, segments
from jitctl.model import Nsg
from jitctl.services.audit import MANAGEMENT_PORTS, AuditResult, Finding, audit
from jitctl.services.topology import Path, read_nsgs, read_path
from jitctl.services.verify import PortVerdict, evaluate_path

NOT_INTERNET = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "168.63.129.16/32",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/3",
    )
)
FIXED_PROBES = (
    "8.8.8.8",
    "1.1.1.1",
    "20.61.15.10",
    "203.0.113.7",
    "198.51.100.9",
    "192.0.2.200",
    "10.0.0.1",
    "10.20.1.9",
    "172.16.5.5",
    "192.168.1.1",
    "100.64.0.1",
    "127.0.0.1",
    "168.63.129.16",
)
SAMPLE_EVERY = 50  # in the fleet world, the other VMs checked


def from_internet(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not any(ip in n for n in NOT_INTERNET)


def admits(finding: Finding, address: str) -> bool | None:
    """Does the finding say it admits `address`? None: 'Internet' and an address the test
    cannot place (Azure's tag has edges of its own: the VNet, Azure's addresses)."""
    ip = ipaddress.ip_address(address)
    if any(ip in ipaddress.ip_network(p) for p in finding.evidence["excluded"]):
        return False
    unsure = False
    for source in finding.evidence["sources"]:
        if source == "*":
            return True
        if source == "Internet":
            if from_internet(address):
                return True
            unsure = True
        elif ip in ipaddress.ip_network(source):
            return True
    return None if unsure else False


def prefixes_in(nsgs: tuple[Nsg | None, ...], findings: list[Finding]) -> Iterator[str]:
    for nsg in nsgs:
        for rule in nsg.rules if nsg else ():
            yield from rule.source_address_prefixes or [rule.source_address_prefix or ""]
    for f in findings:
        yield from f.evidence.get("sources", [])
        yield from f.evidence.get("excluded", [])


def probes(nsgs: tuple[Nsg | None, ...], findings: list[Finding]) -> set[str]:
    found = set(FIXED_PROBES)
    for prefix in prefixes_in(nsgs, findings):
        try:
            net = ipaddress.ip_network(prefix.strip(), strict=False)
        except ValueError:
            continue  # '*', a service tag: the fixed probes stand for them
        if net.version != 4:
            continue
        first, last = int(net.network_address), int(net.broadcast_address)
        for n in (first - 1, first, last, last + 1):
            if 0 <= n < 2**32:
                found.add(str(ipaddress.IPv4Address(n)))
    return found


def rules_of(verdict: PortVerdict) -> list[tuple[str, str, str]]:
    """The rules verify names: the one that decides at each level with an NSG."""
    return [
        (v.level, (v.nsg_id or "").lower(), v.rule.name)
        for v in verdict.evaluation.levels
        if v.nsg_id and v.rule is not None
    ]


def named_by(finding: Finding) -> list[tuple[str, str, str]]:
    return [(r["level"], r["nsg"].lower(), r["rule"]) for r in finding.evidence["rules"]]


@dataclass
class Checked:
    bypasses: int = 0
    grants: int = 0
    admitted: int = 0  # probes a finding admits, verify let in
    refused: int = 0  # probes a finding does not admit, verify kept out of its rules
    exposures: int = 0  # Internet probes verify let in past JIT, each found by audit


def vm_ref(vm_id: str) -> VmRef:
    seg = segments(vm_id)
    return VmRef(seg["subscriptions"], seg["resourcegroups"], name_of(vm_id))


def check_agreement(backend: Backend, app: App, result: AuditResult, vm_ids: list[str]) -> Checked:
    gw = app.gateway()
    seen = Checked()
    by_vm: dict[str, list[Finding]] = {}
    for f in result.findings:
        by_vm.setdefault(f.resource_id.lower(), []).append(f)
    for vm_id in vm_ids:
        findings = by_vm.get(vm_id.lower(), [])
        vm = gw.get_vm(vm_ref(vm_id))
        policy_ports = {f.evidence["port"] for f in findings if "port" in f.evidence}
        ports = sorted({*MANAGEMENT_PORTS, *policy_ports})
        for ref in vm.nics:
            path: Path = read_path(gw, vm, ref.id)
            nsgs = read_nsgs(gw, path)
            bypasses = [
                f
                for f in findings
                if f.rule_id == "bypass" and f.evidence["nic"].lower() == path.nic.id.lower()
            ]
            verdicts = {
                probe: {p.port: p for p in evaluate_path(path, nsgs, probe, ports, False).ports}
                for probe in sorted(probes(nsgs, bypasses))
            }
            for f in bypasses:
                seen.bypasses += 1
                for probe, by_port in verdicts.items():
                    verdict = by_port[f.evidence["port"]]
                    through = verdict.effective and rules_of(verdict) == named_by(f)
                    said = admits(f, probe)
                    if said:
                        assert through and verdict.evaluation.bypassed, (f.message, probe)
                        seen.admitted += 1
                    elif said is False:
                        assert not through, (f.message, probe)
                        seen.refused += 1
            for probe, by_port in verdicts.items():
                if not from_internet(probe):
                    continue
                for port, verdict in by_port.items():
                    if not verdict.evaluation.bypassed:
                        continue
                    covering = [
                        f
                        for f in bypasses
                        if f.evidence["port"] == port and named_by(f) == rules_of(verdict)
                    ]
                    assert covering and admits(covering[0], probe), (vm_id, port, probe)
                    seen.exposures += 1
        for f in findings:
            if f.rule_id == "open-grant":
                source = str(ipaddress.ip_network(f.evidence["source"], strict=False)[0])
                (verdict,) = evaluate_path(
                    read_path(gw, vm),
                    read_nsgs(gw, read_path(gw, vm)),
                    source,
                    [f.evidence["port"]],
                    False,
                ).ports
                assert verdict.effective and verdict.by_jit, f.message
                seen.grants += 1
    return seen


def has_opener(backend: Backend, vm_id: str) -> bool:
    for _nic, _ip, nsg_ids in backend.vm_paths(vm_id):
        for nsg_id in nsg_ids:
            rules = (backend.find(nsg_id) or {}).get("properties", {}).get("securityRules", [])
            if any(
                r["properties"].get("access") == "Allow" and "JITRule" not in r["name"]
                for r in rules
            ):
                return True
    return False


def audited(world: str) -> tuple[Backend, App, AuditResult]:
    backend = Backend(settings=Settings(propagation_delay=0), clock=FakeClock())
    WORLDS[world](backend)
    app = App.for_backend(backend)
    subs = [s.id for s in app.fleet().subscriptions()]
    return backend, app, audit(app.fleet(), subs, app.clock.now())


@pytest.mark.parametrize("world", sorted(WORLDS))
def test_audit_and_verify_agree_on_every_rule_of_every_world(world: str) -> None:
    backend, app, result = audited(world)
    vm_ids = [v.vm_id for v in result.vms]
    if world == "fleet":
        flagged = {
            f.resource_id.lower() for f in result.findings if f.rule_id in ("bypass", "open-grant")
        }
        vm_ids = [
            v
            for i, v in enumerate(vm_ids)
            if v.lower() in flagged or has_opener(backend, v) or i % SAMPLE_EVERY == 0
        ]
    seen = check_agreement(backend, app, result, vm_ids)
    bypasses = sum(f.rule_id == "bypass" for f in result.findings)
    grants = sum(f.rule_id == "open-grant" for f in result.findings)
    assert (seen.bypasses, seen.grants) == (bypasses, grants)  # every finding was checked
    expected: dict[str, Any] = {"busy": 4}
    if world in expected:
        assert bypasses == expected[world]
        assert seen.admitted and seen.refused and seen.exposures
