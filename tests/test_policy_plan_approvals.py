"""`policy plan` and the approval rules: Azure stores none, so the files' `approvals:` are
compared with what the running broker enforces (GET /api/v1/rules) or with another folder's
files, entry by entry and key by key, in the table and in -o json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.emulator.seeder import DEMO_SUBSCRIPTION
from tests.brokerapi import POLICY, SUB, Broker

URL = "http://127.0.0.1:8765"
# the broker's rules (tests/brokerapi.py), planned against the emulator's subscription
RUNNING = POLICY.replace(SUB, DEMO_SUBSCRIPTION)
CHANGED = (
    RUNNING.replace("minApprovals: 1", "minApprovals: 2")
    .replace("pendingTtl: 1h", "pendingTtl: 2h")
    .replace("  - match: {resourceGroup: rg-prod, tags: {env: pci}}\n", "")
    .replace('    deny: {requesters: ["group:contractors"]}\n', "")
    + "  - name: staging\n    match: {resourceGroup: rg-staging}\n"
    + '    autoApprove: {requesters: ["group:engineers"], widestSource: 28}\n'
)


@pytest.fixture
def broker(tmp_path: Path, app: App) -> Any:
    (tmp_path / "broker").mkdir()
    b = Broker(tmp_path / "broker", app.clock, policy=RUNNING.replace(DEMO_SUBSCRIPTION, SUB))
    yield b
    b.close()


def files(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True)
    (folder / "approvals.yaml").write_text(text)
    return folder


def plan(app: App, *args: str, who: str = "audrey", monkeypatch: Any = None) -> Any:
    if monkeypatch is not None:
        monkeypatch.setenv("JITCTL_BROKER_TOKEN", f"tok-{who}")
    return CliRunner().invoke(cli, ["policy", "plan", *args], obj=app, catch_exceptions=False)


TABLE = """\
Approval rules against {baseline}:
  ~ approvals.yaml: approvals[0] ({origin}:7)
      minApprovals: 1 -> 2
      pendingTtl: 1h -> 2h
  + approvals.yaml: staging ({origin}:17)
      autoApprove.requesters: ["group:engineers"]
      autoApprove.widestSource: 28
      match.resourceGroup: rg-staging
      name: staging
  - approvals.yaml: approvals[1] ({removed}:17)
      deny.requesters: ["group:contractors"]
      match.resourceGroup: rg-prod
      match.tags.env: pci
Plan: 0 port change(s) in 0 JIT policy(ies), 3 approval rule change(s).
"""


def test_plan_shows_rule_changes_against_the_running_broker(tmp_path, app, broker, monkeypatch):
    app.broker_http = broker.http
    work = files(tmp_path, "work", CHANGED)
    got = plan(app, str(work), "--broker", URL, "--detailed-exitcode", monkeypatch=monkeypatch)
    assert got.exit_code == 10, got.output
    assert got.stdout == TABLE.format(
        baseline=f"the broker at {URL}",
        origin=work / "approvals.yaml",
        removed="approvals.yaml",  # the broker's own file, as it loaded it
    )
    doc = json.loads(plan(app, str(work), "--broker", URL, "-o", "json").stdout)
    assert doc["changed"] is True and doc["approvals"]["baseline"] == f"the broker at {URL}"
    assert doc["approvals"]["changes"][0] == {
        "action": "change",
        "entry": "approvals.yaml: approvals[0]",
        "origin": f"{work / 'approvals.yaml'}:7",
        "keys": [
            {"key": "minApprovals", "before": 1, "after": 2},
            {"key": "pendingTtl", "before": "1h", "after": "2h"},
        ],
    }
    assert [c["action"] for c in doc["approvals"]["changes"]] == ["change", "add", "remove"]
    # the same files as the broker's: nothing to do, said so (exit 0 with --detailed-exitcode)
    same = files(tmp_path, "same", RUNNING)
    got = plan(app, str(same), "--broker", URL, "--detailed-exitcode")
    assert (got.exit_code, got.stdout) == (
        0,
        f"No changes. The JIT policies and the approvals of the broker at {URL} match the files.\n",
    )


def test_the_broker_shows_its_rules_to_admins_and_auditors_only(app, broker, monkeypatch, tmp_path):
    app.broker_http = broker.http
    work = files(tmp_path, "work", CHANGED)
    got = plan(app, str(work), "--broker", URL, who="ann", monkeypatch=monkeypatch)
    assert got.exit_code == 5
    assert got.stderr.splitlines()[0] == (
        "jitctl: error: ann@contoso.com may not read the broker's approval rules."
    )
    assert broker.call("adam", "GET", "/rules").json()["rules"][1] == {
        "entry": "approvals.yaml: approvals[1]",
        "origin": "approvals.yaml:17",
        "rule": {
            "match": {"resourceGroup": "rg-prod", "tags": {"env": "pci"}},
            "deny": {"requesters": ["group:contractors"]},
        },
    }


def test_plan_against_another_folder_and_a_note_when_nothing_is_compared(tmp_path, app):
    base = files(tmp_path, "main", RUNNING)
    work = files(tmp_path, "work", CHANGED)
    got = plan(app, str(work), "--approvals-baseline", str(base), "--detailed-exitcode")
    assert got.exit_code == 10, got.output
    assert got.stdout == TABLE.format(
        baseline=f"the files in {base}",
        origin=work / "approvals.yaml",
        removed=base / "approvals.yaml",
    )
    # neither: the plan cannot know the rules' changes, and says so instead of "No changes"
    got = plan(app, str(work), "--detailed-exitcode")
    assert got.exit_code == 0
    assert got.stdout == "No changes. The JIT policies match the files.\n"
    assert got.stderr == (
        "approvals: not compared (Azure stores no approval rule): pass --broker URL for the "
        "running broker's rules, or --approvals-baseline DIR.\n"
    )
    both = plan(app, str(work), "--broker", URL, "--approvals-baseline", str(base))
    assert both.exit_code == 2 and "Give one." in both.stderr
