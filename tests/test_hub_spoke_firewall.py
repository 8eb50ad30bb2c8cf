"""A landing zone: the Azure Firewall and its public IP in a hub subscription, the VM in a spoke
(issue 21). jitctl finds the firewall across subscriptions with one Resource Graph query; where
the caller cannot read it, it says so once and trusts Azure's grant (Initiated, with a mapped
port), and its result says the access was not verified (the real SDK clients against the
emulator, through the CLI)."""

from __future__ import annotations

import json

import pytest

from jitctl.emulator.settings import Fault
from jitctl.emulator.worlds import HUB_FIREWALL_ADDRESS, HUB_SUBSCRIPTION
from jitctl.errors import ExitCode
from tests.support import RG

G = ["-g", RG]
IP = ["--source-ip", "203.0.113.7"]
VM = "vm-spoke01"
FW = (
    f"/subscriptions/{HUB_SUBSCRIPTION}/resourceGroups/rg-connectivity/providers/"
    "Microsoft.Network/azureFirewalls/fw-hub"
)
TRUST_WARNING = (
    f"warning: cannot read the Azure Firewall with address {HUB_FIREWALL_ADDRESS} (no "
    "subscription you can read has it): trusting Azure's grant (status Initiated, with a "
    "mapped port) without checking its DNAT rule."
)


@pytest.fixture
def world() -> str:
    return "hub-spoke"


@pytest.fixture
def no_hub_role(backend):
    """The caller holds no role in the hub subscription."""
    backend.settings.unreadable_subscriptions = [HUB_SUBSCRIPTION]


@pytest.fixture
def connect_app(app, tmp_path):
    from tests.test_connect import FakeRunner

    app.runner = FakeRunner(installed={"xfreerdp": "/usr/bin/xfreerdp"})
    app.data_dir = tmp_path / "data"
    return app


# --- the firewall is readable in the hub ------------------------------------------------------


def test_request_wait_finds_the_firewall_in_the_hub_and_verifies_its_dnat_rule(run, calls):
    calls()
    r = run("-o", "json", "request", VM, *G, *IP, "--wait", "--timeout", "30s")
    assert r.exit_code == 0, r.output
    proof = json.loads(r.stdout)["verification"]
    assert (proof["ok"], proof["verified"]) == (True, True)
    fw = proof["ports"][0]["firewall"]
    assert (fw["firewall_id"], fw["mapped_port"], fw["by_jit"]) == (FW, 50000, True)
    assert fw["rule"]["collection"] == "MDC-JIT" and fw["unseen"] is None
    assert r.stderr == ""  # nothing to warn about
    made = calls()
    # one Resource Graph query finds it; the spoke's public IPs are never listed
    assert made.count("POST Microsoft.ResourceGraph/resources") == 1
    assert not any("publicIPAddresses" in c for c in made)


def test_rdp_no_launch_connects_to_the_hub_firewall_and_the_mapped_port(connect_app, run):
    r = run("-o", "json", "rdp", VM, *G, *IP, "--no-launch")
    assert r.exit_code == 0, r.output
    ready = json.loads(r.stdout)["ready"]
    assert (ready["connect_host"], ready["connect_port"], ready["via"]) == (
        HUB_FIREWALL_ADDRESS,
        50000,
        "firewall",
    )
    assert ready["verification"]["verified"] is True
    rdp_file = (connect_app.data_dir / "rdp" / f"{VM}.rdp").read_text()
    assert f"full address:s:{HUB_FIREWALL_ADDRESS}:50000" in rdp_file


def test_verify_judges_by_the_hub_firewalls_dnat_rule(run):
    r = run("verify", VM, *G, *IP)
    assert r.exit_code == ExitCode.NOT_EFFECTIVE
    assert (
        r.stdout.splitlines()[1] == "  Azure Firewall fw-hub: no DNAT rule for this source and port"
    )
    assert run("request", VM, *G, *IP).exit_code == 0
    r = run("verify", VM, *G, *IP, "--require-jit")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == (
        f"EFFECTIVE: 203.0.113.7 -> Azure Firewall {HUB_FIREWALL_ADDRESS} -> {VM} 10.71.1.4:3389/tcp"
    )
    assert lines[1].startswith("  Azure Firewall fw-hub: JIT DNAT rule MDC-JIT-vm-spoke01-3389-")


def test_without_resource_graph_the_vms_subscription_is_searched_through_arm(run, backend):
    """Resource Graph down: the VM's subscription's public IPs are listed instead, which finds
    no firewall in a hub; access is then Azure's word, said once."""
    backend.faults.append(Fault(503, match="microsoft.resourcegraph", times=99))
    r = run("-o", "json", "request", VM, *G, *IP, "--wait", "--timeout", "30s")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["verification"]["verified"] is False
    assert r.stderr == TRUST_WARNING + "\n"
    assert any("publicIPAddresses" in e.path for e in backend.log)


@pytest.mark.parametrize("world", ["firewall"])  # the firewall and the VM in one subscription
def test_without_resource_graph_a_firewall_of_the_vms_subscription_is_still_found(run, backend):
    backend.faults.append(Fault(503, match="microsoft.resourcegraph", times=99))
    r = run("-o", "json", "request", "vm-app01", *G, *IP, "--wait", "--timeout", "30s")
    assert r.exit_code == 0, r.output
    proof = json.loads(r.stdout)["verification"]
    assert proof["verified"] is True and proof["ports"][0]["firewall"]["rule"] is not None
    assert r.stderr == ""


# --- the caller holds no role in the hub --------------------------------------------------------


def test_request_wait_trusts_azures_grant_says_so_once_and_exits_0(run, no_hub_role):
    r = run("-o", "json", "request", VM, *G, *IP, "--wait", "--timeout", "30s")
    assert r.exit_code == 0, r.output
    assert r.stderr == TRUST_WARNING + "\n"
    proof = json.loads(r.stdout)["verification"]
    assert (proof["ok"], proof["effective"], proof["verified"]) == (True, True, False)
    fw = proof["ports"][0]["firewall"]
    assert (fw["firewall_id"], fw["rule"], fw["verified"]) == (None, None, False)
    assert fw["unseen"] == "no subscription you can read has it"
    assert (fw["grant"]["status"], fw["grant"]["mapped_port"], fw["mapped_port"]) == (
        "Initiated",
        50000,
        50000,
    )


def test_verify_without_a_hub_role_is_granted_not_verified(run, no_hub_role):
    r = run("verify", VM, *G, *IP)
    assert r.exit_code == ExitCode.NOT_EFFECTIVE  # no grant yet: nothing to trust
    assert (  # folded to fit 100 columns
        f"Azure Firewall {HUB_FIREWALL_ADDRESS}: cannot be read (no subscription you can read "
        "has it); Azure reports no Initiated grant for this source and port NSGs not judged"
    ) in " ".join(r.stdout.split())
    assert run("request", VM, *G, *IP).exit_code == 0
    r = run("verify", VM, *G, *IP)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == (
        f"GRANTED, NOT VERIFIED: 203.0.113.7 -> Azure Firewall {HUB_FIREWALL_ADDRESS} -> {VM} "
        "10.71.1.4:3389/tcp"
    )
    assert (  # folded to fit 100 columns
        f"Azure Firewall {HUB_FIREWALL_ADDRESS}: cannot be read (no subscription you can read "
        "has it); Azure reports the grant Initiated, port 50000 NSGs not judged"
    ) in " ".join(r.stdout.split())
    assert r.stderr == TRUST_WARNING + "\n"
    # another source: no grant covers it, so nothing is trusted
    assert run("verify", VM, *G, "--source-ip", "198.51.100.9").exit_code == 7


def test_a_trusted_grant_ends_with_its_end_time(run, no_hub_role, clock):
    assert run("request", VM, *G, *IP, "--duration", "30m").exit_code == 0
    assert run("verify", VM, *G, *IP).exit_code == 0
    clock.advance(31 * 60)
    assert run("verify", VM, *G, *IP).exit_code == ExitCode.NOT_EFFECTIVE


def test_rdp_no_launch_without_a_hub_role(connect_app, run, no_hub_role):
    r = run("-o", "json", "rdp", VM, *G, *IP, "--no-launch")
    assert r.exit_code == 0, r.output
    ready = json.loads(r.stdout)["ready"]
    assert (ready["connect_host"], ready["connect_port"]) == (HUB_FIREWALL_ADDRESS, 50000)
    assert ready["verification"]["verified"] is False
    assert r.stderr.count("trusting Azure's grant") == 1


def test_a_grant_azure_never_applies_times_out_naming_the_real_cause(run, backend, no_hub_role):
    backend.settings.initiate_fate = "never"
    r = run("request", VM, *G, *IP, "--wait", "--timeout", "10s")
    assert r.exit_code == ExitCode.TIMED_OUT
    assert "A rule above JIT's decides" not in r.stderr
    assert (
        "Azure says Initiating (UserRequested), Azure Firewall port 50000; the Azure Firewall "
        f"with address {HUB_FIREWALL_ADDRESS} cannot be read (no subscription you can read has "
        "it)." in " ".join(r.stderr.split())
    )


def test_an_unapplied_dnat_rule_is_named_when_the_firewall_is_readable(run, backend):
    backend.settings.initiate_fate = "never"
    r = run("request", VM, *G, *IP, "--wait", "--timeout", "10s")
    assert r.exit_code == ExitCode.TIMED_OUT
    text = " ".join(r.stderr.split())
    assert "A rule above JIT's decides" not in text
    assert (
        "Azure says Initiating (UserRequested), Azure Firewall port 50000; no JIT DNAT rule "
        "for port 3389 on Azure Firewall fw-hub." in text
    )


# --- doctor and the role ------------------------------------------------------------------------


def test_doctor_says_the_hub_firewall_is_read(run):
    r = run("doctor", VM, *G)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1] == (
        f"ok   firewall read: Azure Firewall fw-hub ({HUB_FIREWALL_ADDRESS}, in "
        f"{HUB_SUBSCRIPTION}): its DNAT rules are verified"
    )


def test_doctor_warns_that_access_will_be_unverified_without_a_hub_role(run, no_hub_role):
    r = run("doctor", VM, *G)
    assert r.exit_code == 0, r.output  # requests work: a warning, not a failure
    assert r.stdout.splitlines()[-1] == (
        f"warn firewall read: cannot read the Azure Firewall with address "
        f"{HUB_FIREWALL_ADDRESS} (no subscription you can read has it): requests work, but "
        "jitctl trusts Azure's grant (Initiated, with a mapped port) unverified. For verified "
        "access, assign the role 'jitctl role show requester' prints on the firewall's "
        "subscription too (a landing zone's hub)"
    )


def test_doctor_tells_firewall_reads_apart_from_what_requests_need(run, backend):
    backend.settings.not_permissions = ["Microsoft.Network/azureFirewalls/read"]
    r = run("doctor", VM, *G)
    assert r.exit_code == 0, r.output
    assert (
        "ok   permissions (requester): every action of 'jitctl role show requester' except "
        "Microsoft.Network/azureFirewalls/read (only to verify behind Azure Firewall)"
    ) in r.stdout.splitlines()


def test_the_requester_role_reads_the_firewall_and_may_span_the_hub(run):
    spoke, hub = "/subscriptions/spoke", f"/subscriptions/{HUB_SUBSCRIPTION}"
    r = run("role", "show", "requester", "--scope", spoke, "--scope", hub)
    role = json.loads(r.stdout)
    assert role["AssignableScopes"] == [spoke, hub]
    for action in (
        "Microsoft.Network/azureFirewalls/read",
        "Microsoft.Network/publicIPAddresses/read",
        "Microsoft.ResourceGraph/resources/read",
    ):
        assert action in role["Actions"]
    assert "assign it also on the firewall's subscription" in role["Description"]


# --- the emulator's model of a caller without a role in the hub --------------------------------


def test_the_emulator_hides_an_unreadable_subscription(gw, backend, no_hub_role):
    from jitctl.errors import Forbidden

    with pytest.raises(Forbidden, match="AuthorizationFailed"):
        gw.get_firewall(FW)
    assert HUB_SUBSCRIPTION not in [s.id for s in gw.list_subscriptions()]
    backend.settings.unreadable_subscriptions = []
    assert gw.get_firewall(FW).name == "fw-hub"
    assert HUB_SUBSCRIPTION in [s.id for s in gw.list_subscriptions()]


def test_the_emulators_resource_graph_filters_by_a_property_and_by_read_rights(backend):
    from jitctl.emulator.graph import ResourceGraph

    graph = ResourceGraph(backend)
    query = (
        "Resources | where type =~ 'microsoft.network/publicipaddresses' "
        f"| where properties.ipAddress == '{HUB_FIREWALL_ADDRESS}' "
        "| project id, owner = tostring(properties.ipConfiguration.id)"
    )
    answer, _ = graph.query({"query": query})
    assert [row["owner"] for row in answer["data"]] == [
        f"{FW}/azureFirewallIpConfigurations/ipconfig1"
    ]
    backend.settings.unreadable_subscriptions = [HUB_SUBSCRIPTION]
    assert graph.query({"query": query})[0]["data"] == []
