"""The `fleet` world: a big, deterministic estate with the mix an audit or a plan meets."""

from __future__ import annotations

from click.testing import CliRunner

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.emulator import Backend, FakeClock, Settings
from jitctl.emulator.fleet import fleet, fleet_subscription
from jitctl.emulator.seeder import DEMO_SUBSCRIPTION


def seeded(vms: int, subscriptions: int = 1, seed: int = 0) -> Backend:
    b = Backend(settings=Settings(propagation_delay=5.0), clock=FakeClock())
    fleet(b, vms, subscriptions, seed)
    return b


def of_type(b: Backend, kind: str) -> list[dict]:
    return [r for r in b.state["resources"].values() if r["type"].endswith(kind)]


def test_vms_spread_over_subscriptions_groups_and_regions():
    b = seeded(1500, subscriptions=3)
    vms = of_type(b, "/virtualMachines")
    assert len(vms) == 1500
    subs = {vm["id"].split("/")[2] for vm in vms}
    assert subs == {fleet_subscription(i) for i in range(3)} and DEMO_SUBSCRIPTION in subs
    per_group: dict[str, int] = {}
    for vm in vms:
        group = vm["id"].split("/")[4]
        per_group[group] = per_group.get(group, 0) + 1
    assert all(50 <= n <= 500 for n in per_group.values()), per_group
    assert len({vm["location"] for vm in vms}) >= 3
    assert b.settings.propagation_delay == 5.0  # restored after the open requests


def test_the_mix_an_estate_has():
    b = seeded(1000)
    nics = {n["id"].lower(): n for n in of_type(b, "/networkInterfaces")}
    guarded = [
        vm for vm in of_type(b, "/virtualMachines") if any(n for _, _, n in b.vm_paths(vm["id"]))
    ]
    unguarded = len(nics) - len(guarded)
    assert 0 < unguarded < len(nics) * 0.1  # a few VMs JIT cannot protect
    bypass = [
        n
        for n in of_type(b, "/networkSecurityGroups")
        if n["properties"]["securityRules"]
        and any(r["name"] == "Allow-Admin-Internet" for r in n["properties"]["securityRules"])
    ]
    assert bypass
    assert any(
        n["properties"].get("ipConfigurations")[0]["properties"].get("publicIPAddress")
        for n in nics.values()
    )
    policies = [e["policy"] for e in b.state["jit"].values()]
    members = [vm for p in policies for vm in p["properties"]["virtualMachines"]]
    assert len(members) > len(guarded) * 0.7  # most protected VMs are in a policy
    stale = [vm["id"] for vm in members if b.find(vm["id"]) is None]
    assert len(stale) == 1 and stale[0].endswith("-retired")
    assert b.state["grants"] and all(g["state"] == "active" for g in b.state["grants"])


def test_deterministic_and_seed_dependent():
    assert seeded(300).state == seeded(300).state
    assert seeded(300).state != seeded(300, seed=1).state


def test_cli_seeds_fleet_and_refuses_sizes_for_other_worlds(tmp_path):
    state = tmp_path / "emulator.sqlite"
    env = {"JITCTL_EMULATOR_STATE": str(state), "JITCTL_EMULATOR": None}
    r = CliRunner().invoke(
        cli,
        ["emulator", "reset", "--world", "fleet", "--vms", "120", "--subscriptions", "2"],
        env=env,
    )
    assert r.exit_code == 0, r.output
    from jitctl.emulator.store import read_file

    b = read_file(state)
    assert len(of_type(b, "/virtualMachines")) == 120 and len(b.state["subscriptions"]) == 2
    r = CliRunner().invoke(cli, ["emulator", "reset", "--world", "busy", "--vms", "3"], env=env)
    assert r.exit_code == 2 and "--world fleet" in r.output
    assert len(of_type(read_file(state), "/virtualMachines")) == 120  # nothing written


def test_commands_run_on_the_fleet():
    b = seeded(250)
    app = App.for_backend(b)
    r = CliRunner().invoke(cli, ["-o", "json", "list", "-g", "rg-fleet-00-00"], obj=app)
    assert r.exit_code == 0, r.output
    assert "vm-00-00-0" in r.output
