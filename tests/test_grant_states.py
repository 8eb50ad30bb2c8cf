"""Grants shown as what they are: active only when Azure says Initiated and the end is ahead;
a request Azure has not applied (or never will) is initiating, one it could not apply failed,
in tables and in JSON (`state`). And `history` without a VM: a group, a subscription, several."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import Result

from jitctl.emulator import Backend, FakeClock, jit
from jitctl.services.query import grant_state
from tests.fleetworld import SUBS, many, port
from tests.support import SUB

G = ["-g", "rg-jit-demo"]
IP = ["--source-ip", "203.0.113.7"]
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("status", "reason", "hours", "state"),
    [
        ("Initiated", "UserRequested", 1, "active"),
        ("INITIATED", None, 1, "active"),  # Azure's enums are open strings, in any case
        ("Initiated", "UserRequested", -1, "expired"),  # Azure has not written Revoked yet
        ("Initiating", "UserRequested", 1, "initiating"),
        ("Initiating", None, -1, "expired"),
        ("Revoked", "Expired", -1, "expired"),
        ("Revoked", "NewerRequestInitiated", 1, "superseded"),
        ("Revoked", "UserRequested", 1, "revoked"),
        ("Failed", "SecurityRulesLimitReached", 1, "failed"),
        ("Cancelled", None, 1, "cancelled"),  # unknown to jitctl: shown as Azure says it
        (None, None, 1, "unknown"),
    ],
)
def test_a_grants_state_is_read_from_its_status_reason_and_end(status, reason, hours, state):
    assert grant_state(status, reason, NOW + timedelta(hours=hours), NOW) == state


def doc(result: Result) -> dict:
    return json.loads(result.stdout)


def rows(result: Result) -> list[list[str]]:
    """A table's rows split on spaces (lines that go on a wrapped row left out)."""
    return [line.split() for line in result.stdout.splitlines() if not line.startswith(" ")]


def test_a_request_azure_never_applies_is_initiating_not_active(
    run: Callable[..., Result], backend: Backend, clock: FakeClock
) -> None:
    backend.settings.initiate_fate = "never"  # the 202 is accepted; no rule ever comes
    run("enable", "vm-win01", *G)
    run("request", "vm-win01", *G, *IP, "--duration", "1h")
    assert run("status").stdout.splitlines() == [
        "GROUP: rg-jit-demo",
        "VM        PORT  SOURCE       STATE       UNTIL                 LEFT",
        "vm-win01  3389  203.0.113.7  initiating  2026-01-05 10:00 UTC  1h",
    ]
    assert run("show", "vm-win01", *G).stdout.splitlines()[-1] == (
        "vm-win01  3389/any  *        3h   203.0.113.7 initiating until 2026-01-05 10:00 UTC (1h left)"
    )
    (grant,) = doc(run("status", "-o", "json"))["grants"]
    assert (grant["status"], grant["state"], grant["seconds_left"]) == (
        "Initiating",
        "initiating",
        3600,
    )
    shown = doc(run("show", "vm-win01", *G, "-o", "json"))["policies"][0]["vms"][0]["grants"]
    assert [g["state"] for g in shown] == ["initiating"]
    assert run("verify", "vm-win01", *G, *IP).exit_code == 7  # and verify agrees: not open
    clock.advance(hours=2)
    assert run("status").stdout == "No active grants.\n"
    assert rows(run("history", "vm-win01", *G))[2][5] == "expired"
    (past,) = doc(run("history", "vm-win01", *G, "-o", "json"))["grants"]
    assert (past["state"], past["seconds_left"]) == ("expired", 0)


def test_a_request_still_initiating_after_its_end_was_never_applied() -> None:
    from jitctl.cli.grant_tables import grant_list
    from jitctl.model import AccessRequest, GrantPort, GrantVm, JitPolicy
    from jitctl.services.query import GrantList, grants

    vm_id = (
        f"/subscriptions/{SUB}/resourceGroups/rg-a/providers/Microsoft.Compute/virtualMachines/vm-a"
    )
    port = GrantPort(3389, "203.0.113.7", NOW - timedelta(hours=1), "Initiating", "UserRequested")
    request = AccessRequest(
        NOW - timedelta(hours=4), "ops@ex.com", None, (GrantVm(vm_id, (port,)),)
    )
    policy = JitPolicy(SUB, "rg-a", "westeurope", "default", requests=(request,))
    (grant,) = grants(policy, NOW)
    assert grant.state == "expired"
    assert grant_list(GrantList((grant,), True), NOW).splitlines()[1:] == [
        "WHEN (UTC)              VM    PORT  SOURCE       STATE                    REQUESTOR   JUSTIFICATION",
        "2026-01-05 05:00-08:00  vm-a  3389  203.0.113.7  expired (never applied)  ops@ex.com  -",
    ]


def test_a_request_azure_could_not_apply_is_failed_until_a_newer_one(
    run: Callable[..., Result], backend: Backend
) -> None:
    backend.settings.initiate_fate = "fail"
    run("enable", "vm-win01", *G)
    run("request", "vm-win01", *G, *IP, "--duration", "1h")
    assert run("status").stdout.splitlines()[-1] == (
        "vm-win01  3389  203.0.113.7  failed (SecurityRulesLimitReached)  2026-01-05 10:00 UTC  1h"
    )
    assert [g["state"] for g in doc(run("status", "-o", "json"))["grants"]] == ["failed"]
    backend.settings.initiate_fate = "apply"
    run("request", "vm-win01", *G, "--source-ip", "203.0.113.8", "--duration", "2h")
    # the newer request makes the failed one moot: status shows the grant that opens the port
    assert [(g["source"], g["state"]) for g in doc(run("status", "-o", "json"))["grants"]] == [
        ("203.0.113.8", "active")
    ]
    history = doc(run("history", "vm-win01", *G, "-o", "json"))["grants"]
    assert [(g["source"], g["state"]) for g in history] == [
        ("203.0.113.8", "active"),
        ("203.0.113.7", "failed"),
    ]


def test_a_newer_request_supersedes_an_active_grant(run: Callable[..., Result]) -> None:
    run("enable", "vm-win01", *G)
    run("request", "vm-win01", *G, *IP, "--duration", "1h")
    run("request", "vm-win01", *G, "--source-ip", "203.0.113.8", "--duration", "1h")
    assert [g["source"] for g in doc(run("status", "-o", "json"))["grants"]] == ["203.0.113.8"]
    states = [r[4:6] for r in rows(run("history", *G))[2:]]
    assert states == [["203.0.113.8", "active"], ["203.0.113.7", "superseded"]]


# --- history without a VM ------------------------------------------------------------------


def test_history_of_a_group_or_a_subscription_without_a_vm(
    run: Callable[..., Result], calls: Callable[[], list[str]]
) -> None:
    run("enable", "vm-win01", "vm-lnx01", *G, "--port", "22")
    assert run("history", *G).stdout == "No requests found.\n"
    run("request", "vm-win01", *G, *IP, "--port", "22", "--justification", "INC-1")
    run("request", "vm-lnx01", *G, *IP, "--port", "22", "--justification", "INC-2")
    calls()
    by_group = run("history", *G)
    assert by_group.exit_code == 0, by_group.output
    assert calls() == [  # one list call, whatever the number of VMs
        "GET Microsoft.Security/jitNetworkAccessPolicies"
    ]
    assert by_group.stdout.splitlines()[0] == "GROUP: rg-jit-demo"
    assert [r[2] for r in rows(by_group)[2:]] == ["vm-lnx01", "vm-win01"]  # newest first
    for scope in ([], ["-s", SUB]):
        r = run("history", *scope)
        assert r.exit_code == 0, r.output
        assert r.stdout == by_group.stdout
    missing = run("history", "-g", "rg-missing")
    assert (missing.exit_code, missing.stdout) == (4, "")  # as status and list say it
    assert missing.stderr.startswith(
        "jitctl: error: Resource group 'rg-missing' could not be found."
    )


@pytest.mark.parametrize("world", ["docs"])
def test_history_across_groups_shows_the_group(run: Callable[..., Result]) -> None:
    for group in ("rg-prod", "rg-jit-demo"):  # vm-win01 in both: only the group tells them apart
        run("enable", "vm-win01", "-g", group)
        run("request", "vm-win01", "-g", group, *IP)
    table = rows(run("history"))
    assert table[0][:2] == ["GROUP", "WHEN"]
    assert sorted(r[0] for r in table[1:]) == ["rg-jit-demo", "rg-prod"]
    assert all(r[3] == "vm-win01" for r in table[1:])


def test_history_across_subscriptions_shows_the_subscription(
    run: Callable[..., Result], backend: Backend
) -> None:
    backend.reset()
    ids = many(backend, 2, 2)  # vm-00000 in fleet-00, vm-00001 in fleet-01
    end = jit.iso(backend.clock.now() + timedelta(hours=1))
    for sub, vm_id in zip(SUBS[:2], ids, strict=True):
        body = {"properties": {"virtualMachines": [{"id": vm_id, "ports": [port(22)]}]}}
        jit.put_policy(backend, sub, "rg-fleet", "westeurope", "default", body)
        grant = {"number": 22, "allowedSourceAddressPrefix": "198.51.100.9", "endTimeUtc": end}
        jit.initiate(
            backend,
            sub,
            "rg-fleet",
            "westeurope",
            "default",
            {"virtualMachines": [{"id": vm_id, "ports": [grant]}]},
        )
    r = run("history", "-s", "fleet-00", "-s", "fleet-01")
    assert r.exit_code == 0, r.output
    table = rows(r)
    assert table[0] == ["GROUP:", "rg-fleet"]
    assert table[1][:2] == ["SUBSCRIPTION", "WHEN"]
    assert sorted(r[0] for r in table[2:]) == list(
        SUBS[:2]
    )  # whole: who and why went under the rows
    grants = doc(run("history", "-s", "fleet-00", "-s", "fleet-01", "-o", "json"))["grants"]
    assert sorted(g["subscription_id"] for g in grants) == list(SUBS[:2])
