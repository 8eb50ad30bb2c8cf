"""`jitctl audit`'s service: findings of each kind, read through Resource Graph from the
emulator with the real SDK clients; the fleet read's ARM calls do not grow with the VMs."""

from __future__ import annotations

import pytest

from jitctl.app import App
from jitctl.emulator import Backend, FakeClock, Settings
from jitctl.errors import BadInput
from jitctl.services.audit import AuditResult, audit, parse_fail_on
from tests.fleetworld import SUBS, many, problems


@pytest.fixture
def world_ids(backend: Backend) -> dict[str, str]:
    backend.reset()
    return problems(backend)


def run_audit(app: App, subs: list[str]) -> AuditResult:
    return audit(app.fleet(), subs, app.clock.now())


def kinds(result: AuditResult) -> set[tuple[str, str]]:
    return {(f.rule_id, f.vm_name) for f in result.findings}


def test_each_kind_of_problem_is_found_once_on_its_vm(app: App, world_ids: dict[str, str]) -> None:
    result = run_audit(app, list(SUBS[:2]))
    assert kinds(result) == {
        ("no-nsg", "vm-nonsg"),
        ("not-in-policy", "vm-nopolicy"),
        ("not-in-policy", "vm-other"),
        ("bypass", "vm-bypass"),
        ("any-source", "vm-wide"),
        ("long-duration", "vm-wide"),
        ("stale-policy-entry", "vm-gone"),
        ("open-grant", "vm-ok"),
    }
    assert len(result.findings) == 8
    assert [f.severity for f in result.findings] == sorted(
        (f.severity for f in result.findings), key=["high", "medium", "low"].index
    )
    assert result.counts == {"high": 2, "medium": 3, "low": 3}


def test_the_bypass_names_the_rule_port_and_source(app: App, world_ids: dict[str, str]) -> None:
    result = run_audit(app, [SUBS[0]])
    bypass = next(f for f in result.findings if f.rule_id == "bypass")
    assert bypass.evidence["port"] == 3389
    assert bypass.evidence["source"] == "any address"
    assert (bypass.evidence["sources"], bypass.evidence["excluded"]) == (["*"], [])
    assert [r["rule"] for r in bypass.evidence["rules"]] == ["Allow-RDP-Any"]
    assert bypass.evidence["public_ip"].endswith("/vm-bypass-pip")
    assert bypass.message == (
        "Port 3389 of vm-bypass (public IP 20.61.17.4) is open to any address by Allow-RDP-Any "
        "(priority 1001, nic NSG), not by JIT."
    )


def test_protected_or_not_and_why_for_every_vm(app: App, world_ids: dict[str, str]) -> None:
    result = run_audit(app, [SUBS[0]])
    status = {v.name: (v.protected, v.reason) for v in result.vms}
    assert status == {
        "vm-ok": (True, None),
        "vm-bypass": (True, None),
        "vm-wide": (True, None),
        "vm-nopolicy": (False, "in no JIT policy"),
        "vm-nonsg": (False, "no NSG on its NICs or subnets"),
    }


def test_a_subscription_left_out_is_not_audited(app: App, world_ids: dict[str, str]) -> None:
    result = run_audit(app, [SUBS[1]])
    assert kinds(result) == {("not-in-policy", "vm-other")}


def test_a_range_rule_from_the_internet_is_a_bypass_but_a_private_one_is_not(
    backend: Backend, app: App
) -> None:
    from jitctl.emulator.seeder import Seeder, subnet_id

    backend.reset()
    s = Seeder(backend, subscription=SUBS[0], group="rg-ranges")
    rules = [
        dict(
            name="From-Partner",
            priority=200,
            direction="Inbound",
            access="Allow",
            protocol="Tcp",
            sourceAddressPrefixes=["198.51.100.0/24"],
            sourcePortRange="*",
            destinationAddressPrefix="*",
            destinationPortRanges=["5985-5986"],
        ),
        dict(
            name="From-Office-VPN",
            priority=210,
            direction="Inbound",
            access="Allow",
            protocol="Tcp",
            sourceAddressPrefix="10.9.0.0/16",
            sourcePortRange="*",
            destinationAddressPrefix="*",
            destinationPortRange="22",
        ),
    ]
    vnet = s.vnet("vnet", "10.1.0.0/16", {"snet": ("10.1.0.0/24", s.nsg("nsg", rules))})
    s.vm("vm-r", [s.nic("vm-r-nic", subnet_id(vnet, "snet"), "10.1.0.4")])
    result = run_audit(app, [SUBS[0]])
    bypasses = [
        (f.evidence["port"], f.evidence["source"]) for f in result.findings if f.rule_id == "bypass"
    ]
    assert bypasses == [(5985, "198.51.100.0/24"), (5986, "198.51.100.0/24")]


def test_fleet_read_calls_do_not_grow_with_the_vm_count(clock: FakeClock) -> None:
    def calls_for(vms: int) -> tuple[int, int]:
        b = Backend(settings=Settings(propagation_delay=0), clock=clock)
        many(b, subscriptions=4, vms=vms)
        app = App.for_backend(b)
        before = len(b.log)
        result = run_audit(app, list(SUBS[:4]))
        assert len(result.vms) == vms
        return len(b.log) - before, len(result.findings)

    small, _ = calls_for(40)
    big, findings = calls_for(2000)
    # Resource Graph: VMs with their NICs in two streams (halves of the subscriptions, a page
    # per 1,000 VMs of one NIC each), the networks (VNets, NSGs, public IPs) in two streams;
    # then one JIT list per subscription
    assert small == 2 + 2 + 4
    assert big == small
    more, _ = calls_for(2400)  # 1,200 VMs a half: one more page each
    assert more == small + 2
    assert findings == 2000  # every VM is in no policy


@pytest.mark.parametrize(
    "text, wanted",
    [("high", ("high",)), ("high, Medium", ("high", "medium")), ("none", ())],
)
def test_fail_on_parses_severities(text: str, wanted: tuple[str, ...]) -> None:
    assert parse_fail_on(text) == wanted


@pytest.mark.parametrize("text", ["", "critical", "high,none"])
def test_fail_on_refuses_unknown_severities(text: str) -> None:
    with pytest.raises(BadInput):
        parse_fail_on(text)


@pytest.mark.parametrize("parallel", [False, True])
def test_the_quota_is_honored_queries_wait_for_the_window_instead_of_429(
    clock: FakeClock, parallel: bool
) -> None:
    from jitctl.arm.graph import FleetReader

    b = Backend(settings=Settings(propagation_delay=0, graph_quota=3), clock=clock)
    many(b, subscriptions=2, vms=2500)
    app = App.for_backend(b)
    gw = app.gateway()
    run = gw.parallel if parallel else (lambda calls: [c() for c in calls])
    fleet = FleetReader(
        app.connection(), gw.list_policies, clock, run, list_subscriptions=gw.list_subscriptions
    )
    assert len(fleet.inventory(list(SUBS[:2])).vms) == 2500
    graph = [e.status for e in b.log if "resourcegraph" in e.path.lower()]
    assert graph.count(200) == 2 * 2 + 2  # every page once (1,250 VMs a half), the networks
    if not parallel:  # in parallel, threads sharing one fake clock may still meet a 429
        assert graph.count(429) == 0
    assert fleet.gate.waits and clock.slept  # waited on the clock for the window


def test_a_throttled_query_waits_for_the_window_and_is_sent_again(clock: FakeClock) -> None:
    from jitctl.emulator.settings import Fault

    b = Backend(settings=Settings(propagation_delay=0), clock=clock)
    many(b, subscriptions=1, vms=10)
    app = App.for_backend(b)
    b.faults.append(Fault(429, match="resourcegraph", retry_after=3))
    assert len(app.fleet().inventory([SUBS[0]]).vms) == 10
    statuses = [e.status for e in b.log if "resourcegraph" in e.path.lower()]
    assert statuses.count(429) == 1 and statuses.count(200) == 2
    assert 3 in clock.slept


def test_a_bypass_names_the_public_ip_address_resource_graph_gives(
    app: App, world_ids: dict[str, str]
) -> None:
    result = run_audit(app, list(SUBS[:2]))
    bypass = next(f for f in result.findings if f.rule_id == "bypass")
    assert bypass.evidence["public_ip_address"] == "20.61.17.4"
    assert bypass.evidence["public_ip"].endswith("/publicIPAddresses/vm-bypass-pip")
    assert "vm-bypass (public IP 20.61.17.4) is open to" in bypass.message


def test_a_vm_whose_nic_resource_graph_lacks_is_not_judged_no_nsg(
    app: App, backend: Backend
) -> None:
    """Resource Graph lags ARM: a NIC the VM names may not be in it yet. The VM is reported as
    not judged, never as unguarded, and none of its ports is called open or closed."""
    backend.reset()
    from jitctl.emulator.seeder import Seeder, subnet_id

    s = Seeder(backend)
    vnet = s.vnet("vnet", "10.1.0.0/16", {"snet": ("10.1.0.0/24", None)})
    nic = s.nic("vm-new-nic", subnet_id(vnet, "snet"), "10.1.0.4", nsg=s.nsg("nsg"))
    s.vm("vm-new", [nic])
    backend.delete(nic)  # as if Resource Graph had not indexed it yet
    result = run_audit(app, [app.subscription_id])
    assert kinds(result) == {("nic-not-indexed", "vm-new"), ("not-in-policy", "vm-new")}
    found = next(f for f in result.findings if f.rule_id == "nic-not-indexed")
    assert found.evidence["nics"] == [nic] and found.severity == "medium"
    assert [(v.protected, v.reason) for v in result.vms] == [
        (False, "NIC vm-new-nic not in Resource Graph yet")
    ]
