"""The emulator over HTTPS: azure-identity's managed identity, the real SDK clients and the
jitctl CLI (as a separate process) all talk to it unchanged."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from jitctl.emulator import Backend, Settings
from jitctl.emulator.seeder import DEMO_SUBSCRIPTION
from jitctl.emulator.server import EmulatorServer
from jitctl.emulator.store import read_file
from jitctl.emulator.worlds import demo


@pytest.fixture
def server(tmp_path):
    backend = Backend(settings=Settings(propagation_delay=0))
    demo(backend)
    srv = EmulatorServer(backend, state_file=tmp_path / "state.sqlite", cert_dir=tmp_path / "certs")
    srv.start()
    yield srv
    srv.stop()


def env_of(srv: EmulatorServer) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "JITCTL_", "IDENTITY_", "MSI_"))
    }
    for line in srv.shell_lines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return env


def test_shell_lines_and_private_files(server):
    keys = [line.split("=")[0] for line in server.shell_lines()]
    assert keys == [
        "export JITCTL_ARM_ENDPOINT",
        "export IDENTITY_ENDPOINT",
        "export IDENTITY_HEADER",
        "export REQUESTS_CA_BUNDLE",
        "export AZURE_SUBSCRIPTION_ID",
        "export JITCTL_BROKER_ISSUER",
        "export JITCTL_BROKER_AUDIENCE",
    ]
    if os.name == "posix":
        key_file = server.cert_path.parent / "emulator-key.pem"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_managed_identity_and_sdk_clients_over_https(server, monkeypatch):
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.network import NetworkManagementClient

    for key, value in env_of(server).items():
        if key in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "REQUESTS_CA_BUNDLE"):
            monkeypatch.setenv(key, value)
    credential = DefaultAzureCredential(
        exclude_cli_credential=True,
        exclude_developer_cli_credential=True,
        exclude_powershell_credential=True,
    )
    client = NetworkManagementClient(
        credential,
        DEMO_SUBSCRIPTION,
        base_url=server.endpoint,
        credential_scopes=[f"{server.endpoint}/.default"],
        polling_interval=0,
    )
    nsg = client.network_security_groups.get("rg-jit-demo", "vm-win01-nsg")
    assert [r.name for r in nsg.default_security_rules][:1] == ["AllowVnetInBound"]
    rule = client.security_rules.begin_create_or_update(
        "rg-jit-demo",
        "vm-win01-nsg",
        "Allow-HTTPS",
        {
            "properties": {
                "protocol": "Tcp",
                "access": "Allow",
                "priority": 300,
                "direction": "Inbound",
                "sourceAddressPrefix": "*",
                "sourcePortRange": "*",
                "destinationAddressPrefix": "*",
                "destinationPortRange": "443",
            }
        },
    ).result()
    assert rule.priority == 300  # the long-running PUT completed through Azure-AsyncOperation


def test_token_endpoint_needs_the_identity_header(server):
    import requests

    url = (
        f"{server.endpoint}/msi/token?api-version=2019-08-01&resource=https://management.azure.com"
    )
    assert requests.get(url, verify=str(server.cert_path), timeout=5).status_code == 401
    ok = requests.get(
        url,
        headers={"X-IDENTITY-HEADER": server.identity_header},
        verify=str(server.cert_path),
        timeout=5,
    )
    assert ok.status_code == 200 and ok.json()["token_type"] == "Bearer"


def test_cloud_metadata_for_az_cloud_register(server):
    import requests

    url = f"{server.endpoint}/metadata/endpoints?api-version=2022-09-01"
    meta = requests.get(
        url, verify=str(server.cert_path), timeout=5
    ).json()  # no token, as in Azure
    assert meta["resourceManager"] == f"{server.endpoint}/"
    assert meta["authentication"]["audiences"] == [f"{server.endpoint}/"]


def test_jitctl_cli_process_against_the_server(server):
    env = env_of(server)
    base = [sys.executable, "-m", "jitctl"]
    r = subprocess.run(
        [*base, "enable", "vm-win01", "-g", "rg-jit-demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [*base, "-o", "json", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["policies"][0]["vms"][0]["vm_id"].endswith("/vm-win01")
    r = subprocess.run(
        [
            *base,
            "--debug",
            "request",
            "vm-win01",
            "-g",
            "rg-jit-demo",
            "--source-ip",
            "203.0.113.7",
            "--wait",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert env["IDENTITY_HEADER"] not in r.stderr  # the identity secret is never logged
    assert ".eyJ" not in r.stderr  # nor the token
    # each request was one transaction on the state file
    assert read_file(server.state_file).state["jit"]


def test_server_and_emulator_commands_share_one_state_file(server, monkeypatch):
    import requests
    from click.testing import CliRunner

    from jitctl.cli.commands import cli

    monkeypatch.setenv("JITCTL_EMULATOR_STATE", str(server.state_file))
    monkeypatch.delenv("JITCTL_EMULATOR", raising=False)
    from jitctl.app import App
    from jitctl.clock import FakeClock

    fake = FakeClock(datetime.now(timezone.utc))  # the write's confirmation takes no real time
    r = CliRunner().invoke(
        cli,
        ["--emulator", "enable", "vm-lnx01", "-g", "rg-jit-demo", "--policy-name", "cli"],
        obj=App(clock=fake),
    )
    assert r.exit_code == 0, r.output
    url = (
        f"{server.endpoint}/subscriptions/{DEMO_SUBSCRIPTION}/providers/Microsoft.Security/"
        "jitNetworkAccessPolicies?api-version=2020-01-01"
    )
    session = requests.Session()
    session.trust_env = False
    got = session.get(url, headers={"Authorization": "Bearer x"}, verify=str(server.cert_path))
    assert [p["name"] for p in got.json()["value"]] == ["cli"]  # the server sees the command's


def test_small_answers_go_out_without_the_delayed_ack_stall(server):
    import time

    import requests

    session = requests.Session()
    session.trust_env = False
    url = (
        f"{server.endpoint}/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/rg-jit-demo/"
        "providers/Microsoft.Network/networkSecurityGroups/vm-win01-nsg?api-version=2023-09-01"
    )
    auth = {"Authorization": "Bearer x"}
    session.get(url, headers=auth, verify=str(server.cert_path))  # connect and handshake
    start = time.perf_counter()
    for _ in range(20):
        assert session.get(url, headers=auth, verify=str(server.cert_path)).status_code == 200
    # with Nagle on and headers and body in two writes, each answer waited ~40 ms (0.8 s in all)
    assert time.perf_counter() - start < 0.5


def test_many_clients_at_once_each_request_one_transaction(server):
    from concurrent.futures import ThreadPoolExecutor

    import requests

    nsg = (
        f"{server.endpoint}/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/rg-jit-demo/"
        "providers/Microsoft.Network/networkSecurityGroups/snet-linux-nsg"
    )

    def put_rule(i: int) -> int:
        session = requests.Session()  # a client of its own: its own connection
        session.trust_env = False
        props = dict(protocol="Tcp", access="Allow", priority=200 + i, direction="Inbound")
        props.update(sourceAddressPrefix="198.51.100.0/24", destinationPortRange=str(8000 + i))
        return session.put(
            f"{nsg}/securityRules/app{i}?api-version=2023-09-01",
            json={"properties": props},
            headers={"Authorization": "Bearer x"},
            verify=str(server.cert_path),
        ).status_code

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(put_rule, range(16))) == [201] * 16
    names = {
        r["name"]
        for r in read_file(server.state_file).rules(nsg.split(":" + str(server.port), 1)[1])
    }
    assert names >= {f"app{i}" for i in range(16)}


def test_a_silent_client_does_not_hold_up_the_others(server):
    import socket

    import requests

    silent = socket.create_connection((server.host, server.port))  # connects, never says hello
    try:
        session = requests.Session()
        session.trust_env = False
        url = f"{server.endpoint}/metadata/endpoints?api-version=2022-09-01"
        assert session.get(url, verify=str(server.cert_path), timeout=5).status_code == 200
    finally:
        silent.close()


def no_key_folders(tmp_path) -> list[str]:
    return [p.name for p in tmp_path.glob("jitctl-emulator-*")]


def test_stop_removes_the_temporary_folder_with_the_key(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    srv = EmulatorServer(Backend(settings=Settings(propagation_delay=0)))
    srv.start()
    folder = srv.cert_path.parent
    assert (folder / "emulator-key.pem").is_file() and folder.parent == tmp_path
    srv.stop()
    assert not folder.exists() and no_key_folders(tmp_path) == []


@pytest.mark.parametrize(
    ("port", "line"),
    [
        (
            "in use",
            "jitctl: error: Port {port} on 127.0.0.1 cannot be used: Address already in use.\n"
            "Hint: Pick another with --port, or --port 0 for any free one.",
        ),
        (
            "65536",
            "jitctl: error: Invalid value for '--port': 65536 is not in the range 0<=x<=65535.\n"
            "Hint: Run 'jitctl emulator serve --help'.",
        ),
    ],
)
def test_serve_on_a_port_it_cannot_have_is_one_error_exit_2(tmp_path, monkeypatch, port, line):
    import socket
    import tempfile

    from click.testing import CliRunner

    from jitctl.cli.commands import cli

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        number = str(taken.getsockname()[1]) if port == "in use" else port
        r = CliRunner().invoke(cli, ["emulator", "serve", "--world", "empty", "--port", number])
    assert r.exit_code == 2
    assert r.stderr == line.format(port=number) + "\n" and r.stdout == ""
    assert no_key_folders(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM is POSIX's")
def test_a_killed_server_removes_its_key_folder(tmp_path):
    import signal

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jitctl", "emulator", "serve", "--port", "0", "--world", "empty"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(5)]  # printed at once, even to a pipe
        cert = next(x for x in lines if x.startswith("export REQUESTS_CA_BUNDLE="))
        folder = cert.strip().split("=", 1)[1].rsplit("/", 1)[0]
        assert os.path.isdir(folder) and no_key_folders(tmp_path) != []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert not os.path.exists(folder) and no_key_folders(tmp_path) == []
