"""Scenarios through jitctl's public API with the real SDK clients against the emulator."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from jitctl.emulator.settings import Fault
from jitctl.errors import AzureError, NotFound, Refused, TimedOut, VmNotInPolicy
from jitctl.model import JitPolicy, PolicyVm, PortRule
from jitctl.services.access import request_access
from jitctl.services.policies import disable, enable
from jitctl.services.query import show_vm
from jitctl.services.verify import verify, wait_until_effective
from tests.support import RG, SUB, vm_ref

WIN, LNX = vm_ref("vm-win01"), vm_ref("vm-lnx01")
IP = "203.0.113.7"


def rules_of(backend, nsg_name):
    nsg_id = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/{nsg_name}"
    return {r["name"]: r["properties"] for r in backend.rules(nsg_id)}


def test_enable_on_a_shared_policy_keeps_other_vms_and_ports(gw, backend, calls, clock):
    other = PolicyVm(
        LNX.id,
        (PortRule(22, "TCP", timedelta(hours=1), None, ("198.51.100.0/24", "192.0.2.0/24")),),
    )
    gw.put_policy(JitPolicy(SUB, RG, "westeurope", "default", (other,)))
    calls()
    result = enable(gw, [WIN], [PortRule(3389, max_duration=timedelta(hours=2))], clock=clock)
    assert [p.action for p in result.policies] == ["updated"]
    # the fewest calls: the VM and the group's policies at once (the VM's policy is found by
    # listing), its NIC, one PUT, then three re-reads over the confirm window
    pol = "Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default"
    made = calls()
    assert sorted(made[:2]) == [
        "GET Microsoft.Compute/virtualMachines/vm-win01",
        "GET Microsoft.Security/jitNetworkAccessPolicies",
    ]
    assert made[2:] == [
        "GET Microsoft.Network/networkInterfaces/vm-win01-nic",
        f"PUT {pol}",
        *[f"GET {pol}"] * 3,
    ]
    policy = gw.get_policy(SUB, RG, "westeurope", "default")
    assert policy.vm(LNX.id) == other  # untouched, to the letter
    assert policy.vm(WIN.id).ports == (PortRule(3389, max_duration=timedelta(hours=2)),)


def test_enable_twice_writes_once_and_several_vms_cost_one_write(gw, backend, calls, clock):
    enable(gw, [WIN, LNX], [PortRule(3389), PortRule(22)], clock=clock)
    assert sum(c.startswith("PUT") for c in calls()) == 1
    again = enable(gw, [WIN, LNX], [PortRule(3389), PortRule(22)], clock=clock)
    assert [p.action for p in again.policies] == ["unchanged"]
    assert not any(c.startswith("PUT") for c in calls())


def test_enable_puts_deny_rules_on_the_guarding_nsgs(gw, backend, clock):
    enable(gw, [WIN, LNX], [PortRule(3389), PortRule(22)], clock=clock)
    ((name, deny),) = rules_of(backend, "vm-win01-nsg").items()
    assert name.startswith("MicrosoftDefenderForCloud-JITRule_")
    assert deny["access"] == "Deny" and deny["priority"] == 4096
    assert deny["destinationAddressPrefix"] == "10.10.1.4" and deny["destinationPortRanges"] == [
        "22",
        "3389",
    ]
    subnet = rules_of(backend, "snet-linux-nsg")
    assert any(
        r["destinationAddressPrefix"] == "10.10.2.4" and r["access"] == "Deny"
        for r in subnet.values()
    )


def test_enable_dry_run_writes_nothing(gw, calls, clock):
    result = enable(gw, [WIN], [PortRule(3389)], dry_run=True, clock=clock)
    assert result.policies[0].action == "would create"
    assert not any(c.startswith(("PUT", "POST", "DELETE")) for c in calls())


@pytest.mark.parametrize("world", ["busy"])
def test_enable_refuses_a_vm_without_nsg_before_any_write(gw, calls, clock):
    with pytest.raises(Refused, match="vm-nonsg has no network security group"):
        enable(gw, [WIN, vm_ref("vm-nonsg")], [PortRule(3389)], clock=clock)
    assert not any(c.startswith(("PUT", "POST", "DELETE")) for c in calls())


def test_enable_merges_again_when_a_concurrent_writer_drops_our_change(
    gw, backend, monkeypatch, clock
):
    """Simulate a clobbering script that PUTs its own VM right after our write."""
    original = gw.put_policy
    state = {"clobbered": False}

    def put_then_clobber(policy):
        out = original(policy)
        if not state["clobbered"]:
            state["clobbered"] = True
            original(replace(policy, vms=tuple(v for v in policy.vms if v.id != WIN.id)))
        return out

    gw.put_policy = put_then_clobber
    result = enable(gw, [WIN], [PortRule(3389)], clock=clock)
    assert result.policies[0].attempts == 2
    assert gw.get_policy(SUB, RG, "westeurope", "default").vm(WIN.id)


def test_disable_port_then_vm_then_policy_goes(gw, backend, clock):
    enable(gw, [WIN, LNX], [PortRule(3389), PortRule(22)], clock=clock)
    disable(gw, WIN, [22], clock=clock)
    policy = gw.get_policy(SUB, RG, "westeurope", "default")
    assert [p.number for p in policy.vm(WIN.id).ports] == [3389] and policy.vm(LNX.id)
    assert rules_of(backend, "vm-win01-nsg").popitem()[1]["destinationPortRange"] == "3389"
    disable(gw, WIN, clock=clock)
    assert gw.get_policy(SUB, RG, "westeurope", "default").vm(WIN.id) is None
    assert rules_of(backend, "vm-win01-nsg") == {}  # its deny rule went with it
    result = disable(gw, LNX, clock=clock)
    assert result.policies[0].action == "deleted"
    assert gw.get_policy(SUB, RG, "westeurope", "default") is None
    with pytest.raises(NotFound):
        disable(gw, LNX, clock=clock)


def test_request_wait_verify_expiry(gw, backend, clock, calls):
    backend.settings.propagation_delay = 40
    enable(gw, [WIN], [PortRule(3389, max_duration=timedelta(hours=1))], clock=clock)
    calls()
    clock.slept.clear()  # the write's confirmation reads are not the wait measured here
    granted = request_access(gw, WIN, IP, clock.now(), [3389], justification="INC-1", clock=clock)
    assert calls() == [
        "GET Microsoft.Security/jitNetworkAccessPolicies",
        "POST Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default/initiate",
    ]
    assert granted.ports[0].end_time == clock.now() + timedelta(hours=1)  # the policy's maximum
    assert granted.ports[0].status == "Initiating"
    assert not verify(gw, WIN, IP).effective  # not propagated yet
    result, polls = wait_until_effective(gw, WIN, IP, clock, [3389], timeout=300)
    assert result.ok and result.ports[0].evaluation.by_jit and polls > 3
    assert 40 <= sum(clock.slept) < 50 and max(clock.slept) <= 5 and clock.slept[0] == 1
    allow = result.ports[0].evaluation.levels[1]
    assert allow.rule.priority == 100 and allow.preempted_jit_deny.priority == 4096
    view = show_vm(gw, WIN, clock.now())
    assert view.policies[0].vms[0].grants[0].status == "Initiated"
    clock.advance(hours=1)
    assert not verify(gw, WIN, IP).effective  # expired: the allow rule is gone
    history = gw.get_policy(SUB, RG, "westeurope", "default").requests[0].vms[0].ports[0]
    assert (history.status, history.status_reason) == ("Revoked", "Expired")


def test_wait_times_out_when_the_rule_never_appears(gw, backend, clock):
    backend.settings.propagation_delay = 10_000
    enable(gw, [WIN], [PortRule(3389)], clock=clock)
    clock.slept.clear()
    request_access(gw, WIN, IP, clock.now(), clock=clock)
    with pytest.raises(TimedOut) as raised:
        wait_until_effective(gw, WIN, IP, clock, timeout=30)
    assert raised.value.message == (
        "Access to vm-win01 was not effective after 30s: Azure says Initiating (UserRequested); "
        f"no allow rule for {IP} port 3389 in vm-win01-nsg."
    )
    assert raised.value.pending  # accepted, not applied yet: waiting longer may be enough
    assert 29 <= sum(clock.slept) <= 30


def test_newer_request_supersedes_older(gw, backend, clock):
    enable(gw, [WIN], [PortRule(3389)], clock=clock)
    request_access(gw, WIN, IP, clock.now(), clock=clock)
    clock.advance(60)
    request_access(gw, WIN, "198.51.100.4", clock.now(), clock=clock)
    gw.list_policies(SUB)  # any request lets the emulator apply what is due
    assert not verify(gw, WIN, IP).effective and verify(gw, WIN, "198.51.100.4").effective
    ports = [r.vms[0].ports[0] for r in gw.get_policy(SUB, RG, "westeurope", "default").requests]
    assert (ports[0].status, ports[0].status_reason) == ("Revoked", "NewerRequestInitiated")
    assert ports[1].status == "Initiated"
    allow = [r for r in rules_of(backend, "vm-win01-nsg").values() if r["access"] == "Allow"]
    assert len(allow) == 1 and allow[0]["priority"] == 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ports": [22]}, "Port 22 is not in the JIT policy"),
        ({"duration": timedelta(hours=4)}, "exceeds the maximum of 3h"),
    ],
)
def test_request_refusals_are_local_and_write_nothing(gw, calls, clock, kwargs, message):
    enable(gw, [WIN], [PortRule(3389)], clock=clock)
    calls()
    with pytest.raises(Refused, match=message):
        request_access(gw, WIN, IP, clock.now(), **kwargs, clock=clock)
    assert calls() == ["GET Microsoft.Security/jitNetworkAccessPolicies"]


def test_request_source_outside_allowed_prefixes(gw, clock):
    enable(
        gw, [WIN], [PortRule(3389, allowed_source_address_prefix="198.51.100.0/24")], clock=clock
    )
    with pytest.raises(Refused, match="outside the allowed sources"):
        request_access(gw, WIN, IP, clock.now(), clock=clock)
    assert (
        request_access(gw, WIN, "198.51.100.0/25", clock.now(), clock=clock).ports[0].source
        == "198.51.100.0/25"
    )


def test_request_without_policy_is_not_found(gw, clock):
    with pytest.raises(VmNotInPolicy, match="VM vm-win01 is in no JIT policy of resource group"):
        request_access(gw, WIN, IP, clock.now(), clock=clock)


def test_azure_refuses_what_is_not_a_subset(gw, clock):
    """Bypassing the local check, the emulator answers as Azure does; the message comes through."""
    from jitctl.gateway import InitiatePort

    enable(gw, [WIN], [PortRule(3389)], clock=clock)
    policy = gw.get_policy(SUB, RG, "westeurope", "default")
    with pytest.raises(Refused, match="is not a subset of policy"):
        gw.initiate(policy, WIN.id, [InitiatePort(22, IP, clock.now() + timedelta(hours=1))], None)
    with pytest.raises(Refused, match="IPv6 format"):
        gw.initiate(
            policy,
            WIN.id,
            [InitiatePort(3389, "2001:db8::1", clock.now() + timedelta(hours=1))],
            None,
        )


@pytest.mark.parametrize("world", ["busy"])
def test_verify_reports_bypass_and_unprotected(gw, backend, clock):
    enable(gw, [vm_ref("vm-legacy")], [PortRule(3389)], clock=clock)
    result = verify(gw, vm_ref("vm-legacy"), "198.51.100.200")
    ev = result.ports[0].evaluation
    assert result.effective and ev.bypassed and result.ok  # allowed, with a warning
    assert (
        ev.levels[1].rule.name == "Allow-RDP-Any"
        and ev.levels[1].preempted_jit_deny.priority == 4096
    )
    strict = verify(gw, vm_ref("vm-legacy"), "198.51.100.200", require_jit=True)
    assert strict.effective and not strict.ok
    bare = verify(gw, vm_ref("vm-nonsg"), IP, require_jit=True)
    assert bare.effective and not bare.ok and not bare.ports[0].evaluation.protected


@pytest.mark.parametrize("world", ["busy"])
def test_deny_priority_strategy_above_allow(gw, backend, clock):
    backend.settings.deny_priority_strategy = "above-allow"
    enable(gw, [vm_ref("vm-legacy")], [PortRule(3389)], clock=clock)
    deny = [
        r
        for r in rules_of(backend, "vm-legacy-nsg").values()
        if r["access"] == "Deny" and r["priority"] != 200
    ]
    assert deny[0]["priority"] == 1000  # just above the allow-RDP rule at 1001, as observed
    assert not verify(gw, vm_ref("vm-legacy"), "198.51.100.200").effective


@pytest.mark.parametrize("world", ["multinic"])
def test_verify_multi_nic_uses_primary_unless_named(gw, calls, clock):
    enable(gw, [vm_ref("vm-multi")], [PortRule(3389)], clock=clock)
    request_access(gw, vm_ref("vm-multi"), IP, clock.now(), clock=clock)
    calls()
    result = verify(gw, vm_ref("vm-multi"), IP)
    assert result.private_ip == "10.30.2.4" and result.effective
    assert len(calls()) == 4  # VM, NIC, subnet, NIC NSG (the subnet has none)
    other = verify(gw, vm_ref("vm-multi"), IP, nic="vm-multi-nic0")
    assert other.private_ip == "10.30.1.4" and other.effective  # JIT put rules on both NICs' NSGs


def test_verify_single_nic_in_at_most_five_gets(gw, calls):
    calls()
    verify(gw, LNX, IP)
    assert len(calls()) <= 5


def test_faults_429_and_5xx_are_retried_and_complete(gw, backend, clock):
    backend.faults.extend(
        [
            Fault(429, match="jitNetworkAccessPolicies", retry_after=0),
            Fault(503, match="virtualMachines"),
            Fault(500, match="networkInterfaces"),
        ]
    )
    result = enable(gw, [WIN], [PortRule(3389)], clock=clock)
    assert result.policies[0].action == "created"
    statuses = [e.status for e in backend.log]
    assert statuses.count(429) == 1 and statuses.count(503) == 1 and statuses.count(500) == 1


def test_persistent_failure_reports_and_writes_nothing(gw, backend, clock):
    backend.faults.append(Fault(503, match="jitNetworkAccessPolicies", times=100))
    with pytest.raises(AzureError, match="Azure is unavailable \\(503"):
        enable(gw, [WIN], [PortRule(3389)], clock=clock)
    assert backend.state["jit"] == {}


def test_forbidden_and_not_found_map_to_their_errors(gw, backend, clock):
    from jitctl.errors import Forbidden

    with pytest.raises(NotFound, match="ResourceNotFound"):
        enable(gw, [vm_ref("no-such-vm")], [PortRule(3389)], clock=clock)
    backend.faults.append(Fault(403, match="virtualMachines"))
    with pytest.raises(Forbidden):
        enable(gw, [WIN], [PortRule(3389)], clock=clock)


def test_fault_rate_and_latency(gw, backend):
    import time

    backend.faults.append(Fault(0, match="virtualMachines", latency=0.2, times=1))
    start = time.perf_counter()
    gw.get_vm(WIN)
    assert time.perf_counter() - start >= 0.2
    backend.faults.append(Fault(500, match="networkInterfaces", rate=0.3))
    for _ in range(10):
        gw.get_nic(
            WIN.id.replace(
                "Microsoft.Compute/virtualMachines/vm-win01",
                "Microsoft.Network/networkInterfaces/vm-win01-nic",
            )
        )
    nic_statuses = [e.status for e in backend.log if "networkInterfaces" in e.path]
    assert (
        500 in nic_statuses and nic_statuses.count(200) == 10
    )  # every call completed after retries


def test_forbidden_message_is_azures(gw, backend):
    from jitctl.errors import Forbidden

    backend.faults.append(Fault(403, match="jitNetworkAccessPolicies"))
    with pytest.raises(
        Forbidden, match=r"AuthorizationFailed.*does not have authorization to perform action 'GET'"
    ):
        gw.list_policies(SUB, RG)


def test_paging_is_followed(gw, backend, clock):
    backend.settings.page_size = 1
    enable(gw, [WIN], [PortRule(3389)], clock=clock)
    enable(gw, [WIN], [PortRule(3389)], policy_name="second", clock=clock)
    before = len(backend.log)
    assert {p.name for p in gw.list_policies(SUB)} == {"default", "second"}
    assert len(backend.log) - before == 2  # two pages, the second by nextLink


def test_state_persists_through_a_file(tmp_path, backend):
    from jitctl.emulator import Backend

    path = tmp_path / "state.json"
    backend.save(path)
    again = Backend.load(path)
    assert again.state == backend.state and again.settings == backend.settings
