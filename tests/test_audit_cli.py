"""`jitctl audit` on the command line: the report, SARIF, CSV, exit codes with --fail-on, and
the repeatable -s / --all-subscriptions on commands that take one subscription or several."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from jitctl.emulator import Backend
from tests.fleetworld import SUBS, problems


@pytest.fixture
def ids(backend: Backend) -> dict[str, str]:
    backend.reset()
    return problems(backend)


def test_table_lists_findings_most_severe_first_and_exits_11_on_high(
    run: Callable[..., Result], ids: dict[str, str]
) -> None:
    r = run("audit", "--all-subscriptions")
    assert r.exit_code == 11
    lines = r.stdout.splitlines()
    assert lines[0] == "GROUP: rg-audit"  # the same in every row: folded above the table
    assert lines[1].split() == ["SEVERITY", "CHECK", "VM", "FINDING"]
    rows = [line.split() for line in lines[2:-1] if not line.startswith(" ")]
    assert [row[0] for row in rows] == ["HIGH"] * 2 + ["MEDIUM"] * 3 + ["LOW"] * 3
    assert rows[0][:3] == ["HIGH", "bypass", "vm-bypass"]
    assert lines[-1] == (
        "6 VM(s) in 2 subscription(s): 3 protected by JIT, 3 not. Findings: 2 high, 3 medium, 3 low."
    )
    assert "jitctl: error: 2 finding(s) of severity high." in r.stderr


@pytest.mark.parametrize("fail_on, code", [("high", 11), ("medium", 11), ("low", 11), ("none", 0)])
def test_fail_on_chooses_what_fails(
    run: Callable[..., Result], ids: dict[str, str], fail_on: str, code: int
) -> None:
    assert (
        run("audit", "-s", SUBS[0], "-s", SUBS[1], "--fail-on", fail_on, "-o", "none").exit_code
        == code
    )


@pytest.mark.parametrize(
    ("args", "where"),
    [
        ([], "See the report"),
        (["-o", "none"], "Run again without '-o none' to see them"),
        (["-o", "none", "--csv", "{csv}"], "See {csv}"),
    ],
)
def test_the_findings_line_points_at_what_was_shown(
    run: Callable[..., Result], ids: dict[str, str], tmp_path: Path, args: list[str], where: str
) -> None:
    csv_file = str(tmp_path / "jit.csv")
    r = run("audit", "--all-subscriptions", *(a.format(csv=csv_file) for a in args))
    assert r.exit_code == 11
    assert r.stderr.splitlines()[-2:] == [
        "jitctl: error: 2 finding(s) of severity high.",
        f"Hint: {where.format(csv=csv_file)}; --fail-on chooses the severities that fail.",
    ]


def test_only_low_findings_pass_the_default_gate(
    run: Callable[..., Result], backend: Backend, ids: dict[str, str]
) -> None:
    r = run("audit", "-s", SUBS[1], "-o", "json")  # vm-other: in no policy (medium)
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert [f["rule_id"] for f in doc["findings"]] == ["not-in-policy"]
    assert run("audit", "-s", SUBS[1], "--fail-on", "high,medium").exit_code == 11


def test_json_is_the_contract(run: Callable[..., Result], ids: dict[str, str]) -> None:
    doc = json.loads(run("audit", "--all-subscriptions", "-o", "json").stdout)
    assert set(doc) == {"subscriptions", "vms", "findings", "counts"}
    assert doc["subscriptions"] == list(SUBS[:2])
    bypass = next(f for f in doc["findings"] if f["rule_id"] == "bypass")
    assert set(bypass) == {
        "rule_id",
        "severity",
        "resource_id",
        "message",
        "evidence",
        "vm_name",
        "subscription_id",
        "resource_group",
    }
    assert bypass["evidence"]["port"] == 3389
    grant = next(f for f in doc["findings"] if f["rule_id"] == "open-grant")
    assert grant["evidence"]["end_time"] == "2026-01-05T10:00:00Z"
    assert {v["name"]: v["protected"] for v in doc["vms"]}["vm-nonsg"] is False


def test_sarif_2_1_0_has_the_required_fields(
    run: Callable[..., Result], ids: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "reports" / "jit.sarif"
    r = run("audit", "--all-subscriptions", "--sarif", str(out), "--fail-on", "none")
    assert r.exit_code == 0
    doc = json.loads(out.read_text())
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-2.1.0.json")
    (only_run,) = doc["runs"]
    driver = only_run["tool"]["driver"]
    assert driver["name"] == "jitctl"
    rule_ids = [rule["id"] for rule in driver["rules"]]
    assert len(rule_ids) == len(set(rule_ids)) == 9
    assert len(only_run["results"]) == 8
    for res in only_run["results"]:
        assert res["ruleId"] in rule_ids
        assert driver["rules"][res["ruleIndex"]]["id"] == res["ruleId"]
        assert res["level"] in ("error", "warning", "note")
        assert res["message"]["text"]
        (loc,) = res["locations"]
        assert loc["logicalLocations"][0]["fullyQualifiedName"].startswith("/subscriptions/")
    levels = {res["ruleId"]: res["level"] for res in only_run["results"]}
    assert levels["bypass"] == "error" and levels["not-in-policy"] == "warning"
    assert levels["open-grant"] == "note"


def test_csv_has_one_row_a_finding(
    run: Callable[..., Result], ids: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "jit.csv"
    run("audit", "--all-subscriptions", "--csv", str(out), "-o", "none")
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 8
    stale = next(r for r in rows if r["rule_id"] == "stale-policy-entry")
    assert stale["vm"] == "vm-gone" and stale["severity"] == "low"
    assert json.loads(stale["evidence"])["policy"].endswith("/jitNetworkAccessPolicies/default")


def test_a_formula_in_a_name_is_not_run_by_a_spreadsheet() -> None:
    from jitctl.cli.reports import csv_text
    from jitctl.services.audit import AuditResult, Finding

    f = Finding(
        "not-in-policy",
        "medium",
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/=cmd",
        "=cmd|' /C calc'!A0 is in no JIT policy.",
    )
    text = csv_text(AuditResult(("s",), (), (f,)))
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["vm"] == "'=cmd" and row["message"].startswith("'=cmd")


@pytest.mark.parametrize("bad", [["--fail-on", "critical"], ["--sarif", "."]])
def test_bad_input_is_exit_2_with_no_call(
    run: Callable[..., Result], ids: dict[str, str], backend: Backend, bad: list[str]
) -> None:
    before = len(backend.log)
    r = run("audit", "--all-subscriptions", *bad)
    assert r.exit_code == 2
    assert len(backend.log) == before


@pytest.mark.parametrize(
    "args",
    [
        ["show", "vm-ok", "-g", "rg-audit", "-s", SUBS[0], "-s", SUBS[1]],
        ["verify", "vm-ok", "-g", "rg-audit", "--source-ip", "203.0.113.7", "--all-subscriptions"],
        [
            "-s",
            SUBS[0],
            "request",
            "vm-ok",
            "-g",
            "rg-audit",
            "--source-ip",
            "203.0.113.7",
            "-s",
            SUBS[1],
        ],
    ],
)
def test_one_subscription_commands_refuse_several(
    run: Callable[..., Result], ids: dict[str, str], backend: Backend, args: list[str]
) -> None:
    before = len(backend.log)
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert "works on one subscription" in r.stderr
    assert len(backend.log) == before


def test_list_status_and_export_span_subscriptions(
    run: Callable[..., Result], ids: dict[str, str], backend: Backend, tmp_path: Path
) -> None:
    assert run("enable", "vm-other", "-g", "rg-audit", "-s", SUBS[1], "--port", "22").exit_code == 0
    before = len(backend.log)
    doc = json.loads(run("list", "-s", SUBS[0], "-s", SUBS[1], "-o", "json").stdout)
    assert [e.path.split("/")[2] for e in backend.log[before:]] == sorted(SUBS[:2])  # one list each
    vms = {vm["name"] for p in doc["policies"] for vm in p["vms"]}
    assert {"vm-ok", "vm-other", "vm-gone"} <= vms
    grants = json.loads(run("status", "--all-subscriptions", "-o", "json").stdout)["grants"]
    assert [(g["vm_name"], g["port"]) for g in grants] == [("vm-ok", 22)]
    assert json.loads(run("status", "-s", SUBS[1], "-o", "json").stdout)["grants"] == []
    out = tmp_path / "fleet.yaml"
    assert run("policy", "export", "--all-subscriptions", "--file", str(out)).exit_code == 0
    text = out.read_text()
    assert "# JIT policies of 2 subscription(s), exported by jitctl." in text
    assert ids["vm-other"] in text and ids["vm-ok"] in text
    # the stale entry (vm-gone) cannot be planned: drop it, then the export plans to no change
    assert run("disable", "--ids", ids["vm-gone"]).exit_code == 0
    assert run("policy", "export", "--all-subscriptions", "--file", str(out)).exit_code == 0
    plan = run("policy", "plan", str(out), "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    assert "No changes." in plan.stdout


def test_a_fleet_list_with_a_group_keeps_that_group(
    run: Callable[..., Result], ids: dict[str, str]
) -> None:
    doc = json.loads(run("list", "--all-subscriptions", "-g", "rg-other", "-o", "json").stdout)
    assert doc == {"policies": []}


def test_history_without_a_vm_spans_subscriptions(
    run: Callable[..., Result], ids: dict[str, str]
) -> None:
    doc = json.loads(run("history", "--all-subscriptions", "-o", "json").stdout)
    assert doc["history"] is True
    assert [(g["vm_name"], g["port"], g["justification"]) for g in doc["grants"]] == [
        ("vm-ok", 22, "INC-1")
    ]
    for sub, found in ((SUBS[0], doc["grants"]), (SUBS[1], [])):  # one, without a VM: its own
        r = run("history", "-s", sub, "-o", "json")
        assert (r.exit_code, json.loads(r.stdout)["grants"]) == (0, found)


@pytest.mark.parametrize("world", ["busy"])
def test_the_bypass_of_issue_21_names_what_verify_lets_in(run: Callable[..., Result]) -> None:
    """busy: audit named 192.0.2.1 (Allow-Mgmt-Range's range) for port 3389, which verify
    shows open to any address through Allow-RDP-Any."""
    doc = json.loads(run("audit", "--all-subscriptions", "--fail-on", "none", "-o", "json").stdout)
    found = {
        f["evidence"]["port"]: (f["evidence"]["source"], f["evidence"]["rules"][0]["rule"])
        for f in doc["findings"]
        if f["rule_id"] == "bypass"
    }
    mgmt = ("192.0.2.0/24, 198.51.100.0/24", "Allow-Mgmt-Range")
    assert found == {22: mgmt, 3389: ("any address", "Allow-RDP-Any"), 5985: mgmt, 5986: mgmt}
    table = run("audit", "--all-subscriptions", "--fail-on", "none").stdout
    assert (
        "Port 3389 of vm-legacy (public IP 20.61.15.20) is open to any address by Allow-RDP-Any "
        "(priority 1001, nic NSG), not by JIT."
    ) in " ".join(table.split())  # the table wraps the message: read it as one line
    r = run("verify", "vm-legacy", "-g", "rg-jit-demo", "--source-ip", "8.8.8.8", "--port", "3389")
    assert r.exit_code == 0
    assert "nic NSG vm-legacy-nsg: allow rule Allow-RDP-Any priority 1001" in r.stdout
    r = run("verify", "vm-legacy", "-g", "rg-jit-demo", "--source-ip", "8.8.8.8", "--port", "22")
    assert r.exit_code == 7  # 8.8.8.8 is outside what the port-22 finding names
