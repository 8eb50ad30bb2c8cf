"""The JSON shapes are a contract with scripts: keys and types are pinned here."""

from __future__ import annotations

import json
from datetime import timedelta

G = ["-g", "rg-jit-demo"]
IP = ["--source-ip", "203.0.113.7"]


def test_enable_shape(run):
    data = json.loads(run("-o", "json", "enable", "vm-win01", *G).stdout)
    assert set(data) == {"policies", "dry_run", "changed"}
    pol = data["policies"][0]
    assert set(pol) == {"policy_id", "changes", "action", "attempts", "notes"}
    assert pol["notes"] == []
    change = pol["changes"][0]
    assert set(change) == {"vm_id", "port", "action", "before", "after"}
    assert change["after"] == {
        "number": 3389,
        "protocol": "*",
        "max_duration": "PT3H",
        "sources": ["*"],
    }


def test_request_and_list_shapes(run, clock):
    run("enable", "vm-win01", *G)
    end = (clock.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = json.loads(run("-o", "json", "request", "vm-win01", *G, *IP, "--duration", "1h").stdout)
    assert set(data) == {
        "policy_id",
        "vm_id",
        "ports",
        "start_time",
        "requestor",
        "justification",
        "notes",
    }
    assert data["ports"] == [
        {
            "number": 3389,
            "source": "203.0.113.7",
            "end_time": end,
            "status": "Initiating",
            "status_reason": "UserRequested",
            "mapped_port": None,
        }
    ]
    data = json.loads(run("-o", "json", "list").stdout)
    vm = data["policies"][0]["vms"][0]
    assert set(data["policies"][0]) == {"policy_id", "name", "resource_group", "location", "vms"}
    assert set(vm) == {"vm_id", "ports", "grants"}
    assert set(vm["grants"][0]) == {
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
    }


def test_verify_shape(run):
    run("enable", "vm-win01", *G)
    run("request", "vm-win01", *G, *IP)
    data = json.loads(run("-o", "json", "verify", "vm-win01", *G, *IP).stdout)
    assert set(data) == {
        "vm_id",
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
    }
    assert data["effective"] is True and data["ok"] is True
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
