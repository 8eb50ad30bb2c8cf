"""The pre-RDP helper: reuse or request, wait, connect; launcher per platform via a fake runner."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from click.testing import CliRunner

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.clock import FakeClock
from jitctl.errors import ExitCode, NotFound
from jitctl.launch import rdp_command, rdp_file_content, ssh_command, write_rdp_file
from jitctl.model import JitPolicy, PolicyVm, PortRule
from jitctl.publicip import EMULATED_NOTE
from jitctl.services.access import request_access
from jitctl.services.connect import AccessRequest, ensure_access
from jitctl.services.policies import enable
from tests.support import RG, SUB, vm_ref

G = ["-g", "rg-jit-demo"]
WIN, LNX = vm_ref("vm-win01"), vm_ref("vm-lnx01")


@dataclass
class FakeRunner:
    platform: str = "linux"
    installed: dict[str, str] = field(default_factory=dict)
    started: list[list[str]] = field(default_factory=list)
    ran: list[list[str]] = field(default_factory=list)
    status: int = 0

    def which(self, name):
        return self.installed.get(name)

    def start(self, args):
        assert isinstance(args, list)  # an argument list: never a shell string
        self.started.append(args)

    def run(self, args):
        assert isinstance(args, list)
        self.ran.append(args)
        return self.status


@pytest.fixture
def connect_app(app, backend, tmp_path):
    backend.settings.propagation_delay = 20
    app.runner = FakeRunner(installed={"xfreerdp": "/usr/bin/xfreerdp", "ssh": "/usr/bin/ssh"})
    app.data_dir = tmp_path / "data"
    app.ip_fetch = lambda url, timeout: "198.51.100.7\n"  # never asked on the emulator
    # the set-up write confirms on its own fake clock, so the scenario's clock starts at 09:00
    enable(app.gateway(), [WIN, LNX], [PortRule(3389), PortRule(22)], clock=FakeClock())
    return app


def invoke(app, *args):
    return CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)


# --- launcher ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "installed", "expected"),
    [
        ("win32", {}, ["mstsc", "{f}"]),
        ("darwin", {}, ["open", "{f}"]),
        (
            "linux",
            {"xfreerdp": "/usr/bin/xfreerdp", "remmina": "/usr/bin/remmina"},
            ["/usr/bin/xfreerdp", "{f}"],
        ),
        (
            "linux",
            {"xfreerdp3": "/usr/bin/xfreerdp3", "xfreerdp": "/usr/bin/xfreerdp"},
            ["/usr/bin/xfreerdp3", "{f}"],
        ),
        ("linux", {"remmina": "/usr/bin/remmina"}, ["/usr/bin/remmina", "-c", "{f}"]),
    ],
)
def test_rdp_command_per_platform(tmp_path, platform, installed, expected):
    f = tmp_path / "vm.rdp"
    assert rdp_command(FakeRunner(platform, installed), f) == [x.format(f=f) for x in expected]


def test_no_rdp_client_is_not_found_with_the_file_named(tmp_path):
    with pytest.raises(NotFound, match="No remote desktop client found"):
        rdp_command(FakeRunner("linux", {}), tmp_path / "vm.rdp")


def test_rdp_file_content_and_mode(tmp_path):
    path = write_rdp_file(tmp_path, "vm/../x", "20.61.15.10", 3389, "azureuser")
    assert path.parent == tmp_path / "rdp" and path.name == "vm_.._x.rdp"
    assert path.read_bytes().decode() == (
        "full address:s:20.61.15.10:3389\r\nusername:s:azureuser\r\nprompt for credentials:i:1\r\n"
        "administrative session:i:0\r\nscreen mode id:i:2\r\nauthentication level:i:2\r\n"
    )
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "username" not in rdp_file_content("h", 1, None)


def test_ssh_command():
    runner = FakeRunner(
        installed={"ssh": "C:\\Windows\\System32\\OpenSSH\\ssh.exe"}, platform="win32"
    )
    assert ssh_command(runner, "vm.example", 22, "me", ["-i", "k"]) == [
        "C:\\Windows\\System32\\OpenSSH\\ssh.exe",
        "-p",
        "22",
        "-i",
        "k",
        "--",
        "me@vm.example",
    ]
    with pytest.raises(NotFound, match="No ssh client"):
        ssh_command(FakeRunner(), "h", 22, None, [])


# --- ensure_access -----------------------------------------------------------------------------


def test_new_grant_then_reuse_then_rerequest_when_too_little_left(connect_app, backend, clock):
    gw = connect_app.gateway()
    first = ensure_access(gw, AccessRequest(WIN, "198.51.100.7", 3389), clock)
    assert not first.reused and first.connect_host == "20.61.15.10" and first.via == "public"
    assert 20 <= sum(clock.slept) <= 30
    posts = sum(e.method == "POST" for e in backend.log)
    again = ensure_access(gw, AccessRequest(WIN, "198.51.100.7", 3389), clock)
    assert again.reused and sum(e.method == "POST" for e in backend.log) == posts  # no new request
    clock.advance(hours=2, minutes=50)  # 10 minutes left < 15
    third = ensure_access(gw, AccessRequest(WIN, "198.51.100.7", 3389), clock)
    assert not third.reused and sum(e.method == "POST" for e in backend.log) == posts + 1


def test_other_source_does_not_reuse(connect_app, clock):
    gw = connect_app.gateway()
    ensure_access(gw, AccessRequest(WIN, "198.51.100.7", 3389), clock)
    assert not ensure_access(gw, AccessRequest(WIN, "198.51.100.8", 3389), clock).reused


def test_private_and_firewall_targets(connect_app, clock):
    gw = connect_app.gateway()
    assert (
        ensure_access(gw, AccessRequest(LNX, "198.51.100.7", 22, private=True), clock).connect_host
        == "10.10.2.4"
    )
    lnx = ensure_access(gw, AccessRequest(LNX, "198.51.100.7", 22), clock)
    assert lnx.connect_host == "vm-lnx01-demo.westeurope.cloudapp.azure.com"  # DNS name preferred
    policy = gw.get_policy(SUB, RG, "westeurope", "default")
    fw = tuple(
        PolicyVm(v.id, v.ports, "52.1.2.3") if v.id.endswith("vm-win01") else v for v in policy.vms
    )
    gw.put_policy(JitPolicy(SUB, RG, "westeurope", "default", fw))
    # the policy names a firewall that is not there: its DNAT rule decides, so access never is
    # effective (the firewall world's tests: the firewall's address and mapped port)
    from jitctl.errors import TimedOut

    with pytest.raises(
        TimedOut, match=r"the Azure Firewall with address 52\.1\.2\.3 cannot be read"
    ):
        ensure_access(
            gw, AccessRequest(WIN, "198.51.100.7", 3389, timeout=timedelta(seconds=10)), clock
        )


def test_superseded_grant_never_becomes_effective(connect_app, backend, clock):
    """Someone else's newer request for the same VM and port replaces ours during the wait."""
    from jitctl.errors import TimedOut

    gw = connect_app.gateway()
    request_access(gw, WIN, "198.51.100.7", clock.now(), clock=clock)
    request_access(
        gw, WIN, "198.51.100.99", clock.now(), clock=clock
    )  # same second: both rules due together
    from jitctl.services.verify import wait_until_effective

    with pytest.raises(TimedOut):
        wait_until_effective(gw, WIN, "198.51.100.7", clock, [3389], timeout=60)
    history = gw.get_policy(SUB, RG, "westeurope", "default").requests
    assert history[0].vms[0].ports[0].status_reason == "NewerRequestInitiated"


# --- CLI ---------------------------------------------------------------------------------------


def test_rdp_launches_xfreerdp_with_the_file(connect_app):
    r = invoke(connect_app, "rdp", "vm-win01", *G, "--user", "azureuser")
    assert r.exit_code == 0, r.output
    rdp_file = connect_app.data_dir / "rdp" / "vm-win01.rdp"
    assert connect_app.runner.started == [["/usr/bin/xfreerdp", str(rdp_file)]]
    assert r.stderr == f"{EMULATED_NOTE}\nRequested port 3389 for 203.0.113.7 until 12:00 UTC.\n"
    assert r.stdout.splitlines() == [
        "vm-win01: rdp to 20.61.15.10:3389 (public address), access for 203.0.113.7 until 2026-01-05 12:00 UTC (2h59m left)",
        f"  rdp file: {rdp_file}",
        f"  started: /usr/bin/xfreerdp {rdp_file}",
    ]


def test_rdp_windows_branch(connect_app):
    connect_app.runner = FakeRunner(platform="win32")
    r = invoke(connect_app, "rdp", "vm-win01", *G, "--source-ip", "198.51.100.7")
    assert r.exit_code == 0
    assert connect_app.runner.started == [
        ["mstsc", str(connect_app.data_dir / "rdp" / "vm-win01.rdp")]
    ]


def test_rdp_without_a_client_exits_4_not_6(connect_app):
    # Azure refused nothing (exit 6 would say so): a program is missing on this machine.
    connect_app.runner = FakeRunner(platform="linux")
    r = invoke(connect_app, "rdp", "vm-win01", *G, "--source-ip", "198.51.100.7")
    assert r.exit_code == ExitCode.NOT_FOUND == 4
    rdp_file = connect_app.data_dir / "rdp" / "vm-win01.rdp"
    assert r.stderr.splitlines()[-2:] == [
        "jitctl: error: No remote desktop client found (xfreerdp3, xfreerdp or remmina).",
        f"Hint: Install one, or open {rdp_file} yourself (it is written; --no-launch skips this).",
    ]


def test_ssh_without_a_client_exits_4(connect_app):
    connect_app.runner = FakeRunner(platform="linux")
    r = invoke(connect_app, "ssh", "vm-lnx01", *G, "--source-ip", "198.51.100.7")
    assert r.exit_code == ExitCode.NOT_FOUND
    assert r.stderr.splitlines()[-2:] == [
        "jitctl: error: No ssh client found.",
        "Hint: Install OpenSSH, or use --no-launch and connect yourself.",
    ]


def test_rdp_no_launch_json(connect_app):
    r = invoke(connect_app, "-o", "json", "rdp", "vm-win01", *G, "--no-launch", "--duration", "1h")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["launched"] is False and data["command"] == [] and connect_app.runner.started == []
    assert (
        data["ready"]["connect_host"] == "20.61.15.10"
        and data["ready"]["end_time"] == "2026-01-05T10:00:00Z"
    )
    assert data["rdp_file"].endswith("vm-win01.rdp")


def test_ssh_passes_args_and_exit_status(connect_app):
    connect_app.runner.status = 255
    r = invoke(
        connect_app, "ssh", "vm-lnx01", *G, "--user", "azureuser", "--", "-i", "key", "uptime"
    )
    assert r.exit_code == 255
    assert connect_app.runner.ran == [
        [
            "/usr/bin/ssh",
            "-p",
            "22",
            "-i",
            "key",
            "--",
            "azureuser@vm-lnx01-demo.westeurope.cloudapp.azure.com",
            "uptime",
        ]
    ]


def test_rdp_timeout_exit_8(connect_app, backend):
    backend.settings.propagation_delay = 10_000
    r = invoke(connect_app, "rdp", "vm-win01", *G, "--timeout", "30s")
    assert r.exit_code == 8 and "was not effective after 30s" in r.stderr
    assert connect_app.runner.started == []


def offline(url, timeout):
    raise OSError("network unreachable")


def test_rdp_offline_without_source_ip_against_azure_is_an_error(connect_app):
    azure = App(subscription=SUB, subscriptions=(SUB,), ip_fetch=offline, runner=connect_app.runner)
    r = invoke(azure, "rdp", "vm-win01", *G)  # refused before any call to Azure
    assert r.exit_code == 1
    assert r.stderr == (
        "jitctl: error: Cannot find this machine's public IP address: no echo service answered "
        "(offline?).\nHint: Pass --source-ip with your public IPv4 address.\n"
    )
    assert connect_app.runner.started == []


def test_rdp_offline_against_the_emulator_requests_for_the_documentation_address(connect_app):
    connect_app.ip_fetch = offline
    r = invoke(connect_app, "-o", "json", "rdp", "vm-win01", *G, "--no-launch")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.splitlines()[0] == (
        "Emulator: requesting for 203.0.113.7 (a documentation address: the emulated VMs see no "
        "real one, so this machine's address is not looked up). Pass --source-ip to choose "
        "another."
    )
    assert json.loads(r.stdout)["ready"]["source"] == "203.0.113.7"


def test_status_and_history(connect_app, clock):
    invoke(connect_app, "rdp", "vm-win01", *G, "--no-launch", "--justification", "INC-9")
    r = invoke(connect_app, "status")
    assert r.stdout.splitlines() == [
        "GROUP: rg-jit-demo",  # status over the subscription names the group (folded: one)
        "VM        PORT  SOURCE       STATE   UNTIL                 LEFT",
        "vm-win01  3389  203.0.113.7  active  2026-01-05 12:00 UTC  2h59m",
    ]
    assert invoke(connect_app, "status", "vm-lnx01", *G).stdout == "No active grants.\n"
    r = invoke(connect_app, "history", "vm-win01", *G)
    assert r.stdout.splitlines() == [  # too wide for 100 columns: who and why go under the row
        "GROUP: rg-jit-demo",
        "WHEN (UTC)              VM        PORT  SOURCE       STATE",
        "2026-01-05 09:00-12:00  vm-win01  3389  203.0.113.7  active",
        "  requestor: jitctl-emulator@contoso.com; justification: INC-9",
    ]
    clock.advance(hours=3)
    assert invoke(connect_app, "status", "-g", "rg-jit-demo").stdout == "No active grants.\n"
    assert "203.0.113.7  expired\n" in invoke(connect_app, "history", "vm-win01", *G).stdout
    assert invoke(connect_app, "history", "vm-ghost", *G).exit_code == 4


def test_system_runner_starts_real_programs_without_a_shell(tmp_path):
    import sys
    import time

    from jitctl.launch import SystemRunner

    runner = SystemRunner()
    assert runner.which("definitely-not-a-program-xyz") is None
    assert runner.run([sys.executable, "-c", "raise SystemExit(3)"]) == 3
    marker = tmp_path / "started"
    # a shell would expand this; an argument list passes it through untouched
    runner.start(
        [
            sys.executable,
            "-c",
            "import sys, pathlib; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])",
            str(marker),
            "$HOME;echo",
        ]
    )
    for _ in range(100):
        if marker.exists() and marker.read_text():
            break
        time.sleep(0.05)
    assert marker.read_text() == "$HOME;echo"
