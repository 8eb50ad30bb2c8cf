"""What reaches the .rdp file and ssh's argument list, for hostile user names and addresses."""

from __future__ import annotations

import os
import stat

import pytest
from click.testing import CliRunner

from jitctl.cli.commands import cli
from jitctl.errors import AzureError, BadInput
from jitctl.launch import (
    check_host,
    check_user,
    rdp_file_content,
    split_ssh_args,
    ssh_args,
    write_rdp_file,
)
from jitctl.model import PortRule
from jitctl.services.policies import enable
from tests.support import RecordingRunner, one_error, vm_ref

HOSTILE_USERS = [
    "azureuser\r\nfull address:s:evil.example:3389",
    "azureuser\nalternate shell:s:cmd.exe",
    "a\x1b]0;title\x07",
    "a\x00b",
    "a\u202eb",
    "-oProxyCommand=touch /tmp/pwned",
    "-l",
    "",
    " azureuser",
    "u" * 257,
]
HOSTILE_HOSTS = [
    "evil.example\r\nusername:s:admin",
    "-oProxyCommand=touch /tmp/pwned",
    "host name.example",
    "host;id.example",
    "",
    "a" * 64 + ".example",
    "x." * 130 + "example",
    "-leading.example",
    "trailing-.example",
]


@pytest.mark.parametrize("user", HOSTILE_USERS)
def test_hostile_user_never_reaches_the_rdp_file_or_ssh(user, tmp_path):
    with pytest.raises(BadInput):
        rdp_file_content("20.61.15.10", 3389, user)
    with pytest.raises(BadInput):
        write_rdp_file(tmp_path, "vm", "20.61.15.10", 3389, user)
    with pytest.raises(BadInput):
        ssh_args("ssh", "vm.example", 22, user, [])
    assert not (tmp_path / "rdp").exists() or not list((tmp_path / "rdp").iterdir())


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
def test_hostile_address_from_azure_is_refused(host):
    with pytest.raises(AzureError, match="not a host name"):
        check_host(host)
    with pytest.raises(AzureError):
        rdp_file_content(host, 3389, "azureuser")
    with pytest.raises(AzureError):
        ssh_args("ssh", host, 22, "azureuser", [])


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("20.61.15.10", "20.61.15.10"),
        (
            "vm-lnx01-demo.westeurope.cloudapp.azure.com",
            "vm-lnx01-demo.westeurope.cloudapp.azure.com",
        ),
        ("2001:DB8::1", "2001:db8::1"),
        ("host.example.", "host.example."),
    ],
)
def test_good_addresses(host, shown):
    assert check_host(host) == shown


def test_ipv6_address_is_bracketed_in_the_rdp_file():
    assert rdp_file_content("2001:db8::1", 3389, None).startswith(
        "full address:s:[2001:db8::1]:3389\r\n"
    )


def test_names_rdp_and_ssh_accept():
    assert check_user("CONTOSO\\alice", "rdp") == "CONTOSO\\alice"
    assert check_user("alice smith", "rdp") == "alice smith"
    assert check_user("alice@contoso.com", "ssh") == "alice@contoso.com"
    for bad in ("alice smith", "a;b", "$(id)", "a`id`", "a|b", "CONTOSO\\alice"):
        with pytest.raises(BadInput, match="shell characters"):
            check_user(bad, "ssh")
    assert check_user(None) is None


def test_exact_rdp_file(tmp_path):
    path = write_rdp_file(tmp_path, "..", "vm.example", 3389, "CONTOSO\\alice")
    assert path == tmp_path / "rdp" / "vm.rdp"  # a name of dots is no hidden file, no traversal
    assert path.read_bytes() == (
        b"full address:s:vm.example:3389\r\nusername:s:CONTOSO\\alice\r\n"
        b"prompt for credentials:i:1\r\nadministrative session:i:0\r\n"
        b"screen mode id:i:2\r\nauthentication level:i:2\r\n"
    )
    assert path.read_bytes().count(b"\r\n") == 6 and b"\n" not in path.read_bytes().replace(
        b"\r\n", b""
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], ["/usr/bin/ssh", "-p", "22", "--", "me@vm.example"]),
        (["uptime"], ["/usr/bin/ssh", "-p", "22", "--", "me@vm.example", "uptime"]),
        (
            ["-i", "key", "uptime", "-a"],
            ["/usr/bin/ssh", "-p", "22", "-i", "key", "--", "me@vm.example", "uptime", "-a"],
        ),
        (
            ["-vvi", "key", "-A", "ls", "-la"],
            ["/usr/bin/ssh", "-p", "22", "-vvi", "key", "-A", "--", "me@vm.example", "ls", "-la"],
        ),
        (
            ["-ikey", "-o", "ConnectTimeout=3", "--", "-x"],
            [
                "/usr/bin/ssh",
                "-p",
                "22",
                "-ikey",
                "-o",
                "ConnectTimeout=3",
                "--",
                "me@vm.example",
                "-x",
            ],
        ),
        (
            ["-L", "8080:localhost:80"],
            ["/usr/bin/ssh", "-p", "22", "-L", "8080:localhost:80", "--", "me@vm.example"],
        ),
    ],
)
def test_exact_ssh_arguments(extra, expected):
    # OpenSSH takes the first -p (the JIT port wins over one in extra) and, after '--', reads
    # the destination and then only the remote command: checked by hand with
    # `ssh -G -p 2222 -i key -- azureuser@vm.example uptime` (OpenSSH 9.2).
    assert ssh_args("/usr/bin/ssh", "vm.example", 22, "me", extra) == expected


def test_split_ssh_args_without_a_value_at_the_end():
    assert split_ssh_args(["-i"]) == (["-i"], [])
    assert split_ssh_args(["-", "x"]) == ([], ["-", "x"])


# --- through the CLI: refused before anything is requested -----------------------------------


@pytest.fixture
def connect_app(app, tmp_path):
    enable(
        app.gateway(),
        [vm_ref("vm-win01"), vm_ref("vm-lnx01")],
        [PortRule(3389), PortRule(22)],
        clock=app.clock,
    )
    app.runner = RecordingRunner()
    app.data_dir = tmp_path / "data"
    return app


def invoke(app, *args):
    return CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)


SRC = ["-g", "rg-jit-demo", "--source-ip", "198.51.100.7"]


@pytest.mark.parametrize("command", ["rdp", "ssh"])
@pytest.mark.parametrize("user", HOSTILE_USERS[:6])
def test_cli_refuses_hostile_user_before_any_request(connect_app, backend, command, user):
    vm = "vm-win01" if command == "rdp" else "vm-lnx01"
    before = len(backend.log)
    r = invoke(connect_app, command, vm, *SRC, "--user", user)
    assert r.exit_code == 2 and one_error(r.stderr) and r.stderr.startswith("jitctl: error:")
    assert "\x1b" not in r.stderr and "\r" not in r.stderr
    assert backend.log[before:] == [] and connect_app.runner.ran == []
    assert not (connect_app.data_dir / "rdp").exists()


@pytest.mark.parametrize("command", ["rdp", "ssh"])
def test_hostile_fqdn_from_azure_is_not_launched(connect_app, backend, command):
    for rid, res in backend.state["resources"].items():
        if "publicipaddresses" in rid:
            res["properties"]["dnsSettings"] = {"fqdn": "-oProxyCommand=id\r\nusername:s:x"}
            res["properties"].pop("ipAddress", None)
    vm = "vm-win01" if command == "rdp" else "vm-lnx01"
    r = invoke(connect_app, command, vm, *SRC, "--user", "azureuser")
    assert r.exit_code == 1 and "which is not a host name" in r.stderr
    *progress, error, _ = r.stderr.splitlines()  # the grant was made; the client is not started
    assert progress[0].startswith("Requested port") and error.startswith("jitctl: error: ")
    assert "\r" not in r.stderr and "\\x0d\\x0a" in error
    assert connect_app.runner.ran == []
    assert not (connect_app.data_dir / "rdp").exists() or not list(
        (connect_app.data_dir / "rdp").iterdir()
    )


def test_rdp_folder_is_private_even_if_it_was_not(connect_app):
    folder = connect_app.data_dir / "rdp"
    folder.mkdir(parents=True, mode=0o777)
    os.chmod(folder, 0o777)
    r = invoke(connect_app, "rdp", "vm-win01", *SRC, "--user", "azureuser", "--no-launch")
    assert r.exit_code == 0, r.stderr
    if os.name == "posix":
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "vm-win01.rdp").stat().st_mode) == 0o600
