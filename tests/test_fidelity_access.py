"""Azure behaviours that surprise people, around access: a 202 that is never applied or fails
behind it (the real SDK clients against the emulator; jitctl's answer as a user sees it)."""

from __future__ import annotations

import pytest

from jitctl.errors import ExitCode
from tests.support import RG, SUB

G = ["-g", RG]
IP = ["--source-ip", "203.0.113.7"]
NSG = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/vm-win01-nsg"


def allow_rules(backend):
    return [r for r in backend.rules(NSG) if r["properties"]["access"] == "Allow"]


def test_an_initiate_accepted_but_never_applied_says_what_wait_saw(run, backend):
    run("enable", "vm-win01", *G)
    backend.settings.initiate_fate = "never"
    r = run("request", "vm-win01", *G, *IP, "--wait", "--timeout", "20s")
    assert r.exit_code == ExitCode.TIMED_OUT
    assert (
        "Access to vm-win01 was not effective after 20s: port 3389 from 203.0.113.7 is denied"
        in r.stderr
    )
    assert (
        "the newest request for port 3389 from 203.0.113.7 is 'Initiating (UserRequested)' in the history, and "
        "no JIT allow rule for port 3389 is on NSG vm-win01-nsg: Azure accepted it (202) but has "
        "not applied it; likely causes: the NSG's limit of rules, a resource lock" in r.stderr
    )
    assert "Access was granted until" in r.stderr  # the grant stands, as far as Azure said
    assert allow_rules(backend) == []


def test_an_initiate_that_fails_behind_the_202_shows_failed_and_the_likely_causes(run, backend):
    run("enable", "vm-win01", *G)
    backend.settings.initiate_fate = "fail"
    r = run("request", "vm-win01", *G, *IP, "-o", "json")
    assert r.exit_code == 0 and '"status": "Initiating"' in r.stdout  # 202: what Azure answers
    r = run("verify", "vm-win01", *G, *IP, "--wait", "--timeout", "10s")
    assert r.exit_code == ExitCode.TIMED_OUT
    assert (
        "is 'Failed (SecurityRulesLimitReached)' in the history: Azure accepted it (202) and "
        "then could not apply it; likely causes:" in r.stderr
    )
    assert "failed (SecurityRulesLimitReached)" in run("history", "vm-win01", *G).stdout


def test_a_locked_nsg_fails_the_request_behind_the_202(run, backend):
    run("enable", "vm-win01", *G)
    backend.settings.locked_scopes = [NSG]
    r = run("request", "vm-win01", *G, *IP, "--wait", "--timeout", "10s")
    assert r.exit_code == ExitCode.TIMED_OUT
    assert "'Failed (ScopeLocked)'" in r.stderr
    assert allow_rules(backend) == []


def test_no_request_in_the_history_is_said_too(run, backend):
    run("enable", "vm-win01", *G)
    r = run("verify", "vm-win01", *G, *IP, "--wait", "--timeout", "5s")
    assert r.exit_code == ExitCode.TIMED_OUT
    assert "no request for port 3389 from 203.0.113.7 is in the JIT policy's history" in r.stderr


@pytest.mark.parametrize("fate", ["apply"])
def test_the_default_fate_applies_the_rule(run, backend, fate):
    run("enable", "vm-win01", *G)
    backend.settings.initiate_fate = fate
    assert run("request", "vm-win01", *G, *IP, "--wait").exit_code == 0
    assert len(allow_rules(backend)) == 1
