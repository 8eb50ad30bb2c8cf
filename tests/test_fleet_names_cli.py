"""`-s NAME` repeated (names, not ids) on the fleet commands: each name is resolved, in any
case; an unknown or ambiguous one is exit 2 before any ARM call."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from click.testing import Result

from jitctl.emulator import Backend, jit
from tests.fleetworld import SUBS, many, port


@pytest.fixture
def vms(backend: Backend) -> list[str]:
    backend.reset()
    ids = many(backend, 3, 6)  # fleet-00..02; vm-0000i in subscription i % 3
    for sub, vm_id in zip(SUBS[:3], ids[::2], strict=True):  # the first VM of each in its policy
        body = {"properties": {"virtualMachines": [{"id": vm_id, "ports": [port(22)]}]}}
        jit.put_policy(backend, sub, "rg-fleet", "westeurope", "default", body)
    return ids


def test_audit_by_names(run: Callable[..., Result], vms: list[str]) -> None:
    r = run("audit", "-s", "fleet-00", "-s", "FLEET-02", "--fail-on", "none", "-o", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["subscriptions"] == [SUBS[0], SUBS[2]]
    assert {v["name"] for v in doc["vms"]} == {"vm-00000", "vm-00003", "vm-00002", "vm-00005"}


def test_status_by_names(run: Callable[..., Result], backend: Backend, vms: list[str]) -> None:
    end = jit.iso(backend.clock.now() + timedelta(hours=1))
    for sub, vm_id in zip(SUBS[:3], vms[::2], strict=True):  # a grant open now in each subscription
        grant = {"number": 22, "allowedSourceAddressPrefix": "198.51.100.9", "endTimeUtc": end}
        request = {"virtualMachines": [{"id": vm_id, "ports": [grant]}]}
        jit.initiate(backend, sub, "rg-fleet", "westeurope", "default", request)
    r = run("status", "-s", "Fleet-01", "-s", "fleet-02", "-o", "json")
    assert r.exit_code == 0, r.output
    granted = {g["vm_id"].split("/")[2] for g in json.loads(r.stdout)["grants"]}
    assert granted == {SUBS[1], SUBS[2]}


@pytest.mark.parametrize(
    "command", [["audit"], ["status"], ["list"], ["policy", "export"], ["history"]]
)
def test_an_ambiguous_name_among_several_is_exit_2_before_any_call(
    run: Callable[..., Result], backend: Backend, vms: list[str], command: list[str]
) -> None:
    backend.state["subscriptions"][SUBS[2]]["displayName"] = "FLEET-00"
    before = len(backend.log)
    r = run(*command, "-s", "fleet-01", "-s", "fleet-00")
    assert r.exit_code == 2
    assert f"Several subscriptions are named 'fleet-00': {SUBS[0]}, {SUBS[2]}." in r.stderr
    assert len(backend.log) == before


def test_all_subscriptions_skips_those_not_enabled(
    run: Callable[..., Result], backend: Backend, vms: list[str]
) -> None:
    backend.state["subscriptions"][SUBS[1]]["state"] = "Warned"  # past due: read-only
    backend.state["subscriptions"][SUBS[2]]["state"] = "Disabled"
    before = len(backend.log)
    r = run("audit", "--all-subscriptions", "--fail-on", "none", "-o", "json")
    assert json.loads(r.stdout)["subscriptions"] == [SUBS[0]]
    # listed by ARM (not by Resource Graph, which comes after): as the help says
    assert (backend.log[before].method, backend.log[before].path) == ("GET", "/subscriptions")
    assert (
        "Every subscription the credential sees (ARM's GET /subscriptions) whose state is "
        "Enabled (Warned, PastDue and Disabled ones are skipped);"
        in " ".join(run("audit", "--help").stdout.split())
    )


@pytest.mark.parametrize("command", [["audit", "--fail-on", "none"], ["status"], ["list"]])
def test_an_unknown_name_is_exit_2_before_any_call(
    run: Callable[..., Result], backend: Backend, vms: list[str], command: list[str]
) -> None:
    before = len(backend.log)
    r = run(*command, "-s", "fleet-00", "-s", "nonexist")
    assert r.exit_code == 2, r.output
    assert "No subscription is named 'nonexist'." in r.stderr
    assert len(backend.log) == before
