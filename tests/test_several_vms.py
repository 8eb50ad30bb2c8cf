"""Several VMs in one command, as az takes them (`--ids A B C`, or names): a list result, a
section per VM, the highest per-VM exit code; commands that connect take one VM only."""

from __future__ import annotations

import json

import pytest

from jitctl.emulator.seeder import DEMO_SUBSCRIPTION
from jitctl.errors import ExitCode
from tests.support import one_error

G = ["-g", "rg-jit-demo"]
IP = ["--source-ip", "203.0.113.7"]
BASE = f"/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/rg-jit-demo/providers/Microsoft.Compute/virtualMachines/"
WIN, LNX, GHOST = BASE + "vm-win01", BASE + "vm-lnx01", BASE + "vm-ghost"


@pytest.fixture
def enabled(run):
    assert (
        run("enable", "vm-win01", "vm-lnx01", *G, "--port", "3389", "--port", "22").exit_code == 0
    )


def test_show_with_several_ids_is_a_list_one_entry_per_vm(run, enabled):
    r = run("-o", "json", "show", "--ids", WIN, LNX)
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert [d["policies"][0]["vms"][0]["name"] for d in data] == ["vm-win01", "vm-lnx01"]
    r = run("show", "--ids", WIN, LNX)
    assert r.exit_code == 0 and r.stderr == ""
    sections = r.stdout.split("\n\n")
    assert [s.splitlines()[0] for s in sections] == [
        "VM vm-win01 (group rg-jit-demo)",
        "VM vm-lnx01 (group rg-jit-demo)",
    ]
    assert "vm-lnx01" not in sections[0] and "vm-lnx01" in sections[1]


def test_one_id_stays_one_document(run, enabled):
    data = json.loads(run("-o", "json", "show", "--ids", WIN).stdout)
    assert isinstance(data, dict) and data["policies"][0]["vms"][0]["name"] == "vm-win01"


def test_a_failing_vm_is_its_error_in_the_list_and_the_exit_code(run, enabled):
    r = run("-o", "json", "show", "--ids", WIN, GHOST)
    assert r.exit_code == ExitCode.NOT_FOUND  # never 0 when a VM failed
    first, second = json.loads(r.stdout)
    assert first["policies"][0]["vms"][0]["name"] == "vm-win01"
    assert second["vm_id"] == GHOST and second["error"]["exit_code"] == 4
    lines = r.stderr.splitlines()
    assert lines[0].startswith("jitctl: error: vm-ghost: ")
    assert lines[-2:] == [
        "jitctl: error: 1 of 2 VMs failed (vm-ghost).",
        "Hint: Each VM's error is above.",
    ]
    table = run("show", "--ids", GHOST, WIN).stdout
    assert table.startswith("VM vm-ghost (group rg-jit-demo)\nerror: ")


def test_verify_several_exits_with_the_worst_outcome(run, enabled):
    assert run("request", "vm-win01", *G, *IP).exit_code == 0
    r = run("-o", "json", "verify", "--ids", WIN, LNX, *IP)
    assert r.exit_code == ExitCode.NOT_EFFECTIVE
    assert [(d["vm_name"], d["ok"]) for d in json.loads(r.stdout)] == [
        ("vm-win01", True),
        ("vm-lnx01", False),
    ]
    assert r.stderr.splitlines()[0].startswith(
        "jitctl: error: vm-lnx01: Access to vm-lnx01 is not effective: port 3389 from "
        "203.0.113.7 is denied by rule MicrosoftDefenderForCloud-JITRule_"
    )
    assert r.stderr.splitlines()[1:] == [  # each VM's hint carries the global options
        "Hint: Request access: jitctl --emulator request vm-lnx01 -g rg-jit-demo --source-ip "
        "203.0.113.7 --wait",
        "jitctl: error: 1 of 2 VMs failed (vm-lnx01).",
        "Hint: Each VM's error is above.",
    ]
    # not found (4) and not effective (7): the higher code
    assert run("verify", "--ids", GHOST, LNX, *IP).exit_code == ExitCode.NOT_EFFECTIVE
    assert run("verify", "--ids", WIN, WIN, *IP).exit_code == 0


def test_request_several_grants_each_vm(run, backend, enabled):
    r = run("-o", "json", "request", "--ids", WIN, LNX, *IP, "--port", "22", "--wait")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert [d["request"]["vm_id"] for d in data] == [WIN, LNX]
    assert all(d["verification"]["ok"] for d in data)
    shown = json.loads(run("-o", "json", "status", "--ids", WIN, LNX).stdout)
    assert [[g["vm_name"] for g in d["grants"]] for d in shown] == [["vm-win01"], ["vm-lnx01"]]


def test_disable_several_and_history_of_several(run, enabled):
    r = run("-o", "json", "disable", "vm-win01", "vm-lnx01", *G)
    assert r.exit_code == 0, r.stderr
    assert [p["action"] for d in json.loads(r.stdout) for p in d["policies"]] == [
        "updated",
        "deleted",
    ]
    r = run("-o", "json", "history", "--ids", WIN, LNX)
    assert r.exit_code == ExitCode.NOT_FOUND  # JIT is off for both now
    assert [d["error"]["kind"] for d in json.loads(r.stdout)] == ["not_found", "not_found"]


def test_a_bad_id_among_several_is_exit_2_before_any_call(run, backend, enabled):
    before = len(backend.log)
    r = run("request", "--ids", WIN, "/subscriptions/x/not-a-vm", *IP)
    assert r.exit_code == ExitCode.BAD_INPUT
    assert one_error(r.stderr)
    assert len(backend.log) == before  # nothing requested for the good one either


@pytest.mark.parametrize(
    "command", [["rdp"], ["ssh"], ["tunnel"], ["ssh-proxy"], ["verify", *IP, "--nic", "nic0"]]
)
def test_commands_for_one_machine_refuse_several(run, backend, command):
    before = len(backend.log)
    r = run(*command, "--ids", WIN, LNX)
    assert r.exit_code == ExitCode.BAD_INPUT
    assert one_error(r.stderr) and r.stdout == ""
    name = command[0]
    assert (
        f"{name} works on one VM at a time; 2 were given: name one." in r.stderr
        if name != "verify"
        else "--nic names a NIC of one VM; name one VM with it." in r.stderr
    )
    assert len(backend.log) == before
