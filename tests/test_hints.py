"""Hints that work when pasted: each command line a hint suggests carries the global options in
force (-s, --emulator, --cloud, --arm-endpoint), so that, run as printed, it acts on the same
subscription. Each test makes jitctl suggest a command in a subscription that is not the
default one, pastes the suggestion (a fresh App on the same emulator state, as a new shell
command would be), and checks where it acted.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
from click.testing import CliRunner, Result

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.cli.globalopts import command_line
from jitctl.emulator import Backend, FakeClock, Settings
from jitctl.emulator.seeder import DEMO_SUBSCRIPTION, Seeder, subnet_id
from jitctl.emulator.worlds import demo
from jitctl.errors import suggest
from tests.support import error_parts

OTHER = "5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4"  # not the default subscription
OTHER_NAME = "Contoso Other"
RG = "rg-other"


@pytest.fixture
def backend() -> Backend:
    """The demo world in the default subscription; vm-app01 (an NSG on its NIC) in another."""
    b = Backend(settings=Settings(propagation_delay=0), clock=FakeClock())
    demo(b)
    b.add_subscription(OTHER, OTHER_NAME)
    s = Seeder(b, subscription=OTHER, group=RG)
    vnet = s.vnet("vnet-other", "10.60.0.0/16", {"snet-app": ("10.60.1.0/24", None)})
    nic = s.nic("vm-app01-nic", subnet_id(vnet, "snet-app"), "10.60.1.4", nsg=s.nsg("app-nsg"))
    s.vm("vm-app01", [nic])
    return b


def jitctl(backend: Backend, *args: str) -> Result:
    """One command as from a new shell: a fresh App on the same emulator state."""
    return CliRunner().invoke(cli, list(args), obj=App.for_backend(backend), catch_exceptions=False)


def suggested(hint: str) -> list[str]:
    """The command line in a hint, as a shell would split it when pasted."""
    found = re.search(r"(jitctl .*?)(?:'? shows|'? prints|$)", hint)
    assert found, hint
    return shlex.split(found.group(1))


def paste(backend: Backend, hint: str) -> Result:
    words = suggested(hint)
    assert words[:2] == ["jitctl", "--emulator"], words
    return jitctl(backend, *words[1:])


def ports_in_policy(backend: Backend, sub: str, vm: str) -> set[int]:
    r = jitctl(backend, "-s", sub, "-o", "json", "list", "-g", RG)
    if r.exit_code != 0:
        return set()
    return {
        p["number"]
        for policy in json.loads(r.stdout)["policies"]
        for v in policy["vms"]
        if v["vm_id"].lower().endswith(f"/{vm}")
        for p in v["ports"]
    }


SUBSCRIPTION_SPELLINGS = [
    pytest.param(OTHER, OTHER, id="id"),
    pytest.param("contoso OTHER", "contoso OTHER", id="name as typed"),
]


@pytest.mark.parametrize(("given", "carried"), SUBSCRIPTION_SPELLINGS)
def test_show_hints_enable_in_the_same_subscription(backend, given, carried):
    r = jitctl(backend, "--emulator", "-s", given, "show", "vm-app01", "-g", RG)
    assert r.exit_code == 4
    _, hint = error_parts(r.stderr)
    assert hint == "Enable it with: " + shlex.join(
        ["jitctl", "--emulator", "-s", carried, "enable", "vm-app01", "-g", RG]
    )
    assert paste(backend, hint).exit_code == 0
    assert ports_in_policy(backend, OTHER, "vm-app01") == {3389}


def test_request_without_a_policy_hints_enable_there(backend):
    r = jitctl(backend, "-s", OTHER, "request", "vm-app01", "-g", RG, "--source-ip", "203.0.113.7")
    assert r.exit_code == 4
    _, hint = error_parts(r.stderr)
    assert hint.startswith("Enable it with: jitctl --emulator -s ")
    assert paste(backend, hint).exit_code == 0
    assert ports_in_policy(backend, OTHER, "vm-app01") == {3389}


def test_a_port_not_in_the_policy_hints_enable_with_that_port(backend):
    assert (
        jitctl(backend, "-s", OTHER, "enable", "vm-app01", "-g", RG, "--port", "3389").exit_code
        == 0
    )
    r = jitctl(
        backend, "-s", OTHER, "request", "vm-app01", "-g", RG, "--port", "22",
        "--source-ip", "203.0.113.7",
    )  # fmt: skip
    assert r.exit_code == 6
    _, hint = error_parts(r.stderr)
    assert hint == (
        f"Ask an admin to run: jitctl --emulator -s {OTHER} enable vm-app01 -g {RG} --port 22"
    )
    assert paste(backend, hint).exit_code == 0
    assert ports_in_policy(backend, OTHER, "vm-app01") == {3389, 22}


def test_disable_of_a_vm_in_no_policy_hints_the_enable_of_that_group(backend):
    r = jitctl(backend, "-s", OTHER, "disable", "vm-app01", "-g", RG)
    assert r.exit_code == 4
    _, hint = error_parts(r.stderr)  # the one wording of a VM in no policy (errors.VmNotInPolicy)
    assert hint == f"Enable it with: jitctl --emulator -s {OTHER} enable vm-app01 -g {RG}"
    assert paste(backend, hint).exit_code == 0  # rg-other is not in the default subscription
    assert ports_in_policy(backend, OTHER, "vm-app01") == {3389}


def test_verify_not_effective_hints_a_request_that_makes_it_so(backend):
    jitctl(backend, "-s", OTHER, "enable", "vm-app01", "-g", RG, "--port", "22")
    verify = ("-s", OTHER, "verify", "vm-app01", "-g", RG, "--source-ip", "203.0.113.7")
    r = jitctl(backend, *verify, "--port", "22")
    assert r.exit_code == 7
    _, hint = error_parts(r.stderr)
    assert hint == (
        f"Request access: jitctl --emulator -s {OTHER} request vm-app01 -g {RG} "
        "--source-ip 203.0.113.7 --port 22 --wait"
    )
    assert paste(backend, hint).exit_code == 0
    assert jitctl(backend, *verify, "--port", "22").exit_code == 0


def test_a_timed_out_wait_hints_a_verify_of_the_same_ports(backend):
    jitctl(backend, "-s", OTHER, "enable", "vm-app01", "-g", RG, "--port", "22")
    backend.settings.propagation_delay = 120
    r = jitctl(
        backend, "-s", OTHER, "request", "vm-app01", "-g", RG, "--port", "22",
        "--source-ip", "203.0.113.7", "--wait", "--timeout", "30s",
    )  # fmt: skip
    assert r.exit_code == 8
    _, hint = error_parts(r.stderr)
    assert hint.endswith(
        f"check again: jitctl --emulator -s {OTHER} verify vm-app01 -g {RG} "
        "--source-ip 203.0.113.7 --port 22 --wait"
    )
    assert paste(backend, hint).exit_code == 0  # waits out the rest of the propagation


def test_doctor_hints_carry_the_subscription(backend):
    backend.settings.permissions = []  # nothing allowed: the role hints too
    r = jitctl(backend, "-s", OTHER, "doctor", "vm-app01", "-g", RG)
    assert r.exit_code == 6
    lines = r.stdout.splitlines()
    policy = next(x for x in lines if x.startswith("FAIL jit policy"))
    assert policy.endswith(
        f". Enable it with: jitctl --emulator -s {OTHER} enable vm-app01 -g {RG}"
    )
    role = next(x for x in lines if x.startswith("FAIL permissions (requester)"))
    assert f"'jitctl --emulator -s {OTHER} role show requester' prints" in role
    shown = paste(backend, role.split(". ", 1)[1])
    assert json.loads(shown.stdout)["AssignableScopes"] == [f"/subscriptions/{OTHER}"]
    assert paste(backend, policy.rsplit(". ", 1)[1]).exit_code == 0
    assert ports_in_policy(backend, OTHER, "vm-app01") == {3389}


def test_a_vm_by_id_of_another_subscription_is_suggested_there(backend):
    """No -s given, the VM named by its id in a subscription that is not the default."""
    vm_id = f"/subscriptions/{OTHER}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/vm-app01"
    r = jitctl(backend, "show", vm_id)
    assert r.exit_code == 4
    _, hint = error_parts(r.stderr)
    assert suggested(hint) == ["jitctl", "--emulator", "-s", OTHER, "enable", "vm-app01", "-g", RG]


def test_the_default_subscription_needs_no_s(backend):
    r = jitctl(backend, "show", "vm-win01", "-g", "rg-jit-demo")
    _, hint = error_parts(r.stderr)
    assert hint == "Enable it with: jitctl --emulator enable vm-win01 -g rg-jit-demo"


def test_cloud_and_endpoint_are_carried_and_quoted():
    app = App(
        subscription="Contoso Prod", subscriptions=("Contoso Prod",), cloud="AzureUSGovernment"
    )
    app.arm_endpoint = "https://arm.contoso.example/"
    line = command_line(app, suggest("enable", "vm-win01", "-g", "rg-prod"))
    assert line == (
        "jitctl --cloud AzureUSGovernment --arm-endpoint https://arm.contoso.example/ "
        "-s 'Contoso Prod' enable vm-win01 -g rg-prod"
    )
    assert str(suggest("enable", "vm 1")) == "jitctl enable 'vm 1'"  # the library's, bare


def test_the_default_subscription_is_the_demo_one(backend):
    """The fixture's premise: a command without -s acts on the demo subscription."""
    r = jitctl(backend, "-o", "json", "list", "-g", RG)
    assert r.exit_code == 4  # rg-other is in OTHER alone


def test_the_readme_transcript_of_a_hint_is_true():
    """README "Exit codes": the transcript of an error and its hint is what jitctl writes."""
    from pathlib import Path

    from jitctl.emulator.worlds import docs

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```text\n\$ (jitctl [^\n]*)\n(jitctl: error: .*?\n)```", readme, re.S)
    assert block, "README: the transcript of an error with a hint is gone"
    world = Backend(settings=Settings(propagation_delay=0), clock=FakeClock())
    docs(world)
    r = jitctl(world, *shlex.split(block.group(1))[1:])
    assert r.exit_code == 4 and r.stderr == block.group(2)
    assert paste(world, error_parts(r.stderr)[1]).exit_code == 0


def test_ssh_config_proxy_commands_keep_the_cloud(backend, tmp_path):
    """ssh runs the ProxyCommand later, from another shell: the cloud goes with it, as -s does."""
    assert jitctl(backend, "enable", "vm-lnx01", "-g", "rg-jit-demo", "--port", "22").exit_code == 0
    app = App.for_backend(backend)
    app.cloud = "AzureUSGovernment"  # as --cloud sets it (the emulator answers for any cloud)
    config = tmp_path / "ssh_config"
    args = ["ssh-config", "-g", "rg-jit-demo", "--config", str(config)]
    r = CliRunner().invoke(cli, args, obj=app, catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    proxy = next(x for x in config.read_text().splitlines() if "ProxyCommand" in x)
    assert proxy.endswith(
        f"ssh-proxy vm-lnx01 -g rg-jit-demo -s {DEMO_SUBSCRIPTION} --port 22 --emulator "
        "--cloud AzureUSGovernment"
    )
