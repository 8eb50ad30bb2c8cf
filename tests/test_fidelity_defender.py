"""Defender for Servers Plan 2 off, resource locks, and `jitctl doctor` (the real SDK clients
against the emulator; exit codes and messages as a user sees them)."""

from __future__ import annotations

import json

import pytest

from jitctl.errors import ExitCode
from jitctl.model import Permission
from jitctl.services.doctor import granted
from tests.support import RG, SUB

G = ["-g", RG]
IP = ["--source-ip", "203.0.113.7"]
ENABLE_PLAN = "az security pricing create --name VirtualMachines --tier standard --subplan P2"


def puts(backend):
    return sum(e.method == "PUT" for e in backend.log)


@pytest.mark.parametrize("plan", ["off", "P1"])
def test_enable_without_plan_2_is_exit_6_with_the_command_that_enables_it(run, backend, plan):
    backend.settings.defender_plan = plan
    r = run("enable", "vm-win01", *G)
    assert r.exit_code == ExitCode.REFUSED
    assert r.stderr.startswith(
        "jitctl: error: Defender for Servers Plan 2 is off: 'default' is not onboarded to "
        "Defender For Servers offering."
    )
    assert ENABLE_PLAN in r.stderr
    assert backend.state["jit"] == {}


def test_request_without_plan_2_is_exit_6_and_the_plan_can_be_turned_on(run, backend, gw):
    run("enable", "vm-win01", *G)
    backend.settings.defender_plan = "off"
    r = run("request", "vm-win01", *G, *IP)
    assert r.exit_code == ExitCode.REFUSED and ENABLE_PLAN in r.stderr
    # what `az security pricing create` does, through the real SDK client
    from azure.mgmt.security.v2024_01_01.models import Pricing

    gw._client("security", SUB).pricings.update(
        f"subscriptions/{SUB}", "VirtualMachines", Pricing(pricing_tier="Standard", sub_plan="P2")
    )
    assert gw.get_defender_plan(SUB).has_jit
    assert run("request", "vm-win01", *G, *IP).exit_code == 0


def test_a_locked_resource_group_refuses_policy_writes_with_the_way_out(run, backend):
    backend.settings.locked_scopes = [f"/subscriptions/{SUB}/resourceGroups/{RG}"]
    r = run("enable", "vm-win01", *G)
    assert r.exit_code == ExitCode.REFUSED
    assert "jitctl: error: A resource lock blocks this write:" in r.stderr
    assert "following scope(s) are locked" in r.stderr
    assert "az lock list -g RG" in r.stderr
    assert backend.state["jit"] == {}


# --- doctor -----------------------------------------------------------------------------------


def test_doctor_all_in_place_is_one_ok_line_each_and_exit_0(run):
    run("enable", "vm-win01", *G, "--port", "3389", "--port", "22")
    r = run("doctor", "vm-win01", *G)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        "ok   defender plan: Defender for Servers Plan 2 is on",
        "ok   jit policy: in JIT policy default: ports 3389, 22",
        "ok   nsg path: no subnet NSG, NIC NSG vm-win01-nsg (to 10.10.1.4)",
        "ok   permissions (requester): every action of 'jitctl role show requester'",
        "ok   permissions (admin): every action of 'jitctl role show admin'",
        "ok   permissions (broker): every action of 'jitctl role show broker'",
        "ok   public ip: 20.61.15.10 (vm-win01-pip)",
        "ok   firewall read: no Azure Firewall in front (no JIT policy names one)",
    ]


def test_doctor_names_each_missing_thing_and_exits_6(run, backend):
    backend.settings.defender_plan = "off"
    backend.settings.permissions = ["Microsoft.Compute/*/read", "Microsoft.Network/*/read"]
    backend.delete(
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/publicIPAddresses/vm-win01-pip"
    )
    nic_id = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkInterfaces/vm-win01-nic"
    cfg = backend.get(nic_id)["properties"]["ipConfigurations"][0]["properties"]
    del cfg["publicIPAddress"]
    r = run("doctor", "vm-win01", *G)
    assert r.exit_code == ExitCode.REFUSED
    lines = r.stdout.splitlines()
    assert lines[0] == (
        "FAIL defender plan: Defender for Servers is off (Free): Azure refuses JIT policies and "
        f"requests. Enable Plan 2: {ENABLE_PLAN}"
    )
    assert lines[1].startswith("FAIL jit policy: VM vm-win01 is in no JIT policy")
    assert lines[2].startswith("ok   nsg path:")
    assert lines[3] == (
        "FAIL permissions (requester): missing "
        "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action, "
        "Microsoft.Security/locations/jitNetworkAccessPolicies/read, "
        "Microsoft.Security/locations/jitNetworkAccessPolicies/*/read. "
        "Ask for the role 'jitctl --emulator role show requester' prints, on rg-jit-demo."
    )
    assert lines[4].startswith("warn permissions (admin): missing ")
    assert lines[5] == (
        "warn permissions (broker): missing "
        "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action, "
        "Microsoft.Security/locations/jitNetworkAccessPolicies/read, "
        "Microsoft.Security/locations/jitNetworkAccessPolicies/*/read, "
        "Microsoft.Network/networkSecurityGroups/securityRules/delete "
        "(needed only by the identity an approval broker runs as). "
        "Ask for the role 'jitctl --emulator role show broker' prints, on rg-jit-demo."
    )
    assert lines[6].startswith("FAIL public ip: the primary NIC has no public IP address")
    assert r.stderr.startswith(
        "jitctl: error: 4 check(s) failed for vm-win01: defender plan: Defender for Servers is off"
    )


def test_doctor_json_is_the_checks(run):
    r = run("doctor", "vm-lnx01", *G, "-o", "json")
    doc = json.loads(r.stdout)
    assert r.exit_code == ExitCode.REFUSED  # no policy yet
    assert [c["name"] for c in doc["checks"]] == [
        "defender plan",
        "jit policy",
        "nsg path",
        "permissions (requester)",
        "permissions (admin)",
        "permissions (broker)",
        "public ip",
        "firewall read",
    ]
    assert doc["ok"] is False and doc["vm_name"] == "vm-lnx01"
    assert doc["checks"][2]["detail"] == "subnet NSG snet-linux-nsg, no NIC NSG (to 10.10.2.4)"


def test_doctor_of_a_missing_vm_is_exit_4(run):
    assert run("doctor", "vm-ghost", *G).exit_code == ExitCode.NOT_FOUND


@pytest.mark.parametrize(
    ("action", "perms", "expected"),
    [
        ("Microsoft.Compute/virtualMachines/read", [Permission(("*",))], True),
        ("Microsoft.Compute/virtualMachines/read", [Permission(("*/read",))], True),
        ("microsoft.compute/VIRTUALMACHINES/read", [Permission(("Microsoft.Compute/*",))], True),
        ("Microsoft.Compute/virtualMachines/write", [Permission(("*/read",))], False),
        (
            "Microsoft.Compute/virtualMachines/write",
            [Permission(("*",), ("Microsoft.Compute/*/write",))],
            False,
        ),
        (  # a notAction of one entry does not take away what another entry grants
            "Microsoft.Compute/virtualMachines/write",
            [Permission(("*",), ("Microsoft.Compute/*",)), Permission(("Microsoft.Compute/*",))],
            True,
        ),
        (
            "Microsoft.Network/networkInterfaces/*/read",
            [Permission(("Microsoft.Network/*/read",))],
            True,
        ),
        ("Microsoft.Network/networkInterfaces/*/read", [], False),
    ],
)
def test_granted_follows_azures_actions_and_not_actions(action, perms, expected):
    assert granted(action, perms) is expected
