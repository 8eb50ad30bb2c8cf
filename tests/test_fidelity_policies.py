"""Azure behaviours that surprise people, around policy writes: a deleted VM left in a policy,
policies not named 'default', a VM in several policies (through the real SDK clients against
the emulator; jitctl's answer checked as a user sees it)."""

from __future__ import annotations

import json
import textwrap

import pytest

from jitctl.errors import ExitCode
from tests.support import RG, SUB, vm_ref

G = ["-g", RG]
WIN, LNX = vm_ref("vm-win01"), vm_ref("vm-lnx01")


def policy_vms(backend, name="default"):
    pid = f"/subscriptions/{SUB}/resourcegroups/{RG}/providers/microsoft.security/locations/westeurope/jitnetworkaccesspolicies/{name}"
    entry = backend.state["jit"].get(pid.lower())
    return (
        sorted(v["id"].rsplit("/", 1)[-1] for v in entry["policy"]["properties"]["virtualMachines"])
        if entry
        else None
    )


# --- 1. a deleted VM stays in its policy, and Azure refuses writes of that policy -----------------


def test_the_emulator_refuses_a_write_naming_a_deleted_vm_as_azure_does(run, backend, gw):
    assert run("enable", "vm-win01", "vm-lnx01", *G).exit_code == 0
    backend.delete(LNX.id)
    assert policy_vms(backend) == ["vm-lnx01", "vm-win01"]  # Azure keeps it (azure-docs#11987)
    policy = gw.get_policy(SUB, RG, "westeurope", "default")
    from jitctl.errors import PolicyNamesDeletedVms

    with pytest.raises(PolicyNamesDeletedVms) as err:
        gw.put_policy(policy)
    assert "'default' contains non-existent virtual machines" in err.value.message
    assert LNX.id in err.value.message


def test_enable_drops_a_deleted_vm_from_the_policy_and_says_so(run, backend):
    run("enable", "vm-win01", "vm-lnx01", *G)
    backend.delete(LNX.id)
    r = run("enable", "vm-win01", *G, "--port", "22")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        "JIT policy default (rg-jit-demo, westeurope): updated",
        "  + vm-win01 port 22/any from * max 3h",
        "  - vm-lnx01 port 3389/any from * max 3h",
    ]
    assert (
        "jitctl: VM vm-lnx01 no longer exists: removed from JIT policy default (Azure refuses "
        "writes to a policy that names a deleted VM)." in r.stderr
    )
    assert policy_vms(backend) == ["vm-win01"]


def test_disable_of_the_last_live_vm_deletes_a_policy_left_with_a_deleted_vm(run, backend):
    run("enable", "vm-win01", "vm-lnx01", *G)
    backend.delete(LNX.id)
    r = run("disable", "vm-win01", *G)
    assert r.exit_code == 0, r.output
    assert "deleted" in r.stdout.splitlines()[0]
    assert policy_vms(backend) is None


def test_a_write_refused_for_another_reason_is_not_retried(run, backend, gw):
    run("enable", "vm-win01", *G)
    backend.delete(WIN.id)  # our own VM: enable refuses before any write
    r = run("enable", "vm-win01", *G, "--port", "22")
    assert r.exit_code == ExitCode.NOT_FOUND


def test_plan_shows_a_deleted_vm_as_a_removal_and_apply_removes_it(run, backend, tmp_path):
    run("enable", "vm-win01", "vm-lnx01", *G, "--protocol", "tcp", "--max-duration", "2h")
    backend.delete(LNX.id)
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            """
            defaults: {protocol: tcp, maxDuration: 2h}
            targets:
              - resourceGroup: rg-jit-demo
                names: [vm-win01]
                ports: [3389]
            """
        ),
        encoding="utf-8",
    )
    r = run("policy", "plan", str(path), "--detailed-exitcode")
    assert r.exit_code == ExitCode.CHANGES_PENDING
    assert r.stdout.splitlines() == [
        "JIT policy default (rg-jit-demo, westeurope): 0 to add, 0 to change, 1 to remove",
        "  - vm-lnx01 port 3389/tcp from * max 2h",
        "In a JIT policy but deleted (removed: Azure refuses writes otherwise):",
        "  vm-lnx01",
        "Plan: 1 port change(s) in 1 JIT policy(ies).",
    ]
    r = run("policy", "apply", str(path), "--yes")
    assert r.exit_code == 0, r.output
    assert policy_vms(backend) == ["vm-win01"]


# --- 2. policies not named 'default'; a VM in several policies -----------------------------------

IP = ["--source-ip", "203.0.113.7"]


@pytest.mark.parametrize("world", ["per-vm"])
def test_enable_updates_the_policy_named_after_the_vm_and_makes_no_default(run, backend):
    r = run("enable", "vm-lnx01", *G, "--port", "2222")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == "JIT policy vm-lnx01 (rg-jit-demo, westeurope): updated"
    assert policy_vms(backend, "vm-lnx01") == ["vm-lnx01"]
    assert policy_vms(backend, "default") == ["vm-win01"]  # untouched


@pytest.mark.parametrize("world", ["per-vm"])
def test_a_vm_in_several_policies_asks_which_then_the_named_one_is_used(run, backend):
    writes = sum(e.method == "PUT" for e in backend.log)
    r = run("enable", "vm-win01", *G, "--port", "22")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert r.stderr == (
        "jitctl: error: VM vm-win01 is in 2 JIT policies (default, vm-win01).\n"
        "Hint: Choose one with --policy-name NAME.\n"
    )
    assert sum(e.method == "PUT" for e in backend.log) == writes  # nothing written
    r = run("enable", "vm-win01", *G, "--port", "22", "--policy-name", "vm-win01")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == "JIT policy vm-win01 (rg-jit-demo, westeurope): updated"


@pytest.mark.parametrize("world", ["per-vm"])
def test_request_picks_the_only_policy_with_the_port_and_asks_when_two_have_it(run):
    r = run("request", "vm-win01", *G, *IP, "--port", "5985", "-o", "json")
    assert r.exit_code == 0, r.output
    assert "/jitNetworkAccessPolicies/vm-win01" in r.stdout
    r = run("request", "vm-win01", *G, *IP)  # 3389: in both
    assert r.exit_code == ExitCode.BAD_INPUT
    assert "VM vm-win01 is in 2 JIT policies (default, vm-win01)" in r.stderr
    assert "--policy-name" in r.stderr
    r = run("request", "vm-win01", *G, *IP, "--policy-name", "default", "--duration", "1h")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("world", ["per-vm"])
def test_show_status_history_and_disable_see_every_policy_of_the_vm(run):
    run("request", "vm-win01", *G, *IP, "--port", "5985")
    r = run("show", "vm-win01", *G, "-o", "json")
    assert r.exit_code == 0
    assert sorted(p["name"] for p in json.loads(r.stdout)["policies"]) == [
        "default",
        "vm-win01",
    ]
    assert "5985" in run("status", "vm-win01", *G).stdout
    assert "5985" in run("history", "vm-win01", *G).stdout
    r = run("disable", "vm-win01", *G, "--port", "3389", "--policy-name", "default")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == "JIT policy default (rg-jit-demo, westeurope): deleted"
