"""Audit computes a bypass once per distinct case (the NSGs on the path, the port, what of the
destination the rules read, the VNet's prefixes) and shares it between the VMs of that case:
never between two VMs that the rules tell apart, never from an NSG's old rules."""

from __future__ import annotations

import pytest

from jitctl.app import App
from jitctl.emulator import Backend
from jitctl.emulator.seeder import Seeder, subnet_id
from jitctl.model import IpConfig, Nic, Nsg, SecurityRule, Subnet
from jitctl.nsgeval import Flow
from jitctl.services.audit import AuditResult, audit_inventory
from jitctl.services.exposure import Case, Memo, exposures, path_exposures
from tests.test_audit_agreement import check_agreement
from tests.test_audit_exposure import bypasses, rule

GROUP = "rg-cases"
PRIVATE = "10.0.0.0/8, 100.64.0.0/10, 172.16.0.0/12, 192.168.0.0/16"


def seed(b: Backend) -> None:
    """VMs that share a subnet NSG (two VNets use it), and two NIC NSGs that differ only in
    one rule's source prefix."""
    s = Seeder(b, group=GROUP)
    shared = s.nsg(
        "nsg-shared",
        [
            rule("Allow-RDP-Internet", 300, "3389", "Internet"),
            rule("Allow-SSH-Low", 310, "22", destination="10.1.1.0/25"),  # half the subnet
            rule("Deny-VNet-WinRM", 320, "5985", "VirtualNetwork", access="Deny"),
            rule("Allow-WinRM", 330, "5985"),
        ],
    )
    vnet = s.vnet(
        "vnet",
        "10.1.0.0/16",
        {"snet-shared": ("10.1.1.0/24", shared), "snet-nic": ("10.1.2.0/24", None)},
    )
    public = s.vnet("vnet-public", "20.30.0.0/16", {"snet-pub": ("20.30.1.0/24", shared)})
    for name, ip in (("vm-s1", "10.1.1.4"), ("vm-s2", "10.1.1.5"), ("vm-s3", "10.1.1.6")):
        s.vm(name, [s.nic(f"{name}-nic", subnet_id(vnet, "snet-shared"), ip)])
    s.vm("vm-s4", [s.nic("vm-s4-nic", subnet_id(vnet, "snet-shared"), "10.1.1.200")])
    s.vm("vm-p1", [s.nic("vm-p1-nic", subnet_id(public, "snet-pub"), "20.30.1.4")])
    for name, ip, source in (
        ("vm-a", "10.1.2.4", "198.51.100.0/24"),
        ("vm-b", "10.1.2.5", "192.0.2.0/24"),
    ):
        nsg = s.nsg(f"{name}-nsg", [rule("Allow-Partner", 100, "3389", source)])
        s.vm(name, [s.nic(f"{name}-nic", subnet_id(vnet, "snet-nic"), ip, nsg=nsg)])
    # their JIT deny rules: in the subnet NSG, one for each, alike but for names and addresses
    s.jit_policy("default", {"vm-s2": [3389], "vm-s3": [3389]})


class Counted:
    """path_exposures, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, subnet_nsg: Nsg | None, nic_nsg: Nsg | None, flow: Flow) -> Case:
        self.calls += 1
        return path_exposures(subnet_nsg, nic_nsg, flow)


@pytest.fixture
def audited(backend: Backend, app: App) -> tuple[AuditResult, Counted]:
    backend.reset()
    seed(backend)
    counted = Counted()
    inventory = app.fleet().inventory([app.subscription_id])
    return audit_inventory(inventory, app.clock.now(), Memo(counted)), counted


def test_vms_the_rules_tell_apart_get_their_own_answer(
    backend: Backend, app: App, audited: tuple[AuditResult, Counted]
) -> None:
    result, _ = audited
    assert bypasses(result) == {
        *(
            (vm, 3389, "Internet", ("Allow-RDP-Internet",))
            for vm in ("vm-s1", "vm-s2", "vm-s3", "vm-s4", "vm-p1")
        ),
        # the rule's destination is the subnet's lower half
        ("vm-s1", 22, "any address", ("Allow-SSH-Low",)),
        ("vm-s2", 22, "any address", ("Allow-SSH-Low",)),
        ("vm-s3", 22, "any address", ("Allow-SSH-Low",)),
        # what VirtualNetwork stands for: the private ranges, and a VNet's own prefixes
        *(
            (vm, 5985, f"any address except {PRIVATE}", ("Allow-WinRM",))
            for vm in ("vm-s1", "vm-s2", "vm-s3", "vm-s4")
        ),
        (
            "vm-p1",
            5985,
            "any address except 10.0.0.0/8, 20.30.1.0/24, 100.64.0.0/10, 172.16.0.0/12 and 1 more",
            ("Allow-WinRM",),
        ),
        # same NSG shape, same rule name and priority, another prefix
        ("vm-a", 3389, "198.51.100.0/24", ("Allow-Partner",)),
        ("vm-b", 3389, "192.0.2.0/24", ("Allow-Partner",)),
    }
    nsgs = {
        f.vm_name: {r["nsg"].rsplit("/", 1)[-1] for r in f.evidence["rules"]}
        for f in result.findings
        if f.rule_id == "bypass" and f.vm_name in ("vm-a", "vm-b")
    }
    assert nsgs == {"vm-a": {"vm-a-nsg"}, "vm-b": {"vm-b-nsg"}}
    # vm-p1 left out: the check's own reading of "from the Internet" knows no public VNet
    vm_ids = [v.vm_id for v in result.vms if v.name != "vm-p1"]
    assert check_agreement(backend, app, result, vm_ids).bypasses == 13


def test_each_distinct_case_is_computed_once(audited: tuple[AuditResult, Counted]) -> None:
    """17 checks (vm-s1..s4 and vm-p1 on 22, 3389 and 5985, where the shared NSG has rules
    that are not JIT's; vm-a and vm-b on 3389), 11 cases: 3389 for s1 and s4, for s2 and for
    s3 (each with a JIT rule of its own), for p1 (another VNet); 22 for s1, s2 and s3, for s4
    (outside the rule's destination), for p1; 5985 for s1..s4, for p1; one per NIC NSG."""
    _, counted = audited
    assert counted.calls == 11


def nic(name: str, ip: str, nsg: Nsg) -> Nic:
    cfg = IpConfig("ipconfig1", ip, "snet", primary=True)
    return Nic(f"/nics/{name}", nsg.id, (cfg,))


def test_an_nsg_read_again_with_other_rules_is_not_answered_from_its_old_rules() -> None:
    """The same memo, the same NSG id and rule name, a new source prefix: the new answer."""
    subnet = Subnet("snet", None, ("10.1.2.0/24",))
    memo = Memo()

    def sources(prefix: str) -> list[tuple[str, ...]]:
        allow = SecurityRule(
            "Allow-Partner",
            100,
            "Allow",
            protocol="Tcp",
            source_address_prefix=prefix,
            destination_address_prefix="*",
            destination_port_range="3389",
        )
        nsg = Nsg("/nsgs/nsg-a", (allow,))
        found, _ = exposures(nic("nic-a", "10.1.2.4", nsg), subnet, (None, nsg), [3389], memo)
        return [f.sources for f in found]

    assert sources("198.51.100.0/24") == [("198.51.100.0/24",)]
    assert sources("192.0.2.0/24") == [("192.0.2.0/24",)]
    assert sources("10.9.0.0/16") == []  # no Internet address gets in any more
    assert sources("198.51.100.0/24") == [("198.51.100.0/24",)]
