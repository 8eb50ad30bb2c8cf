"""The JSON shapes are a contract with scripts: keys and types are pinned here, for every command
and for errors (click's usage errors, Azure's errors, jitctl's refusals): exactly one document."""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta

import pytest

from jitctl.emulator.settings import Fault
from tests.support import one_error

G = ["-g", "rg-jit-demo"]
IP = ["--source-ip", "203.0.113.7"]
ERROR_KEYS = {"exit_code", "kind", "message", "hint"}
GRANT_KEYS = {
    "policy_id",
    "vm_id",
    "port",
    "source",
    "start_time",
    "end_time",
    "status",
    "status_reason",
    "requestor",
    "justification",
    "mapped_port",
    "state",
    "subscription_id",
    "vm_name",
    "resource_group",
    "seconds_left",
}
REQUEST_KEYS = {
    "policy_id",
    "vm_id",
    "vm_name",
    "ports",
    "start_time",
    "requestor",
    "justification",
    "notes",
}
VERIFY_KEYS = {
    "vm_id",
    "vm_name",
    "nic_id",
    "private_ip",
    "source_ip",
    "subnet_nsg_id",
    "nic_nsg_id",
    "ports",
    "require_jit",
    "public_ip_id",
    "effective",
    "ok",
    "verified",
}


def doc(result):
    """The one JSON document on stdout (json.loads fails on two)."""
    return json.loads(result.stdout)


def test_enable_shape(run):
    data = doc(run("-o", "json", "enable", "vm-win01", *G))
    assert set(data) == {"policies", "dry_run", "changed"}
    pol = data["policies"][0]
    assert set(pol) == {"policy_id", "changes", "action", "attempts", "notes"}
    assert pol["notes"] == []
    change = pol["changes"][0]
    assert set(change) == {"vm_id", "port", "action", "before", "after"}
    assert change["after"] == {
        "number": 3389,
        "protocol": "any",
        "max_duration": "PT3H",
        "sources": ["*"],
    }


def test_disable_shape(run):
    run("enable", "vm-win01", *G, "--protocol", "tcp")
    data = doc(run("disable", "vm-win01", *G, "-o", "json"))
    assert set(data) == {"policies", "dry_run", "changed"}
    assert data["policies"][0]["action"] == "deleted"
    assert data["policies"][0]["changes"][0]["before"]["protocol"] == "tcp"


def test_request_and_list_shapes(run, clock):
    run("enable", "vm-win01", *G)
    end = (clock.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = doc(run("-o", "json", "request", "vm-win01", *G, *IP, "--duration", "1h"))
    assert set(data) == REQUEST_KEYS and data["vm_name"] == "vm-win01"
    assert data["ports"] == [
        {
            "number": 3389,
            "source": "203.0.113.7",
            "end_time": end,
            "status": "Initiating",
            "status_reason": "UserRequested",
            "mapped_port": None,
            "seconds_left": 3600,
        }
    ]
    data = doc(run("-o", "json", "list"))
    vm = data["policies"][0]["vms"][0]
    assert set(data["policies"][0]) == {"policy_id", "name", "resource_group", "location", "vms"}
    assert set(vm) == {"vm_id", "name", "ports", "grants"}
    assert set(vm["grants"][0]) == GRANT_KEYS
    assert vm["grants"][0]["seconds_left"] == 3600
    assert doc(run("show", "vm-win01", *G, "-o", "json")) == data


def test_status_and_history_shapes(run, clock):
    run("enable", "vm-win01", *G)
    started = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")  # after the write's confirmation
    run("request", "vm-win01", *G, *IP, "--duration", "1h", "--justification", "INC-1")
    status = doc(run("status", "-o", "json"))
    assert set(status) == {"grants", "history"} and status["history"] is False
    grant = status["grants"][0]
    assert set(grant) == GRANT_KEYS
    assert (grant["vm_name"], grant["seconds_left"]) == ("vm-win01", 3600)
    assert grant["start_time"] == started  # to the second, no microseconds
    history = doc(run("history", "vm-win01", *G, "-o", "json"))
    assert history["history"] is True and set(history["grants"][0]) == GRANT_KEYS


def test_verify_shape_and_not_effective_is_one_document(run):
    run("enable", "vm-win01", *G)
    run("request", "vm-win01", *G, *IP)
    data = doc(run("-o", "json", "verify", "vm-win01", *G, *IP))
    assert set(data) == VERIFY_KEYS
    assert data["effective"] is True and data["ok"] is True and data["verified"] is True
    ev = data["ports"][0]["evaluation"]
    assert set(ev) == {"allowed", "levels", "warnings", "protected", "by_jit", "bypassed"}
    nic = ev["levels"][1]
    assert set(nic) == {
        "level",
        "nsg_id",
        "allowed",
        "rule",
        "is_jit",
        "preempted_jit_deny",
        "notes",
    }
    assert nic["rule"]["priority"] == 100 and nic["is_jit"] is True
    assert nic["rule"]["protocol"] == "any"
    # Not effective: the verify result is the document (ok false), exit 7, no error document.
    r = run("-o", "json", "verify", "vm-lnx01", *G, *IP)
    assert r.exit_code == 7
    data = doc(r)
    assert set(data) == VERIFY_KEYS and data["ok"] is False
    assert r.stderr.startswith("jitctl: error: Access to vm-lnx01 is not effective")


def test_request_wait_is_one_combined_document(run):
    run("enable", "vm-win01", *G)
    r = run("-o", "json", "request", "vm-win01", *G, *IP, "--wait")
    assert r.exit_code == 0, r.stderr
    data = doc(r)
    assert set(data) == {"request", "verification"}
    assert set(data["request"]) == REQUEST_KEYS and set(data["verification"]) == VERIFY_KEYS
    assert data["verification"]["ok"] is True


def test_rdp_no_launch_is_one_document(run, app, tmp_path):
    app.data_dir = tmp_path
    run("enable", "vm-win01", *G)
    r = run("rdp", "vm-win01", *G, *IP, "--no-launch", "-o", "json")
    assert r.exit_code == 0, r.stderr
    data = doc(r)
    assert set(data) == {"ready", "protocol", "rdp_file", "command", "launched", "exit_status"}
    assert set(data["ready"]) == {
        "vm_id",
        "vm_name",
        "port",
        "source",
        "end_time",
        "seconds_left",
        "reused",
        "request",
        "verification",
        "connect_host",
        "connect_port",
        "via",
    }
    assert set(data["ready"]["request"]) == REQUEST_KEYS
    assert r.stderr.startswith("Requested port 3389 for 203.0.113.7")  # notes on stderr


def test_policy_commands_shapes(run, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            """
            targets:
              - resourceGroup: rg-jit-demo
                names: ["vm-win*"]
                ports: [3389]
            """
        ),
        encoding="utf-8",
    )
    assert doc(run("policy", "validate", str(path), "-o", "json")) == {"valid": True, "files": 1}
    r = run("policy", "plan", str(path), "-o", "json", "--detailed-exitcode")
    assert r.exit_code == 10
    plan = doc(r)
    assert set(plan) == {
        "policies",
        "unprotected",
        "unmanaged",
        "prune",
        "changed",
        "gone",
        "out_of_scope",
        "approvals",  # null: not compared (no --broker, no --approvals-baseline)
    }
    assert plan["approvals"] is None
    assert set(plan["policies"][0]) == {"policy_id", "changes", "exists", "key", "remove"}
    applied = doc(run("policy", "apply", str(path), "--yes", "-o", "json"))
    assert set(applied) == {"plan", "policies", "writes"} and applied["writes"] == 1
    role = doc(run("role", "show", "requester", "-o", "json"))
    assert (
        "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action" in role["Actions"]
    )
    assert doc(run("policy", "schema", "-o", "json"))["type"] == "object"


@pytest.mark.parametrize(
    ("args", "kind"),
    [
        (["request", "vm-win01", *G], "bad_input"),  # missing option
        (["enable", "vm-win01", *G, "--bogus"], "bad_input"),  # no such option
        (["lst"], "bad_input"),  # no such command
        (["policy"], "bad_input"),  # missing command
        (["list", "--query", "[["], "bad_input"),  # bad JMESPath
        (["request", "vm-win01", *G, "--source-ip", "*"], "bad_input"),
    ],
)
def test_usage_errors_are_one_error_document_and_one_line(run, args, kind):
    for where in ("before", "after"):
        argv = ["-o", "json", *args] if where == "before" else [*args, "-o", "json"]
        r = run(*argv)
        assert r.exit_code == 2
        assert doc(r) == {"error": {**doc(r)["error"], "exit_code": 2, "kind": kind}}
        assert set(doc(r)["error"]) == ERROR_KEYS
        assert one_error(r.stderr) and r.stderr.startswith("jitctl: error: ")


def test_azure_error_and_refusal_documents(run, backend):
    backend.faults.append(Fault(403, match="virtualMachines", times=20))
    r = run("enable", "vm-win01", *G, "-o", "json")
    assert r.exit_code == 5 and set(doc(r)["error"]) == ERROR_KEYS
    assert doc(r)["error"]["kind"] == "forbidden"
    backend.faults.clear()
    run("enable", "vm-win01", *G)
    r = run("request", "vm-win01", *G, *IP, "--port", "22", "-o", "json")
    assert r.exit_code == 6
    assert doc(r)["error"]["kind"] == "refused" and set(doc(r)["error"]) == ERROR_KEYS


def test_error_document_in_yaml_and_tsv(run):
    r = run("request", "vm-win01", *G, "-o", "yaml")
    assert r.stdout.startswith("error:\n  exit_code: 2\n  kind: bad_input\n")
    r = run("request", "vm-win01", *G, "-o", "tsv")
    assert r.stdout.startswith("2\tbad_input\tMissing option '--source-ip'.")


def test_ssh_no_launch_and_demo_shapes(run, app, tmp_path):
    run("enable", "vm-lnx01", *G, "--port", "22")
    data = doc(run("ssh", "vm-lnx01", *G, *IP, "--no-launch", "--user", "u", "-o", "json"))
    assert (data["protocol"], data["launched"], data["rdp_file"]) == ("ssh", False, None)
    assert data["command"][:3] == ["ssh", "-p", "22"] and data["ready"]["port"] == 22
    r = run("demo", "--fast", "--source-ip", "203.0.113.7", "-o", "json")
    assert r.exit_code == 0, r.stderr
    demo = doc(r)
    assert set(demo) == {"steps", "arm_calls", "ok"} and demo["ok"] is True
    assert {"title", "arm_calls", "seconds", "result", "note"} <= set(demo["steps"][0])


def test_emulator_reset_is_one_document(run, tmp_path):
    state = tmp_path / "state.db"
    data = doc(run("emulator", "reset", "--world", "busy", "--state", str(state), "-o", "json"))
    assert data == {"world": "busy", "state": str(state), "settings": {}} and state.exists()
    text = run("emulator", "reset", "--world", "empty", "--state", str(state)).stdout
    assert text == "Emulator state reset to world 'empty'.\n"
