"""What a bypass says a port is open to: every source the rules on the path let in, named as an
admin writes it, on NSGs where the old sampled answer was wrong or vague."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from jitctl.app import App
from jitctl.emulator import Backend
from jitctl.emulator.seeder import Seeder, subnet_id
from jitctl.services.audit import AuditResult, audit
from jitctl.services.exposure import named
from tests.test_audit_agreement import check_agreement

GROUP = "rg-exposure"


def rule(
    name: str,
    priority: int,
    port: str,
    source: str | list[str] = "*",
    access: str = "Allow",
    destination: str = "*",
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "priority": priority,
        "direction": "Inbound",
        "access": access,
        "protocol": "Tcp",
        "sourcePortRange": "*",
        "destinationAddressPrefix": destination,
        "destinationPortRange": port,
        **extra,
    }
    if isinstance(source, list):
        body["sourceAddressPrefixes"] = source
    else:
        body["sourceAddressPrefix"] = source
    return body


def seed(b: Backend) -> None:
    """One VM per shape of NSG path (all in 10.1.0.0/16)."""
    s = Seeder(b, group=GROUP)
    partner = s.nsg("nsg-partner", [rule("Allow-Partner", 100, "22", "198.51.100.0/24")])
    shared = s.nsg("nsg-shared", [rule("Allow-RDP-To-F2", 100, "3389", destination="10.1.3.5")])
    vnet = s.vnet(
        "vnet",
        "10.1.0.0/16",
        {
            "snet-open": ("10.1.1.0/24", None),
            "snet-partner": ("10.1.2.0/24", partner),
            "snet-shared": ("10.1.3.0/24", shared),
        },
    )
    nsgs = {
        "vm-carved": [
            rule("Deny-Partner", 100, "3389", "192.0.2.0/24", access="Deny"),
            rule("Allow-RDP-Any", 200, "3389"),
        ],
        "vm-internet": [
            rule("Deny-VNet", 100, "22", "VirtualNetwork", access="Deny"),
            rule("Allow-SSH-Any", 200, "22"),
            rule("Allow-RDP-Internet", 300, "3389", "Internet"),
        ],
        "vm-two": [
            rule("Allow-Office", 100, "3389", "203.0.113.0/24"),
            rule("Allow-RDP-Internet", 300, "3389", "Internet"),
        ],
        "vm-quiet": [
            rule("Allow-VPN", 100, "22", "10.9.0.0/16"),
            rule("Allow-AzureCloud", 110, "3389", "AzureCloud"),
            rule("Allow-From-Asg", 120, "5985", "*", sourceApplicationSecurityGroups=[{"id": "x"}]),
            rule("Allow-Ephemeral", 130, "22", "*", sourcePortRange="1024-65535"),
        ],
    }
    for i, (name, rules) in enumerate(nsgs.items(), start=4):
        nic = s.nic(
            f"{name}-nic", subnet_id(vnet, "snet-open"), f"10.1.1.{i}", nsg=s.nsg(name, rules)
        )
        s.vm(name, [nic])
    wide = s.nsg(
        "vm-both-nsg", [rule("Allow-Half", 100, "22", ["198.51.100.0/25", "203.0.113.0/24"])]
    )
    s.vm("vm-both", [s.nic("vm-both-nic", subnet_id(vnet, "snet-partner"), "10.1.2.4", nsg=wide)])
    tagged = s.nsg(
        "vm-tagged-nsg",
        [
            rule("Allow-Cloud-SSH", 100, "22", "AzureCloud"),
            rule("Allow-Cloud-RDP", 110, "3389", "AzureCloud"),
        ],
    )
    s.vm(
        "vm-tagged",
        [s.nic("vm-tagged-nic", subnet_id(vnet, "snet-partner"), "10.1.2.5", nsg=tagged)],
    )
    for i, name in enumerate(("vm-f1", "vm-f2"), start=4):
        s.vm(name, [s.nic(f"{name}-nic", subnet_id(vnet, "snet-shared"), f"10.1.3.{i}")])


@pytest.fixture
def result(backend: Backend, app: App) -> AuditResult:
    backend.reset()
    seed(backend)
    return audit(app.fleet(), [app.subscription_id], app.clock.now())


def bypasses(result: AuditResult) -> set[tuple[str, int, str, tuple[str, ...]]]:
    return {
        (
            f.vm_name,
            f.evidence["port"],
            f.evidence["source"],
            tuple(r["rule"] for r in f.evidence["rules"]),
        )
        for f in result.findings
        if f.rule_id == "bypass"
    }


def test_each_bypass_names_all_the_rules_let_in_less_what_rules_before_take(
    result: AuditResult,
) -> None:
    private = "10.0.0.0/8, 100.64.0.0/10, 172.16.0.0/12, 192.168.0.0/16"
    assert bypasses(result) == {
        ("vm-carved", 3389, "any address except 192.0.2.0/24", ("Allow-RDP-Any",)),
        ("vm-internet", 22, f"any address except {private}", ("Allow-SSH-Any",)),
        ("vm-internet", 3389, "Internet", ("Allow-RDP-Internet",)),
        ("vm-two", 3389, "203.0.113.0/24", ("Allow-Office",)),
        ("vm-two", 3389, "Internet except 203.0.113.0/24", ("Allow-RDP-Internet",)),
        # both NSGs must allow: what the subnet's rule and the NIC's let in together
        ("vm-both", 22, "198.51.100.0/25", ("Allow-Partner", "Allow-Half")),
        # a shared NSG's rule for one address opens that VM only
        ("vm-f2", 3389, "any address", ("Allow-RDP-To-F2",)),
    }


def test_the_evidence_lists_the_sources_and_what_is_taken_out(result: AuditResult) -> None:
    carved = next(f for f in result.findings if f.vm_name == "vm-carved")
    assert (carved.evidence["sources"], carved.evidence["excluded"]) == (["*"], ["192.0.2.0/24"])
    assert carved.message == (
        "Port 3389 of vm-carved is open to any address except 192.0.2.0/24 by Allow-RDP-Any "
        "(priority 200, nic NSG), not by JIT."
    )
    both = next(f for f in result.findings if f.vm_name == "vm-both")
    assert [(r["level"], r["rule"]) for r in both.evidence["rules"]] == [
        ("subnet", "Allow-Partner"),
        ("nic", "Allow-Half"),
    ]
    assert (both.evidence["sources"], both.evidence["excluded"]) == (["198.51.100.0/25"], [])


def test_verify_agrees_with_each_of_them(backend: Backend, app: App, result: AuditResult) -> None:
    seen = check_agreement(backend, app, result, [v.vm_id for v in result.vms])
    assert seen.bypasses == 7
    assert seen.admitted and seen.refused and seen.exposures


def v4(text: str) -> tuple[int, int]:
    net = ipaddress.ip_network(text)
    return int(net.network_address), int(net.broadcast_address)


@pytest.mark.parametrize(
    "admitted, wanted",
    [
        (["0.0.0.0/0"], (("*",), ())),
        (["0.0.0.0/1", "128.0.0.0/1"], (("*",), ())),  # adjacent ranges merge
        (["198.51.100.0/24", "192.0.2.0/24"], (("192.0.2.0/24", "198.51.100.0/24"), ())),
        (["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3", "240.0.0.0/4"], (("*",), ("224.0.0.0/4",))),
        (["11.0.0.0/8"], (("Internet",), ())),
        (["11.0.0.0/9"], (("11.0.0.0/9",), ())),  # the real prefix, not 'Internet' less half
        (["11.0.0.0/9", "11.192.0.0/10"], (("11.0.0.0/9", "11.192.0.0/10"), ())),  # a tie
        (["11.0.0.0/9", "11.128.0.0/11", "11.192.0.0/10"], (("Internet",), ("11.160.0.0/11",))),
    ],
)
def test_a_set_of_addresses_is_named_in_the_fewest_prefixes(
    admitted: list[str], wanted: tuple[tuple[str, ...], tuple[str, ...]]
) -> None:
    internet = [v4("11.0.0.0/8")]  # a small stand-in for the tag
    assert named([v4(a) for a in admitted], internet) == wanted


def test_a_rule_whose_source_cannot_be_judged_offline_is_reported_as_may_be_open(
    result: AuditResult,
) -> None:
    """A service tag jitctl cannot resolve, or limited source ports: verify takes the rule to
    match no one, so it is no bypass; audit still names it (medium), never stays silent."""
    doubts = [f for f in result.findings if f.rule_id == "unjudged-rule"]
    assert [(f.vm_name, f.evidence["port"], f.evidence["unjudged"]) for f in doubts] == [
        ("vm-quiet", 22, ["source ports 1024-65535"]),
        ("vm-quiet", 3389, ["service tag AzureCloud"]),
        # the subnet NSG lets port 22 in from a partner range, port 3389 from no one
        ("vm-tagged", 22, ["service tag AzureCloud"]),
    ]
    assert doubts[1].severity == "medium"
    assert doubts[1].message == (
        "Port 3389 of vm-quiet may be open past JIT by Allow-AzureCloud (priority 110, nic NSG): "
        "its service tag AzureCloud cannot be judged offline, so audit and verify take it to "
        "match no one."
    )


def test_a_long_list_is_cut_in_the_message_and_whole_in_the_evidence(
    backend: Backend, app: App
) -> None:
    backend.reset()
    s = Seeder(backend, group=GROUP)
    ranges = [f"198.51.{i}.0/24" for i in range(0, 12, 2)]  # 6 ranges, none adjacent
    nsg = s.nsg("nsg-many", [rule("Allow-Partners", 100, "22", ranges)])
    vnet = s.vnet("vnet", "10.1.0.0/16", {"snet": ("10.1.1.0/24", None)})
    s.vm("vm-many", [s.nic("vm-many-nic", subnet_id(vnet, "snet"), "10.1.1.4", nsg=nsg)])
    result = audit(app.fleet(), [app.subscription_id], app.clock.now())
    (found,) = [f for f in result.findings if f.rule_id == "bypass"]
    assert found.evidence["sources"] == ranges
    assert found.evidence["source"] == (
        "198.51.0.0/24, 198.51.2.0/24, 198.51.4.0/24, 198.51.6.0/24 and 2 more"
    )
    assert f"is open to {found.evidence['source']} by Allow-Partners" in found.message
