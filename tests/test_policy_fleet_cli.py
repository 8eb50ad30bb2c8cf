"""`policy plan` and `policy apply` over several subscriptions (-s repeated, --all-subscriptions):
targets without `subscriptions:` select VMs in each chosen subscription, a file's own
`subscriptions:` wins for its targets, --prune considers every chosen subscription's policies."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from jitctl.emulator import Backend, jit
from jitctl.model import JitPolicy
from jitctl.policyfile import LoadedFile, PolicyFile
from jitctl.services.planscope import in_scope, prune_scope
from tests.fleetworld import SUBS, many, port

GROUP = "rg-fleet"
ALL_VMS = "targets:\n  - resourceGroup: rg-fleet\n    names: ['vm-0000*']\n    ports: [22]\n"


@pytest.fixture
def vms(backend: Backend) -> list[str]:
    backend.reset()
    return many(backend, 3, 9)  # vm-00000..8: subscription i % 3


def write(tmp_path: Path, text: str, name: str = "fleet.yaml") -> Path:
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder


def planned(r: Result) -> dict[str, set[str]]:
    """Subscription -> names of the VMs the plan changes there."""
    assert r.exit_code in (0, 10), r.output
    out: dict[str, set[str]] = {}
    for p in json.loads(r.stdout)["policies"]:
        sub = p["policy_id"].split("/")[2]
        out.setdefault(sub, set()).update(c["vm_id"].rsplit("/", 1)[1] for c in p["changes"])
    return {s: names for s, names in out.items() if names}


def in_policies(backend: Backend) -> dict[str, set[str]]:
    """Subscription -> names of the VMs in its JIT policies, as the emulator holds them."""
    out: dict[str, set[str]] = {}
    for sub in SUBS[:3]:
        for body in jit.list_policies(backend, sub):
            for entry in body["properties"]["virtualMachines"]:
                out.setdefault(sub, set()).add(entry["id"].rsplit("/", 1)[1])
    return out


def test_all_subscriptions_plans_every_subscription_reading_each_once(
    run: Callable[..., Result],
    vms: list[str],
    tmp_path: Path,
    calls: Callable[[], list[str]],
) -> None:
    folder = write(tmp_path, ALL_VMS)
    calls()
    r = run("policy", "plan", str(folder), "--all-subscriptions", "-o", "json")
    assert planned(r) == {
        SUBS[0]: {"vm-00000", "vm-00003", "vm-00006"},
        SUBS[1]: {"vm-00001", "vm-00004", "vm-00007"},
        SUBS[2]: {"vm-00002", "vm-00005", "vm-00008"},
    }
    made = calls()
    # The subscriptions, then VMs, NICs, virtual networks and policies: one list each.
    assert len(made) == 1 + 4 * 3, made
    assert sum("jitNetworkAccessPolicies" in c for c in made) == 3


def test_repeated_s_plans_only_those(
    run: Callable[..., Result], vms: list[str], tmp_path: Path
) -> None:
    folder = write(tmp_path, ALL_VMS)
    r = run("policy", "plan", str(folder), "-s", SUBS[0], "-s", SUBS[2], "-o", "json")
    assert set(planned(r)) == {SUBS[0], SUBS[2]}


def test_a_files_own_subscriptions_win_for_its_targets(
    run: Callable[..., Result], vms: list[str], tmp_path: Path
) -> None:
    pinned = f"subscriptions: [{SUBS[1]}]\n" + ALL_VMS.replace("[22]", "[3389]")
    folder = write(tmp_path, pinned, "pinned.yaml")
    write(tmp_path, ALL_VMS)
    r = run("policy", "plan", str(folder), "-s", SUBS[0], "-s", SUBS[2], "-o", "json")
    doc = json.loads(r.stdout)
    ports = {(c["vm_id"].split("/")[2], c["port"]) for p in doc["policies"] for c in p["changes"]}
    # 22 (no subscriptions: in its file) in the chosen ones; 3389 only in the file's own.
    assert {s for s, n in ports if n == 22} == {SUBS[0], SUBS[2]}
    assert {s for s, n in ports if n == 3389} == {SUBS[1]}


def test_prune_considers_the_policies_of_every_chosen_subscription(
    run: Callable[..., Result], backend: Backend, vms: list[str], tmp_path: Path
) -> None:
    by_name = {vm_id.rsplit("/", 1)[1]: vm_id for vm_id in vms}
    for i, sub in enumerate(SUBS[:3]):  # vm-0000i with port 3389 in each subscription's policy
        entry = {"id": by_name[f"vm-0000{i}"], "ports": [port(3389)]}
        body = {"properties": {"virtualMachines": [entry]}}
        jit.put_policy(backend, sub, GROUP, "westeurope", "default", body)
    only = "targets:\n  - resourceGroup: rg-fleet\n    names: ['vm-00003', 'vm-00004']\n"
    folder = write(tmp_path, only + "    ports: [22]\n")
    plan = run("policy", "plan", str(folder), "-s", SUBS[0], "-s", SUBS[1], "--prune", "-o", "json")
    doc = json.loads(plan.stdout)
    removed = {c["vm_id"] for p in doc["policies"] for c in p["changes"] if c["action"] == "remove"}
    assert removed == {
        by_name["vm-00000"],
        by_name["vm-00001"],
    }  # not vm-00002: SUBS[2] was not chosen
    applied = run("policy", "apply", str(folder), "-s", SUBS[0], "-s", SUBS[1], "--prune", "--yes")
    assert applied.exit_code == 0, applied.output
    assert in_policies(backend) == {
        SUBS[0]: {"vm-00003"},
        SUBS[1]: {"vm-00004"},
        SUBS[2]: {"vm-00002"},
    }


def test_apply_writes_what_plan_shows_then_plan_shows_nothing(
    run: Callable[..., Result], backend: Backend, vms: list[str], tmp_path: Path
) -> None:
    folder = write(tmp_path, ALL_VMS)
    before = run("policy", "plan", str(folder), "--all-subscriptions", "--detailed-exitcode")
    assert before.exit_code == 10
    r = run("policy", "apply", str(folder), "--all-subscriptions", "--yes", "-o", "json")
    assert r.exit_code == 0, r.output
    assert in_policies(backend) == {
        SUBS[0]: {"vm-00000", "vm-00003", "vm-00006"},
        SUBS[1]: {"vm-00001", "vm-00004", "vm-00007"},
        SUBS[2]: {"vm-00002", "vm-00005", "vm-00008"},
    }
    after = run("policy", "plan", str(folder), "--all-subscriptions", "--detailed-exitcode")
    assert after.exit_code == 0, after.output


def test_the_table_names_the_subscription_when_there_are_several(
    run: Callable[..., Result], vms: list[str], tmp_path: Path
) -> None:
    folder = write(tmp_path, ALL_VMS)
    heads = [
        line
        for line in run(
            "policy", "plan", str(folder), "-s", SUBS[0], "-s", SUBS[1]
        ).stdout.splitlines()
        if line.startswith("JIT policy")
    ]
    assert heads == [
        f"JIT policy default (rg-fleet, westeurope, subscription {sub}): 3 to add, 0 to change, "
        "0 to remove, new policy"
        for sub in SUBS[:2]
    ]
    one = run("policy", "plan", str(folder), "-s", SUBS[0]).stdout.splitlines()[0]
    assert one.startswith("JIT policy default (rg-fleet, westeurope): 3 to add")


def test_prune_stays_in_the_resource_groups_the_files_cover(
    run: Callable[..., Result], backend: Backend, vms: list[str], tmp_path: Path
) -> None:
    """As terraform destroys only what its configuration manages: a file about rg-fleet prunes
    rg-fleet's policy, never rg-other's, and says it left that one alone."""
    other = many(backend, 1, 1, group="rg-other")[0]
    by_name = {vm_id.rsplit("/", 1)[1]: vm_id for vm_id in vms}
    for group, vm_id in (("rg-other", other), (GROUP, by_name["vm-00000"])):
        body = {"properties": {"virtualMachines": [{"id": vm_id, "ports": [port(3389)]}]}}
        jit.put_policy(backend, SUBS[0], group, "westeurope", "default", body)
    only = "targets:\n  - resourceGroup: rg-fleet\n    names: [vm-00003]\n    ports: [22]\n"
    folder = write(tmp_path, only)
    plan = run("policy", "plan", str(folder), "-s", SUBS[0], "--prune", "-o", "json")
    doc = json.loads(plan.stdout)
    removed = {c["vm_id"] for p in doc["policies"] for c in p["changes"] if c["action"] == "remove"}
    assert removed == {by_name["vm-00000"]}
    assert (doc["unmanaged"], doc["out_of_scope"]) == ([by_name["vm-00000"]], [other])
    table = run("policy", "plan", str(folder), "-s", SUBS[0], "--prune").stdout
    assert (
        "In a JIT policy of a resource group no file covers (left alone, even by --prune):\n"
        "  vm-00000\n"
    ) in table
    applied = run("policy", "apply", str(folder), "-s", SUBS[0], "--prune", "--yes")
    assert applied.exit_code == 0, applied.output
    kept = jit.get_policy(backend, SUBS[0], "rg-other", "westeurope", "default")
    assert [v["id"] for v in kept["properties"]["virtualMachines"]] == [other]
    assert in_policies(backend) == {SUBS[0]: {"vm-00000", "vm-00003"}}  # rg-other's, and ours


def test_the_prune_scope_of_each_kind_of_target() -> None:
    ids = "/subscriptions/{}/resourceGroups/RG-Ids/providers/Microsoft.Compute/virtualMachines/v"
    doc = {
        "targets": [
            {"ids": [ids.format(SUBS[5])], "ports": [22]},
            {"resourceGroup": "RG-Web", "names": ["web-*"], "ports": [22]},
            {"tags": {"os": "linux"}, "subscriptions": [SUBS[4]], "ports": [22]},
        ]
    }
    files = [LoadedFile("p.yaml", PolicyFile.model_validate(doc), {})]
    scope = prune_scope(files, [SUBS[0], SUBS[1]])
    assert scope == {
        (SUBS[5], "rg-ids"),
        (SUBS[0], "rg-web"),
        (SUBS[1], "rg-web"),
        (SUBS[4], None),  # tags alone: the whole subscription
    }
    assert in_scope(JitPolicy(SUBS[0].upper(), "rg-WEB", "westeurope", "default"), scope)
    assert in_scope(JitPolicy(SUBS[4], "anything", "westeurope", "default"), scope)
    assert not in_scope(JitPolicy(SUBS[0], "rg-db", "westeurope", "default"), scope)
    assert not in_scope(JitPolicy(SUBS[2], "rg-web", "westeurope", "default"), scope)
    assert prune_scope([], [SUBS[2]]) == {(SUBS[2], None)}  # no files: --allow-empty-prune
