"""Where JIT puts its rules is not fixed: allow rules from 100 to 140 when 100 is taken, existing
rules renumbered (MicrosoftDocs/azure-docs#103634), deny rules at 1000 or 4096 (#122814). jitctl
judges by effective order only (the real SDK clients against the emulator, the CLI's answers)."""

from __future__ import annotations

import json

import pytest

from jitctl.errors import ExitCode
from tests.support import RG, SUB

G = ["-g", RG]
IP = ["--source-ip", "203.0.113.7"]
NSG = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/vm-win01-nsg"


def user_rule(backend, name, priority, access, source, port):
    backend.put_rule(
        NSG,
        {
            "name": name,
            "properties": {
                "priority": priority,
                "direction": "Inbound",
                "access": access,
                "protocol": "Tcp",
                "sourceAddressPrefix": source,
                "sourcePortRange": "*",
                "destinationAddressPrefix": "*",
                "destinationPortRange": str(port),
            },
        },
    )


def priorities(backend):
    return {r["name"]: r["properties"]["priority"] for r in backend.rules(NSG)}


def jit_allow(backend):
    return [
        p
        for n, p in priorities(backend).items()
        if n.startswith("MicrosoftDefenderForCloud-JITRule-")
    ]


def test_an_allow_rule_scattered_above_a_taken_100_still_gives_access(run, backend):
    backend.settings.allow_priority_strategy = "scatter"
    user_rule(backend, "Allow-HTTPS-Office", 100, "Allow", "198.51.100.0/24", 443)
    user_rule(backend, "Allow-HTTPS-Home", 101, "Allow", "192.0.2.0/24", 443)
    run("enable", "vm-win01", *G)
    r = run("request", "vm-win01", *G, *IP, "--wait", "-o", "json")
    assert r.exit_code == 0, r.output
    [prio] = jit_allow(backend)
    assert 102 <= prio <= 140
    assert json.loads(r.stdout)["verification"]["ok"] is True


def test_a_deny_above_the_jit_allow_rule_is_what_verify_and_wait_report(run, backend):
    user_rule(backend, "Deny-Partner", 100, "Deny", "203.0.113.0/24", 3389)
    run("enable", "vm-win01", *G)
    r = run("request", "vm-win01", *G, *IP, "--wait", "--timeout", "10s")
    assert r.exit_code == ExitCode.TIMED_OUT
    assert jit_allow(backend) == [101]  # the rule is there, and loses
    assert r.stderr.startswith(
        "jitctl: error: Access to vm-win01 was not effective after 10s: Azure says Initiated "
        "(UserRequested); its allow rule MicrosoftDefenderForCloud-JITRule-"
    )
    assert r.stderr.endswith(
        " (priority 101) in vm-win01-nsg is there, but port 3389 from 203.0.113.7 is denied by "
        "rule Deny-Partner (priority 100) of the nic NSG vm-win01-nsg.\n"
        "Hint: A rule above JIT's decides: remove or narrow it.\n"
    )
    r = run("verify", "vm-win01", *G, *IP)
    assert r.exit_code == ExitCode.NOT_EFFECTIVE


def test_jit_renumbering_existing_rules_is_judged_by_the_new_order(run, backend):
    backend.settings.renumber = True
    user_rule(backend, "Deny-Partner", 100, "Deny", "203.0.113.0/24", 3389)
    user_rule(backend, "Allow-HTTPS-Office", 101, "Allow", "198.51.100.0/24", 443)
    run("enable", "vm-win01", *G)
    r = run("request", "vm-win01", *G, *IP, "--wait")
    assert r.exit_code == 0, r.output
    after = priorities(backend)
    assert (after["Deny-Partner"], after["Allow-HTTPS-Office"]) == (101, 102)  # moved up one
    assert jit_allow(backend) == [100]
    r = run("verify", "vm-win01", *G, *IP, "--require-jit")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("world", ["busy"])
@pytest.mark.parametrize(
    ("strategy", "deny_at", "code"),
    [("below-free", 4096, ExitCode.NOT_EFFECTIVE), ("above-allow", 1000, ExitCode.NOT_EFFECTIVE)],
)
def test_the_deny_rule_at_4096_or_1000_is_judged_by_order(run, backend, strategy, deny_at, code):
    backend.settings.deny_priority_strategy = strategy
    run("enable", "vm-legacy", *G)
    nsg = NSG.replace("vm-win01-nsg", "vm-legacy-nsg")
    deny = [
        r["properties"]["priority"]
        for r in backend.rules(nsg)
        if r["name"].startswith("MicrosoftDefenderForCloud-JITRule_")
    ]
    assert deny == [deny_at]
    r = run("verify", "vm-legacy", *G, "--source-ip", "198.51.100.200", "--require-jit")
    assert r.exit_code == code
    if deny_at == 4096:  # the old allow-RDP-Any at 1001 comes first: JIT is bypassed
        assert "Allow-RDP-Any" in r.stderr or "Allow-RDP-Any" in r.stdout
    else:  # JIT's deny at 1000 comes first: closed until a request
        assert "is denied by rule MicrosoftDefenderForCloud-JITRule_" in r.stderr
        assert (
            run("request", "vm-legacy", *G, "--source-ip", "198.51.100.200", "--wait").exit_code
            == 0
        )
