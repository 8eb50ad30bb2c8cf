"""Policies as code on the emulator: validate with lines, plan, apply, drift, prune, export."""

from __future__ import annotations

import json
import re
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from jitctl.cli.commands import cli
from jitctl.emulator import jit
from jitctl.emulator.seeder import Seeder
from jitctl.model import JitPolicy, PolicyVm, PortRule
from jitctl.policyfile import json_schema, load_all
from jitctl.services.plan import apply_plan, make_plan
from tests.support import RG, SUB, vm_ref

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def invoke(app, *args):
    return CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)


RDP_CORP = """
defaults:
  protocol: tcp
  maxDuration: 2h
  sources: [198.51.100.0/24]
targets:
  - resourceGroup: rg-jit-demo
    names: ["vm-win*"]
    ports: [3389]
  - tags: {os: linux}
    ports:
      - number: 22
        maxDuration: 1h
"""


# --- validate -------------------------------------------------------------------------------------


def test_validate_reports_every_problem_with_its_line(tmp_path, app):
    write(
        tmp_path,
        "a.yaml",
        """
        defaults:
          maxDuration: 2d
          sources: ["*"]
        targets:
          - resourceGroup: rg
            names: [web-*]
            ports:
              - 3389
              - number: 70000
              - number: 22
                sources: [2001:db8::/32]
                colour: blue
          - ids: [/subscriptions/s/resourceGroups/rg]
            ports: [22]
          - resourceGroup: rg
            ids: [/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/x]
            ports: [22, 22]
          - tags: {os: linux}
            ports: []
        """,
    )
    write(tmp_path, "b.yaml", "targets:\n  - ids: [oops\n")
    r = invoke(app, "policy", "validate", str(tmp_path))
    assert r.exit_code == 2
    out = r.stdout.replace(str(tmp_path) + "/", "")
    *lines, last = out.splitlines()
    assert lines == [
        "a.yaml:2: defaults.maxDuration: '2d' is not a duration. Use 90m, 1h, 1h30m or ISO 8601 such as PT1H.",
        "a.yaml:3: defaults.sources: '*' lets anyone request access from anywhere; set allowAnySource: true "
        "if you mean it, or leave 'sources' out to let requesters ask for their own address",
        "a.yaml:9: targets[0].ports[1].number: Port 70000 is out of range. Use a number from 1 to 65535.",
        "a.yaml:11: targets[0].ports[2].sources: Source '2001:db8::/32' is IPv6, which Just-In-Time access "
        "does not support. Use your public IPv4 address.",
        "a.yaml:12: targets[0].ports[2].colour: Extra inputs are not permitted",
        "a.yaml:13: targets[1].ids: '/subscriptions/s/resourceGroups/rg' is not a virtual machine resource id",
        "a.yaml:15: targets[2]: give either 'ids', or 'resourceGroup' with 'names' and/or 'tags'",
        "a.yaml:19: targets[3].ports: List should have at least 1 item after validation, not 0",
    ]
    # libyaml says "did not find expected ',' or ']'", PyYAML's scanner "expected ',' or ']',
    # but got '<stream end>'": either, on the line where the file ends
    assert re.fullmatch(r"b\.yaml:3: yaml: .*expected ',' or '\]'.*", last)
    assert r.stderr.startswith("jitctl: error: 9 problem(s) in")


def test_validate_ok_and_examples_are_valid(app):
    r = invoke(app, "policy", "validate", str(ROOT / "policies" / "examples"))
    assert r.exit_code == 0 and r.stdout == "4 policy file(s) valid.\n"


def test_schema_file_is_current():
    shipped = json.loads((ROOT / "policies" / "jitctl-policy.schema.json").read_text())
    assert shipped == json_schema()
    assert shipped["properties"]["targets"]["minItems"] == 1


# --- plan and apply -----------------------------------------------------------------------------


def test_plan_apply_apply_again(tmp_path, app, backend):
    path = write(tmp_path, "p.yaml", RDP_CORP)
    r = invoke(app, "policy", "plan", str(path), "--detailed-exitcode")
    assert r.exit_code == 10  # CHANGES_PENDING, distinct from bad input
    assert r.stdout.splitlines() == [
        "JIT policy default (rg-jit-demo, westeurope): 2 to add, 0 to change, 0 to remove, new policy",
        "  + vm-win01 port 3389/tcp from 198.51.100.0/24 max 2h",
        "  + vm-lnx01 port 22/tcp from 198.51.100.0/24 max 1h",
        "Plan: 2 port change(s) in 1 JIT policy(ies).",
    ]
    before = len(backend.log)
    r = invoke(app, "policy", "apply", str(path), "--yes")
    assert r.exit_code == 0 and r.stdout.endswith("Applied with 1 write(s).\n")
    assert sum(e.method == "PUT" for e in backend.log[before:]) == 1
    before = len(backend.log)
    r = invoke(app, "policy", "apply", str(path), "--yes")
    assert r.stdout == "No changes. Nothing written.\n"
    assert not any(e.method in ("PUT", "DELETE") for e in backend.log[before:])
    assert invoke(app, "policy", "plan", str(path), "--detailed-exitcode").exit_code == 0


def test_apply_without_terminal_needs_yes(tmp_path, app, backend):
    r = invoke(app, "policy", "apply", str(write(tmp_path, "p.yaml", RDP_CORP)))
    assert r.exit_code == 2 and "Pass --yes" in r.stderr
    assert not any(e.method == "PUT" for e in backend.log)


def test_apply_asks_on_a_terminal(tmp_path, app, backend):
    path = write(tmp_path, "p.yaml", RDP_CORP)
    app.interactive = True
    r = CliRunner().invoke(cli, ["policy", "apply", str(path)], obj=app, input="n\n")
    assert (
        r.exit_code == 1
        and "Apply these changes? [y/N]" in r.stderr
        and "+ vm-win01 port 3389" in r.stderr
    )
    assert not any(e.method == "PUT" for e in backend.log)
    r = CliRunner().invoke(cli, ["policy", "apply", str(path)], obj=app, input="y\n")
    assert r.exit_code == 0 and r.stdout.endswith("Applied with 1 write(s).\n")


def test_drift_behind_our_back_shows_in_plan(tmp_path, app, gw):
    path = write(tmp_path, "p.yaml", RDP_CORP)
    invoke(app, "policy", "apply", str(path), "--yes")
    policy = gw.get_policy(SUB, RG, "westeurope", "default")
    drifted = tuple(
        PolicyVm(v.id, (PortRule(3389, "*", timedelta(hours=3)), PortRule(5985)))
        if v.id.endswith("vm-win01")
        else v
        for v in policy.vms
    )
    gw.put_policy(JitPolicy(SUB, RG, "westeurope", "default", drifted))
    r = invoke(app, "policy", "plan", str(path))
    assert (
        "  ~ vm-win01 port 3389/tcp from 198.51.100.0/24 max 2h (was any from * max 3h)" in r.stdout
    )
    assert "  - vm-win01 port 5985/any from * max 3h" in r.stdout
    invoke(app, "policy", "apply", str(path), "--yes")
    assert invoke(app, "policy", "plan", str(path), "--detailed-exitcode").exit_code == 0


@pytest.mark.parametrize("world", ["busy"])
def test_unmanaged_left_alone_unless_prune_and_unprotected_reported(tmp_path, app, gw):
    gw.put_policy(
        JitPolicy(
            SUB, RG, "westeurope", "default", (PolicyVm(vm_ref("vm-legacy").id, (PortRule(3389),)),)
        )
    )
    path = write(
        tmp_path,
        "p.yaml",
        """
        targets:
          - resourceGroup: rg-jit-demo
            names: [vm-win01, vm-nonsg]
            ports: [3389]
        """,
    )
    r = invoke(app, "policy", "plan", str(path))
    assert (
        "Cannot protect (no NSG on the NIC or subnet), skipped:\n  vm-nonsg (matched at" in r.stdout
    )
    assert "matched by no file (left alone; --prune removes them):\n  vm-legacy" in r.stdout
    invoke(app, "policy", "apply", str(path), "--yes")
    assert gw.get_policy(SUB, RG, "westeurope", "default").vm(vm_ref("vm-legacy").id)  # left alone
    r = invoke(app, "policy", "apply", str(path), "--yes", "--prune")
    assert "  - vm-legacy port 3389/any from * max 3h" in r.stdout
    policy = gw.get_policy(SUB, RG, "westeurope", "default")
    assert policy.vm(vm_ref("vm-legacy").id) is None and policy.vm(vm_ref("vm-win01").id)


def test_an_equivalent_spelling_is_no_change_and_no_put(tmp_path, app, backend, gw):
    """Azure holds a one-item prefix list and PT180M; `enable` and `policy apply` ask for the
    single prefix and 3h: the same rule, so neither writes (a spurious PUT used to follow)."""
    win, lnx = vm_ref("vm-win01").id, vm_ref("vm-lnx01").id
    stored = {
        "number": 22,
        "protocol": "TCP",
        "allowedSourceAddressPrefixes": ["198.51.100.7"],
        "maxRequestAccessDuration": "PT180M",
    }
    entries = [{"id": vm_id.upper(), "ports": [dict(stored)]} for vm_id in (win, lnx)]
    jit.put_policy(
        backend, SUB, RG, "westeurope", "default", {"properties": {"virtualMachines": entries}}
    )
    before = len(backend.log)
    common = ("--port", "22", "--protocol", "tcp", "--max-duration", "3h")
    r = invoke(app, "enable", "vm-win01", "-g", RG, *common, "--source", "198.51.100.7/32")
    assert r.exit_code == 0 and r.stdout.endswith("no change: nothing written\n"), r.output
    path = write(
        tmp_path,
        "p.yaml",
        """
        defaults: {protocol: tcp, maxDuration: PT3H, sources: [198.51.100.7]}
        targets:
          - resourceGroup: rg-jit-demo
            names: [vm-win01, vm-lnx01]
            ports: [22]
        """,
    )
    r = invoke(app, "policy", "apply", str(path), "--yes")
    assert r.stdout == "No changes. Nothing written.\n", r.output
    assert not [e for e in backend.log[before:] if e.method in ("PUT", "DELETE")]
    assert invoke(app, "policy", "plan", str(path), "--detailed-exitcode").exit_code == 0


# --- an empty set of files never means "delete everything" ---------------------------------


def no_files(folder: Path) -> str:
    return (
        f"No policy files in '{folder}' (jitctl reads the *.yaml and *.yml files of a folder, "
        "not its subfolders)"
    )


NO_FILES_HINT = "Check the path; 'jitctl policy export -g RG --file FOLDER/RG.yaml' writes one."


@pytest.mark.parametrize(
    "args",
    [
        ("policy", "validate"),
        ("policy", "plan"),
        ("policy", "apply", "--yes"),
        ("policy", "plan", "--prune"),  # nothing configured: nothing to name, still no files
    ],
)
def test_a_folder_without_policy_files_is_bad_input(tmp_path, app, backend, args):
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "README.txt").write_text("not a policy file", encoding="utf-8")
    (folder / "sub").mkdir()
    write(folder / "sub", "nested.yaml", RDP_CORP)  # subfolders are not read
    before = len(backend.log)
    r = invoke(app, *args[:2], str(folder), *args[2:])
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == f"jitctl: error: {no_files(folder)}.\nHint: {NO_FILES_HINT}\n"
    if "--prune" not in args:
        assert len(backend.log) == before  # refused before any call to Azure


def test_prune_with_no_files_is_refused_naming_what_it_would_delete(tmp_path, app, backend, gw):
    invoke(app, "enable", "vm-win01", "vm-lnx01", "-g", RG)
    invoke(app, "enable", "vm-win01", "-g", RG, "--policy-name", "jit-{vm}")
    folder = tmp_path / "policies"
    folder.mkdir()
    before = len(backend.log)
    for extra in (("plan",), ("apply", "--yes")):
        r = invoke(app, "policy", extra[0], str(folder), "--prune", *extra[1:])
        assert (r.exit_code, r.stdout) == (2, "")
        assert r.stderr == (
            f"jitctl: error: {no_files(folder)}: --prune would remove all 3 VM(s) of 2 JIT "
            "policy(ies) and delete them: default in rg-jit-demo (vm-win01, vm-lnx01); "
            "jit-vm-win01 in rg-jit-demo (vm-win01).\nHint: Nothing was changed. Check the path and "
            "the targets; to delete them on purpose, add --allow-empty-prune.\n"
        )
    assert not [e for e in backend.log[before:] if e.method in ("PUT", "DELETE")]
    r = invoke(app, "policy", "plan", str(folder), "--allow-empty-prune")
    assert r.exit_code == 2 and r.stderr == (
        "jitctl: error: --allow-empty-prune goes with --prune.\nHint: Add --prune, or leave it out.\n"
    )
    r = invoke(app, "policy", "apply", str(folder), "--prune", "--allow-empty-prune", "--yes")
    assert r.exit_code == 0 and r.stdout.endswith("Applied with 2 write(s).\n"), r.output
    assert gw.list_policies(SUB) == []  # deliberately: every policy of the subscription


def test_prune_with_files_that_select_no_vm_is_refused(tmp_path, app, backend, gw):
    invoke(app, "enable", "vm-win01", "-g", RG)
    path = write(
        tmp_path,
        "typo.yaml",
        """
        targets:
          - resourceGroup: rg-jit-demo
            names: [vm-wni*]
            ports: [3389]
        """,
    )
    r = invoke(app, "policy", "apply", str(path), "--prune", "--yes")
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.startswith(
        f"jitctl: error: The policy files in '{path}' select no VM: --prune would remove all 1 "
        "VM(s) of 1 JIT policy(ies) and delete them: default in rg-jit-demo (vm-win01).\n"
        "Hint: Nothing was changed."
    )
    assert gw.get_policy(SUB, RG, "westeurope", "default").vm(vm_ref("vm-win01").id)
    r = invoke(app, "policy", "plan", str(path))  # without --prune: nothing to fear
    assert r.exit_code == 0 and r.stdout.endswith("No changes. The JIT policies match the files.\n")


def test_a_refusal_names_five_policies_and_counts_the_rest(tmp_path, app, gw):
    for i in range(7):
        invoke(app, "enable", "vm-win01", "-g", RG, "--policy-name", f"p{i}")
    r = invoke(app, "policy", "plan", str(tmp_path), "--prune")
    assert r.exit_code == 2
    assert ": --prune would remove all 7 VM(s) of 7 JIT policy(ies) and delete them: " in r.stderr
    assert "p4 in rg-jit-demo (vm-win01); and 2 more.\nHint: Nothing was changed." in r.stderr


def test_export_then_plan_shows_no_change(tmp_path, app, gw):
    gw.put_policy(
        JitPolicy(
            SUB,
            RG,
            "westeurope",
            "default",
            (
                PolicyVm(
                    vm_ref("vm-win01").id,
                    (
                        PortRule(
                            3389,
                            "TCP",
                            timedelta(minutes=90),
                            None,
                            ("198.51.100.0/24", "203.0.113.7/32"),
                        ),
                        PortRule(22),
                    ),
                ),
                PolicyVm(
                    vm_ref("vm-lnx01").id, (PortRule(22, "UDP", timedelta(hours=24), "Internet"),)
                ),
            ),
        )
    )
    gw.put_policy(
        JitPolicy(
            SUB, RG, "westeurope", "second", (PolicyVm(vm_ref("vm-lnx01").id, (PortRule(2222),)),)
        )
    )
    out = tmp_path / "exported.yaml"
    r = invoke(app, "policy", "export", "-g", RG, "--file", str(out))
    assert r.exit_code == 0, r.stderr
    assert load_all(out)[1] == []
    r = invoke(app, "policy", "plan", str(out), "--detailed-exitcode")
    assert r.exit_code == 0, r.stdout
    assert r.stdout == "No changes. The JIT policies match the files.\n"


def test_export_needs_a_scope(app):
    assert invoke(app, "policy", "export").exit_code == 2


def test_conflicting_definitions_name_both_places(tmp_path, app):
    write(
        tmp_path,
        "a.yaml",
        "targets:\n  - resourceGroup: rg-jit-demo\n    names: ['*']\n    ports: [3389]\n",
    )
    write(
        tmp_path,
        "b.yaml",
        "targets:\n  - tags: {os: windows}\n    ports:\n      - number: 3389\n        maxDuration: 1h\n",
    )
    r = invoke(app, "policy", "plan", str(tmp_path))
    assert r.exit_code == 2
    assert r.stderr.replace(str(tmp_path) + "/", "") == (
        "jitctl: error: b.yaml:4: port 3389 of VM vm-win01 conflicts with a.yaml:4.\n"
        "Hint: Define each VM's port once.\n"
    )


def test_two_hundred_vms_over_groups_and_regions_one_write_per_policy(tmp_path, app, backend, gw):
    regions = ["westeurope", "northeurope"]
    for g in range(4):
        for region in regions:
            s = Seeder(backend, group=f"rg-fleet-{g}", location=region)
            if region == "northeurope":  # one group per region, as Azure requires
                s = Seeder(backend, group=f"rg-fleet-{g}-ne", location=region)
            nsg = s.nsg("fleet-nsg")
            vnet = s.vnet("fleet-vnet", "10.50.0.0/16", {"snet": ("10.50.0.0/24", None)})
            for i in range(25):
                s.vm(
                    f"web-{i:02d}",
                    [
                        s.nic(
                            f"web-{i:02d}-nic", f"{vnet}/subnets/snet", f"10.50.0.{10 + i}", nsg=nsg
                        )
                    ],
                    tags={"role": "web"},
                )
    backend.settings.page_size = 1000  # paging is tested elsewhere; here: one list per kind
    path = write(tmp_path, "fleet.yaml", "targets:\n  - tags: {role: web}\n    ports: [3389, 22]\n")
    before = len(backend.log)
    plan = make_plan(gw, load_all(path)[0], SUB)
    reads = len(backend.log) - before
    assert sum(len(p.changes) for p in plan.policies) == 400 and len(plan.policies) == 8
    assert reads == 4  # VMs, NICs, virtual networks, JIT policies: one list each
    before = len(backend.log)
    result = apply_plan(gw, plan, clock=app.clock)
    puts = [e for e in backend.log[before:] if e.method == "PUT"]
    assert len(puts) == 8 == result.writes  # one write per JIT policy, not per VM
    assert not make_plan(gw, load_all(path)[0], SUB).changed


def test_role_show(app):
    r = invoke(app, "role", "show", "requester")
    role = json.loads(r.stdout)
    assert role["AssignableScopes"] == [f"/subscriptions/{SUB}"] and role["IsCustom"] is True
    assert (
        "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action" in role["Actions"]
    )
    assert not any(a.endswith("/write") for a in role["Actions"])
    admin = json.loads(
        invoke(app, "role", "show", "admin", "--scope", "/subscriptions/x/resourceGroups/y").stdout
    )
    assert "Microsoft.Security/locations/jitNetworkAccessPolicies/write" in admin["Actions"]
    assert admin["AssignableScopes"] == ["/subscriptions/x/resourceGroups/y"]


def test_role_show_broker_is_the_requesters_plus_deleting_a_security_rule(app):
    """The broker initiates and verifies as a requester does, and on revoke deletes the JIT
    allow rule; no other write (not the NSG itself, not JIT policies)."""
    from jitctl.roles import ROLES

    r = invoke(app, "role", "show", "broker", "--scope", "/subscriptions/x")
    role = json.loads(r.stdout)
    assert r.exit_code == 0 and role["Name"] == "JIT Approval Broker (jitctl)"
    assert role["AssignableScopes"] == ["/subscriptions/x"]
    extra = set(role["Actions"]) - set(ROLES["requester"]["Actions"])
    assert extra == {
        "Microsoft.Network/networkSecurityGroups/securityRules/read",
        "Microsoft.Network/networkSecurityGroups/securityRules/delete",
    }
    assert set(ROLES["requester"]["Actions"]) <= set(role["Actions"])
    writes = [a for a in role["Actions"] if a.rsplit("/", 1)[1] in ("write", "delete", "*")]
    assert writes == ["Microsoft.Network/networkSecurityGroups/securityRules/delete"]
    assert "Microsoft.ResourceGraph/resources/read" in role["Actions"]


@pytest.mark.parametrize("kind", ["requester", "admin", "broker"])
def test_shipped_role_files_match_role_show(kind):
    from jitctl.roles import role_definition

    shipped = json.loads((ROOT / "policies" / "roles" / f"jit-{kind}.json").read_text())
    assert shipped == role_definition(kind, "/subscriptions/00000000-0000-0000-0000-000000000000")
