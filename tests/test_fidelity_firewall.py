"""Azure Firewall in front of VMs: the policy names the firewall's address, requests get a mapped
(DNAT) port, JIT writes DNAT rules in the firewall's MDC-JIT collection; rdp and ssh connect to
the firewall's address and the mapped port (the real SDK clients against the emulator; jitctl's
answer as a user sees it)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from jitctl.emulator.worlds import FIREWALL_ADDRESS
from jitctl.errors import JitctlError
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
    assert "Revoked" in run("history", "vm-app01", *G).stdout
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
