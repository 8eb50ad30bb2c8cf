"""Lenient bodies: the JIT service accepts a port number sent as a string, a null
`allowedSourceAddressPrefixes` beside a single prefix (and the reverse), the initiate action in any
letter case, and an initiate port without a source (the caller's address as ARM sees it). The
emulator takes them through the real security SDK client (raw JSON bodies, as another tool writes
them), and jitctl reads such policies: list, show, verify, enable (the merge keeps the other VM's
entries), policy export and plan."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from jitctl.emulator.jit import iso
from jitctl.errors import ExitCode
from tests.support import RG, SUB, one_error

G = ["-g", RG]
LOC = "westeurope"
NSG = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups"


def vm_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/{name}"


def raw(body: dict[str, Any]) -> io.BytesIO:
    return io.BytesIO(json.dumps(body).encode())


def other_tools_policy() -> dict[str, Any]:
    """vm-lnx01 as another tool writes it: numbers as strings, the unused field null."""
    return {
        "kind": "Basic",
        "location": LOC,
        "properties": {
            "virtualMachines": [
                {
                    "id": vm_id("vm-lnx01"),
                    "ports": [
                        {
                            "number": "22",
                            "protocol": "TCP",
                            "allowedSourceAddressPrefix": "203.0.113.0/24",
                            "allowedSourceAddressPrefixes": None,
                            "maxRequestAccessDuration": "PT2H",
                        },
                        {
                            "number": "8080",
                            "protocol": "*",
                            "allowedSourceAddressPrefix": None,
                            "allowedSourceAddressPrefixes": ["198.51.100.0/24", "192.0.2.0/24"],
                            "maxRequestAccessDuration": "PT1H",
                        },
                    ],
                }
            ]
        },
    }


@pytest.fixture
def jit(gw) -> Any:
    """The real azure-mgmt-security client's JIT operations, on the in-process emulator."""
    return gw._client("security", SUB).jit_network_access_policies


@pytest.fixture(params=[False, True], ids=["numbers-normalised", "numbers-as-sent"])
def seeded(request, backend, jit) -> dict[str, Any]:
    """The other tool's policy PUT through the real SDK client as raw JSON; the emulator keeps
    string numbers as sent or answers them as numbers (Settings.port_numbers_as_sent)."""
    backend.settings.port_numbers_as_sent = request.param
    out = jit.create_or_update(
        RG, LOC, "default", raw(other_tools_policy()), content_type="application/json"
    )
    assert [p.number for p in out.virtual_machines[0].ports] == [22, 8080]  # the SDK's int
    return policy_of(backend)


def policy_of(backend) -> dict[str, Any]:
    (entry,) = list(backend.state["jit"].values())
    return entry["policy"]


def deny_rules(backend, nsg: str) -> list[dict[str, Any]]:
    return [r for r in backend.rules(f"{NSG}/{nsg}") if r["properties"]["access"] == "Deny"]


def allow_rules(backend, nsg: str) -> list[dict[str, Any]]:
    rules = backend.rules(f"{NSG}/{nsg}")
    return [r for r in rules if r["name"].startswith("MicrosoftDefenderForCloud-JITRule-")]


# --- the emulator takes them -------------------------------------------------------------------


def test_string_numbers_and_null_lists_are_accepted_and_stored_as_the_setting_says(seeded, backend):
    ports = seeded["properties"]["virtualMachines"][0]["ports"]
    as_sent = backend.settings.port_numbers_as_sent
    assert [p["number"] for p in ports] == (["22", "8080"] if as_sent else [22, 8080])
    assert ports[0]["allowedSourceAddressPrefixes"] is None  # kept as sent
    assert ports[1]["allowedSourceAddressPrefix"] is None
    (deny,) = deny_rules(backend, "snet-linux-nsg")  # the subnet NSG guards vm-lnx01
    assert deny["properties"]["destinationPortRanges"] == ["22", "8080"]


@pytest.mark.parametrize(
    "number, why",
    [
        ("ssh", "Port number 'ssh' of VM 'vm-lnx01' is invalid."),
        ("0", "Port number '0' of VM 'vm-lnx01' is invalid."),
        ("70000", "Port number '70000' of VM 'vm-lnx01' is invalid."),
        (True, "Port number 'True' of VM 'vm-lnx01' is invalid."),
        ("22.5", "Port number '22.5' of VM 'vm-lnx01' is invalid."),
    ],
)
def test_a_number_that_is_no_port_is_refused_and_nothing_is_written(backend, jit, number, why):
    body = other_tools_policy()
    body["properties"]["virtualMachines"][0]["ports"][0]["number"] = number
    with pytest.raises(HttpResponseError) as err:
        jit.create_or_update(RG, LOC, "default", raw(body), content_type="application/json")
    assert err.value.status_code == 400 and why in str(err.value)
    assert len(backend.state["jit"]) == 0 and deny_rules(backend, "snet-linux-nsg") == []


def test_the_same_port_as_a_string_and_a_number_is_a_port_twice(jit):
    body = other_tools_policy()
    body["properties"]["virtualMachines"][0]["ports"][1]["number"] = 22
    with pytest.raises(HttpResponseError) as err:
        jit.create_or_update(RG, LOC, "default", raw(body), content_type="application/json")
    assert "Virtual machine 'vm-lnx01' lists a port twice." in str(err.value)


def test_both_prefix_fields_null_is_still_refused(jit):
    body = other_tools_policy()
    body["properties"]["virtualMachines"][0]["ports"][0]["allowedSourceAddressPrefix"] = None
    with pytest.raises(HttpResponseError) as err:
        jit.create_or_update(RG, LOC, "default", raw(body), content_type="application/json")
    assert "Exactly one of 'allowedSourceAddressPrefix' and 'allowedSourceAddressPrefixes'" in str(
        err.value
    )


def initiate_body(port: dict[str, Any], vm: str = "vm-lnx01") -> dict[str, Any]:
    return {"virtualMachines": [{"id": vm_id(vm), "ports": [port]}], "justification": "lenient"}


@pytest.mark.parametrize("action", ["initiate", "Initiate", "INITIATE", "iNiTiAtE"])
def test_the_initiate_action_in_any_letter_case(seeded, backend, jit, clock, action):
    """The real SDK client sends the action's path segment it is given."""
    end = iso(clock.now() + timedelta(hours=1))
    port = {"number": "22", "allowedSourceAddressPrefix": "203.0.113.7", "endTimeUtc": end}
    out = jit.initiate(
        RG,
        LOC,
        "default",
        raw(initiate_body(port)),
        content_type="application/json",
        jit_network_access_policy_initiate_type=action,
    )
    assert backend.log[-1].path.endswith(f"/default/{action}") and backend.log[-1].status == 202
    assert out.virtual_machines[0].ports[0].number == 22
    (allow,) = allow_rules(backend, "snet-linux-nsg")
    assert allow["properties"]["sourceAddressPrefix"] == "203.0.113.7"
    assert allow["properties"]["destinationPortRange"] == "22"


def test_an_initiate_with_a_string_number_and_null_list_is_the_same_request(
    seeded, backend, jit, clock
):
    end = iso(clock.now() + timedelta(minutes=30))
    port = {
        "number": "8080",
        "allowedSourceAddressPrefix": None,
        "allowedSourceAddressPrefixes": ["198.51.100.9"],
        "endTimeUtc": end,
    }
    out = jit.initiate(
        RG, LOC, "default", raw(initiate_body(port)), content_type="application/json"
    )
    answered = out.virtual_machines[0].ports[0]
    assert (answered.number, answered.allowed_source_address_prefix) == (8080, "198.51.100.9")
    history = seeded["properties"]["requests"][-1]["virtualMachines"][0]["ports"][0]
    assert history["number"] == ("8080" if backend.settings.port_numbers_as_sent else 8080)
    assert history["status"] == "Initiated"  # applied: the string found the policy's port
    (allow,) = allow_rules(backend, "snet-linux-nsg")
    assert allow["properties"]["destinationPortRange"] == "8080"


def test_an_initiate_without_a_source_opens_for_the_callers_address(backend, jit, clock, run):
    run("enable", "vm-win01", *G)  # any source allowed
    end = iso(clock.now() + timedelta(hours=1))
    out = jit.initiate(
        RG,
        LOC,
        "default",
        raw(initiate_body({"number": 3389, "endTimeUtc": end}, vm="vm-win01")),
        content_type="application/json",
    )
    assert out.virtual_machines[0].ports[0].allowed_source_address_prefix == "203.0.113.10"
    (allow,) = allow_rules(backend, "vm-win01-nsg")
    assert allow["properties"]["sourceAddressPrefix"] == "203.0.113.10"
    # jitctl, asked about that address, sees the access the raw request opened
    r = run("verify", "vm-win01", *G, "--source-ip", "203.0.113.10", "--require-jit")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("EFFECTIVE: 203.0.113.10 -> vm-win01 10.10.1.4:3389/tcp")


def test_the_callers_address_is_a_setting_and_must_fit_the_policy(seeded, backend, jit, clock):
    backend.settings.caller_address = "192.0.2.44"  # outside vm-lnx01's 203.0.113.0/24 for 22
    end = iso(clock.now() + timedelta(hours=1))
    with pytest.raises(HttpResponseError) as err:
        jit.initiate(
            RG,
            LOC,
            "default",
            raw(initiate_body({"number": 22, "endTimeUtc": end})),
            content_type="application/json",
        )
    assert err.value.status_code == 400
    assert "The given access request is not a subset of policy" in str(err.value)
    assert allow_rules(backend, "snet-linux-nsg") == []
    backend.settings.caller_address = "203.0.113.99"
    jit.initiate(
        RG,
        LOC,
        "default",
        raw(initiate_body({"number": 22, "endTimeUtc": end})),
        content_type="application/json",
    )
    (allow,) = allow_rules(backend, "snet-linux-nsg")
    assert allow["properties"]["sourceAddressPrefix"] == "203.0.113.99"


def test_peer_is_the_tcp_clients_address_over_https(tmp_path):
    """`emulator serve`: with caller_address=peer, the source is the socket's peer."""
    import requests

    from jitctl.emulator import Backend, Settings
    from jitctl.emulator.seeder import Seeder
    from jitctl.emulator.server import EmulatorServer
    from jitctl.emulator.worlds import demo

    backend = Backend(settings=Settings(propagation_delay=0, caller_address="peer"))
    demo(backend)
    Seeder(backend).jit_policy("default", {"vm-win01": [3389]})
    srv = EmulatorServer(backend, cert_dir=tmp_path / "certs")
    srv.start()
    try:
        url = (
            f"{srv.endpoint}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Security"
            f"/locations/{LOC}/jitNetworkAccessPolicies/default/Initiate?api-version=2020-01-01"
        )
        body = initiate_body({"number": "3389", "duration": "PT1H"}, vm="vm-win01")
        answer = requests.post(
            url,
            json=body,
            headers={"Authorization": "Bearer x"},
            verify=str(srv.cert_path),
            timeout=10,
        )
    finally:
        srv.stop()
    assert answer.status_code == 202, answer.text
    port = answer.json()["virtualMachines"][0]["ports"][0]
    assert (port["number"], port["allowedSourceAddressPrefix"]) == (3389, "127.0.0.1")
    (allow,) = allow_rules(backend, "vm-win01-nsg")
    assert allow["properties"]["sourceAddressPrefix"] == "127.0.0.1"


# --- jitctl reads them -------------------------------------------------------------------------

LISTED = (
    "GROUP: rg-jit-demo  REGION: westeurope  POLICY: default\n"
    "VM        PORT      SOURCES                       MAX  GRANTS\n"
    "vm-lnx01  22/tcp    203.0.113.0/24                2h   -\n"
    "vm-lnx01  8080/any  198.51.100.0/24,192.0.2.0/24  1h   -\n"
)


def test_list_and_show_read_the_other_tools_policy(seeded, run):
    r = run("list", *G)
    assert (r.exit_code, r.stdout) == (0, LISTED)
    r = run("show", "vm-lnx01", *G)
    assert (r.exit_code, r.stdout) == (0, LISTED)
    r = run("list", *G, "-o", "json")
    ports = json.loads(r.stdout)["policies"][0]["vms"][0]["ports"]
    assert [(p["number"], p["sources"]) for p in ports] == [
        (22, ["203.0.113.0/24"]),
        (8080, ["198.51.100.0/24", "192.0.2.0/24"]),
    ]


def test_verify_judges_the_string_port(seeded, run, jit, clock):
    r = run("verify", "vm-lnx01", *G, "--source-ip", "203.0.113.7", "--port", "22")
    assert r.exit_code == ExitCode.NOT_EFFECTIVE
    assert "port 22 from 203.0.113.7 is denied by rule MicrosoftDefenderForCloud-JITRule_" in (
        r.stderr
    )
    end = iso(clock.now() + timedelta(hours=1))
    port = {"number": "22", "allowedSourceAddressPrefix": "203.0.113.7", "endTimeUtc": end}
    jit.initiate(RG, LOC, "default", raw(initiate_body(port)), content_type="application/json")
    r = run("verify", "vm-lnx01", *G, "--source-ip", "203.0.113.7", "--port", "22", "--require-jit")
    assert r.exit_code == 0, r.output
    r = run("history", "vm-lnx01", *G, "-o", "json")
    (grant,) = json.loads(r.stdout)["grants"]
    assert r.exit_code == 0 and (grant["port"], grant["source"]) == (22, "203.0.113.7"), grant


def test_enable_merges_and_keeps_the_other_vms_entries(seeded, backend, run):
    before = json.loads(run("show", "vm-lnx01", *G, "-o", "json").stdout)
    r = run("enable", "vm-win01", *G)
    assert r.exit_code == 0, r.output
    assert "+ vm-win01 port 3389/any from * max 3h" in r.stdout
    assert json.loads(run("show", "vm-lnx01", *G, "-o", "json").stdout) == before
    vms = policy_of(backend)["properties"]["virtualMachines"]
    lnx = vms[0]["ports"]  # as jitctl wrote it back: numbers, and no null list
    assert lnx == [
        {
            "number": 22,
            "protocol": "TCP",
            "allowedSourceAddressPrefix": "203.0.113.0/24",
            "maxRequestAccessDuration": "PT2H",
        },
        {
            "number": 8080,
            "protocol": "*",
            "allowedSourceAddressPrefixes": ["198.51.100.0/24", "192.0.2.0/24"],
            "maxRequestAccessDuration": "PT1H",
        },
    ]
    r = run("enable", "vm-lnx01", *G, "--port", "443")  # another port of the same VM
    assert r.exit_code == 0, r.output
    ports = policy_of(backend)["properties"]["virtualMachines"][0]["ports"]
    assert [p["number"] for p in ports] == [22, 8080, 443]
    assert ports[:2] == lnx


def test_export_then_plan_sees_no_change(seeded, run, tmp_path):
    out = tmp_path / "rg.yaml"
    r = run("policy", "export", *G, "--file", str(out))
    assert r.exit_code == 0, r.output
    text = out.read_text(encoding="utf-8")
    assert "- number: 22\n    protocol: tcp\n    maxDuration: 2h\n" in text
    assert "    - 198.51.100.0/24\n    - 192.0.2.0/24\n" in text
    r = run("policy", "plan", str(out), "--detailed-exitcode")
    assert r.exit_code == 0, r.output


# --- the settings from the command line --------------------------------------------------------


@pytest.mark.parametrize(
    "pair, kept",
    [
        ("caller_address=198.51.100.20", ("198.51.100.20", False)),
        ("caller_address=PEER", ("peer", False)),
        ("port_numbers_as_sent=on", ("203.0.113.10", True)),
    ],
)
def test_reset_sets_the_caller_address_and_the_number_echo(tmp_path, pair, kept):
    from click.testing import CliRunner

    from jitctl.cli.commands import cli
    from jitctl.emulator.store import read_file

    state = tmp_path / "state.sqlite"
    r = CliRunner().invoke(cli, ["emulator", "reset", "--state", str(state), "--set", pair])
    assert r.exit_code == 0, r.output
    settings = read_file(state).settings
    assert (settings.caller_address, settings.port_numbers_as_sent) == kept


@pytest.mark.parametrize("value", ["somewhere", "2001:db8::1", "203.0.113.0/24"])
def test_a_caller_address_that_is_no_ipv4_address_is_exit_2(tmp_path, value):
    from click.testing import CliRunner

    from jitctl.cli.commands import cli

    state = tmp_path / "state.sqlite"
    r = CliRunner().invoke(
        cli, ["emulator", "reset", "--state", str(state), "--set", f"caller_address={value}"]
    )
    assert r.exit_code == ExitCode.BAD_INPUT
    assert f"caller_address is an IPv4 address or peer, not {value!r}" in r.output
    assert r.stdout == "" and one_error(r.output) and not state.exists()
