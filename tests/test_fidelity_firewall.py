"""Azure Firewall in front of VMs: the policy names the firewall's address, requests get a mapped
(DNAT) port, JIT writes DNAT rules in the firewall's MDC-JIT collection; rdp and ssh connect to
the firewall's address and the mapped port (the real SDK clients against the emulator; jitctl's
answer as a user sees it)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from jitctl.emulator.worlds import FIREWALL_ADDRESS
from jitctl.errors import ExitCode, JitctlError
from tests.support import RG, SUB

G = ["-g", RG]
IP = ["--source-ip", "203.0.113.7"]
FW = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/azureFirewalls/fw-hub"


@pytest.fixture
def world() -> str:
    return "firewall"


@pytest.fixture
def connect_app(app, tmp_path):
    from tests.test_connect import FakeRunner

    app.runner = FakeRunner(installed={"xfreerdp": "/usr/bin/xfreerdp", "ssh": "/usr/bin/ssh"})
    app.data_dir = tmp_path / "data"
    return app


def dnat_rules(backend):
    colls = backend.get(FW)["properties"].get("natRuleCollections", [])
    return [(c["name"], r) for c in colls for r in c["properties"]["rules"]]


def test_a_request_gets_a_mapped_port_and_a_dnat_rule_in_mdc_jit(run, backend):
    r = run("request", "vm-app01", *G, *IP, "-o", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["ports"][0]["mapped_port"] == 50000
    [(name, rule)] = dnat_rules(backend)
    assert name == "MDC-JIT"
    assert rule["sourceAddresses"] == ["203.0.113.7"]
    assert rule["destinationAddresses"] == [FIREWALL_ADDRESS]
    assert rule["destinationPorts"] == ["50000"]
    assert (rule["translatedAddress"], rule["translatedPort"]) == ("10.40.1.4", "3389")


def test_the_dnat_rule_goes_when_the_grant_ends(run, backend, clock):
    assert run("request", "vm-app01", *G, *IP, "--duration", "30m").exit_code == 0
    assert len(dnat_rules(backend)) == 1
    clock.advance(31 * 60)
    (grant,) = json.loads(run("history", "vm-app01", *G, "-o", "json").stdout)["grants"]
    assert (grant["status"], grant["status_reason"], grant["state"]) == (
        "Revoked",
        "Expired",
        "expired",
    )
    assert dnat_rules(backend) == []
    assert backend.get(FW)["properties"]["natRuleCollections"] == []  # left as JIT found it


def test_rdp_no_launch_targets_the_firewall_and_the_mapped_port(connect_app, run):
    r = run("-o", "json", "rdp", "vm-app01", *G, *IP, "--no-launch")
    assert r.exit_code == 0, r.output
    ready = json.loads(r.stdout)["ready"]
    assert (ready["connect_host"], ready["connect_port"], ready["via"]) == (
        FIREWALL_ADDRESS,
        50000,
        "firewall",
    )
    rdp_file = (connect_app.data_dir / "rdp" / "vm-app01.rdp").read_text()
    assert f"full address:s:{FIREWALL_ADDRESS}:50000" in rdp_file


def test_ssh_no_launch_to_a_vm_with_no_nsg_behind_the_firewall(connect_app, run):
    run("request", "vm-app01", *G, *IP)  # takes 50000 on the firewall
    r = run("ssh", "vm-app02", *G, *IP, "--no-launch", "--user", "azureuser")
    assert r.exit_code == 0, r.output
    assert f"ssh to {FIREWALL_ADDRESS}:50001 (firewall address)" in r.stdout
    assert "command: ssh -p 50001 -- azureuser@20.61.17.4" in r.stdout
    assert connect_app.runner.ran == []


def test_request_says_the_firewall_port(run):
    r = run("request", "vm-app01", *G, *IP)
    assert r.exit_code == 0
    assert "  port 3389 (Azure Firewall port 50000) from 203.0.113.7 until" in r.stdout


def test_a_vm_with_no_nsg_is_supported_when_a_firewall_is_in_front(run, gw):
    """vm-app02 has no NSG: the policy that names the firewall's address holds it, and without
    that address Azure refuses the VM as unsupported."""
    r = run("list", *G)
    assert r.exit_code == 0 and "vm-app02" in r.stdout
    policy = gw.get_policy(SUB, RG, "westeurope", "fw-jit")
    alone = replace(policy.vm(policy.vms[1].id), public_ip_address=None)
    with pytest.raises(JitctlError, match="no Azure Firewall is in front of it"):
        gw.put_policy(replace(policy, name="no-firewall", vms=(alone,)))


def test_verify_judges_by_the_firewall_dnat_rule_not_the_nsg(run, backend):
    r = run("verify", "vm-app02", *G, *IP, "--port", "22")  # no NSG: an NSG view would allow
    assert r.exit_code == ExitCode.NOT_EFFECTIVE
    assert r.stdout.splitlines()[:3] == [
        "NOT EFFECTIVE: 203.0.113.7 -> Azure Firewall 20.61.17.4 -> vm-app02 10.40.1.5:22/tcp",
        "  Azure Firewall fw-hub: no DNAT rule for this source and port",
        "  NSGs not judged: behind the firewall they see its address (SNAT), not the source",
    ]
    assert (
        "no DNAT rule of Azure Firewall fw-hub (20.61.17.4) lets 203.0.113.7 in to 10.40.1.5:22"
        in r.stderr
    )
    assert run("request", "vm-app02", *G, *IP, "--port", "22", "--wait").exit_code == 0
    r = run("verify", "vm-app02", *G, *IP, "--port", "22", "--require-jit")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[1].startswith("  Azure Firewall fw-hub: JIT DNAT rule MDC-JIT-")
    assert r.stdout.splitlines()[1].endswith("(collection MDC-JIT), port 50000")
    r = run("verify", "vm-app02", *G, "--source-ip", "198.51.100.9", "--port", "22")
    assert r.exit_code == ExitCode.NOT_EFFECTIVE  # another source: the rule is not for it


def test_verify_says_when_no_firewall_has_the_policys_address(run, backend):
    backend.delete(FW)
    r = run("verify", "vm-app01", *G, *IP)
    assert r.exit_code == ExitCode.NOT_EFFECTIVE
    assert all(len(line) <= 100 for line in r.stdout.splitlines())  # folded to fit
    assert (
        "Azure Firewall 20.61.17.4: cannot be read (no subscription you can read has it); "
        "Azure reports no Initiated grant for this source and port NSGs not judged"
    ) in " ".join(r.stdout.split())
    assert (
        "not effective: the Azure Firewall with address 20.61.17.4 cannot be read (no "
        "subscription you can read has it), and Azure reports no grant (Initiated, with a "
        "mapped port) for port 3389 from 203.0.113.7." in r.stderr
    )


def test_keep_alive_follows_the_mapped_port_of_a_renewal(connect_app, run, backend, clock):
    """A renewal is a new request: the firewall maps the port anew (the older DNAT rule still
    holds 50000 until the newer one is applied); jitctl says so and the rdp file follows."""
    from datetime import timedelta

    from tests.test_tunnel import SpawningRunner, TimedChild

    backend.settings.propagation_delay = 30
    spawned = []

    class Runner(SpawningRunner):
        def spawn(self, args):
            spawned.append(args)
            return TimedChild(clock, clock.now() + timedelta(hours=4))

    connect_app.runner = Runner(platform="win32")
    r = run("rdp", "vm-app01", *G, *IP, "--keep-alive")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"vm-app01: rdp to {FIREWALL_ADDRESS}:50000")
    assert "Azure Firewall now maps port 3389 of vm-app01 to 20.61.17.4:50001 (was 50000)" in (
        r.stderr
    )
    rdp_file = (connect_app.data_dir / "rdp" / "vm-app01.rdp").read_text()
    assert f"full address:s:{FIREWALL_ADDRESS}:50001" in rdp_file
    [(_, rule)] = dnat_rules(backend)  # the older rule went with the older grant
    assert rule["destinationPorts"] == ["50001"]
    assert "keep-alive stopped after 1 renewal(s)" in r.stderr


def test_ssh_keep_alive_behind_the_firewall_says_where_new_connections_go(
    connect_app, run, backend, clock
):
    from datetime import timedelta

    from tests.test_tunnel import SpawningRunner, TimedChild

    class Runner(SpawningRunner):
        def which(self, name):
            return f"/usr/bin/{name}"

        def spawn(self, args):
            spawned.append(args)
            return TimedChild(clock, clock.now() + timedelta(hours=4))

    spawned: list[list[str]] = []
    connect_app.runner = Runner(platform="linux")
    r = run("ssh", "vm-app02", *G, *IP, "--keep-alive", "--user", "azureuser")
    assert spawned == [["/usr/bin/ssh", "-p", "50000", "--", f"azureuser@{FIREWALL_ADDRESS}"]]
    assert "Renewed access to vm-app02 until" in r.stderr
    assert (
        "Azure Firewall now maps port 22 of vm-app02 to 20.61.17.4:50001 (was 50000); new "
        "connections go there, open ones stay." in r.stderr
    )
