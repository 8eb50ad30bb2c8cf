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
    assert r.stderr == (
        "jitctl: error: Access to vm-win01 was not effective after 20s: Azure says Initiating "
        "(UserRequested); no allow rule for 203.0.113.7 port 3389 in vm-win01-nsg.\n"
        "Hint: Granted until 12:00 UTC; check again: "
        "jitctl --emulator verify vm-win01 -g rg-jit-demo --source-ip 203.0.113.7 --wait\n"
    )
    r = run("verify", "vm-win01", *G, *IP, "--wait", "--timeout", "10s")
    assert r.stderr.endswith(  # verify has no grant to speak of: the likely causes instead
        "in vm-win01-nsg.\nHint: Azure usually applies a request within a minute; if it stays, look for "
        "a lock (az lock list), the NSG's rule limit, an Azure Policy deny or a deallocated VM.\n"
    )
    assert allow_rules(backend) == []


def test_an_initiate_that_fails_behind_the_202_shows_failed_and_the_likely_causes(run, backend):
    run("enable", "vm-win01", *G)
    backend.settings.initiate_fate = "fail"
    r = run("request", "vm-win01", *G, *IP, "-o", "json")
    assert r.exit_code == 0 and '"status": "Initiating"' in r.stdout  # 202: what Azure answers
    r = run("verify", "vm-win01", *G, *IP, "--wait", "--timeout", "10s")
    assert r.exit_code == ExitCode.TIMED_OUT
    assert r.stderr == (
        "jitctl: error: Access to vm-win01 was not effective after 10s: Azure says Failed "
        "(SecurityRulesLimitReached); no allow rule for 203.0.113.7 port 3389 in vm-win01-nsg.\n"
        "Hint: Azure could not apply it: look for a lock (az lock list), the NSG's rule limit, an Azure "
        "Policy deny or a deallocated VM; mend it, then request again.\n"
    )
    assert "failed (SecurityRulesLimitReached)" in run("history", "vm-win01", *G).stdout


def test_a_locked_nsg_fails_the_request_behind_the_202(run, backend):
    run("enable", "vm-win01", *G)
    backend.settings.locked_scopes = [NSG]
    r = run("request", "vm-win01", *G, *IP, "--wait", "--timeout", "10s")
    assert r.exit_code == ExitCode.TIMED_OUT
    assert "Azure says Failed (ScopeLocked); no allow rule for 203.0.113.7 port 3389" in r.stderr
    assert "check again" not in r.stderr  # it failed: waiting longer will not help
    assert allow_rules(backend) == []


def test_no_request_in_the_history_is_said_too(run, backend):
    run("enable", "vm-win01", *G)
    r = run("verify", "vm-win01", *G, *IP, "--wait", "--timeout", "5s")
    assert r.exit_code == ExitCode.TIMED_OUT
    assert r.stderr == (
        "jitctl: error: Access to vm-win01 was not effective after 5s: no request for port 3389 "
        "from 203.0.113.7 in the JIT policy's history.\n"
        "Hint: Request access for that address and port.\n"
    )


@pytest.mark.parametrize("fate", ["apply"])
def test_the_default_fate_applies_the_rule(run, backend, fate):
    run("enable", "vm-win01", *G)
    backend.settings.initiate_fate = fate
    assert run("request", "vm-win01", *G, *IP, "--wait").exit_code == 0
    assert len(allow_rules(backend)) == 1
