"""ssh-config: a managed block of Host entries, idempotent, scoped, and safe with Azure's names."""

from __future__ import annotations

import json
import os
import shlex
import stat
import sys

import pytest
from click.testing import CliRunner

from jitctl.cli.commands import cli
from jitctl.errors import BadInput
from jitctl.ids import VmRef
from jitctl.model import PortRule
from jitctl.services.policies import disable, enable
from jitctl.services.sshconfig import proxy_command
from tests.support import SUB, RecordingRunner, vm_ref

DEMO_LNX = vm_ref("vm-lnx01")


@pytest.fixture
def world():
    return "docs"  # vm-lnx01 in rg-jit-demo and in rg-prod


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    return home


@pytest.fixture
def ssh_app(app, home):
    app.runner = RecordingRunner()
    enable(app.gateway(), [DEMO_LNX], [PortRule(22)], clock=app.clock)
    enable(
        app.gateway(), [vm_ref("vm-win01")], [PortRule(3389)], clock=app.clock
    )  # no port 22: no entry
    return app


def invoke(app, *args):
    return CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)


def proxy(name: str, group: str) -> str:
    argv = [sys.executable, "-m", "jitctl", "ssh-proxy", name, "-g", group, "-s", SUB]
    return shlex.join([*argv, "--port", "22", "--emulator"])


def block(*entries: str) -> str:
    return (
        "# BEGIN jitctl managed (written by 'jitctl ssh-config'; changes here are replaced)\n"
        + "\n".join(entries)
        + "# END jitctl managed\n"
    )


def host(alias: str, name: str, group: str, user: str | None = "azureuser") -> str:
    vm_id = vm_ref(name).id.replace("rg-jit-demo", group)
    return (
        f"# vm: {vm_id}\nHost {alias}\n    HostName {alias}\n"
        + (f"    User {user}\n" if user else "")
        + f"    ProxyCommand {proxy(name, group)}\n"
    )


def test_block_appended_user_text_kept_byte_for_byte_and_idempotent(ssh_app, home):
    config = home / ".ssh" / "config"
    config.parent.mkdir(mode=0o755)
    mine = "Host *\r\n    ServerAliveInterval 30\r\n\r\nHost bastion\r\n  HostName 192.0.2.1"
    config.write_bytes(mine.encode())
    r = invoke(ssh_app, "ssh-config", "-g", "rg-jit-demo", "--user", "azureuser")
    assert r.exit_code == 0, r.output
    assert r.stdout == f"Wrote {config}: 1 host(s); added vm-lnx01\n"
    text = config.read_bytes().decode()
    assert text.startswith(mine + "\r\n\r\n")  # the file's own line ends, its text untouched
    assert text[len(mine) + 4 :] == block(host("vm-lnx01", "vm-lnx01", "rg-jit-demo")).replace(
        "\n", "\r\n"
    )
    if os.name == "posix":
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    before = config.read_bytes()
    r = invoke(ssh_app, "ssh-config", "-g", "rg-jit-demo", "--user", "azureuser")
    assert r.stdout == f"Up to date: {config}: 1 host(s)\n" and config.read_bytes() == before


def test_scopes_keep_other_groups_and_gone_vms_are_removed(ssh_app, home):
    config = home / ".ssh" / "config"
    enable(
        ssh_app.gateway(),
        [VmRef(SUB, "rg-prod", "vm-lnx01")],
        [PortRule(22)],
        clock=ssh_app.clock,
    )
    assert invoke(ssh_app, "ssh-config", "-g", "rg-prod").exit_code == 0
    assert invoke(ssh_app, "ssh-config", "-g", "rg-jit-demo").exit_code == 0
    demo = host("vm-lnx01.rg-jit-demo", "vm-lnx01", "rg-jit-demo", None)
    prod = host("vm-lnx01", "vm-lnx01", "rg-prod", None)
    assert config.read_text() == block(prod, demo)  # sorted by Host name; rg-prod's kept
    disable(
        ssh_app.gateway(), DEMO_LNX, clock=ssh_app.clock
    )  # out of JIT: its entry goes, rg-prod's stays
    r = invoke(ssh_app, "-o", "json", "ssh-config", "-g", "rg-jit-demo")
    data = json.loads(r.stdout)
    assert data["removed"] == ["vm-lnx01.rg-jit-demo"] and data["hosts"] == ["vm-lnx01"]
    assert config.read_text() == block(prod)


def test_dry_run_shows_the_diff_and_writes_nothing(ssh_app, home):
    r = invoke(ssh_app, "ssh-config", "-g", "rg-jit-demo", "--dry-run")
    config = home / ".ssh" / "config"
    assert r.exit_code == 0 and not config.exists()
    lines = r.stdout.splitlines()
    assert lines[:2] == [f"--- {config}", f"+++ {config}"]
    assert "+Host vm-lnx01" in lines and lines[-1] == "(dry run: nothing written)"


def test_file_is_included_at_the_top_of_the_config(ssh_app, home, tmp_path):
    config = home / ".ssh" / "config"
    config.parent.mkdir()
    config.write_text("Host old\n    User me\n")
    target = tmp_path / "jitctl.conf"
    for _ in range(2):
        r = invoke(ssh_app, "ssh-config", "-g", "rg-jit-demo", "--file", str(target))
        assert r.exit_code == 0, r.output
    assert (
        config.read_text()
        == block(f'Include "{target.as_posix()}"\n') + "\nHost old\n    User me\n"
    )
    assert target.read_text() == block(host("vm-lnx01", "vm-lnx01", "rg-jit-demo", None))


def test_a_symlinked_config_is_written_through(ssh_app, home, tmp_path):
    real = tmp_path / "dotfiles" / "ssh_config"
    real.parent.mkdir()
    real.write_text("Host a\n")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "config").symlink_to(real)
    assert invoke(ssh_app, "ssh-config", "-g", "rg-jit-demo").exit_code == 0
    assert (home / ".ssh" / "config").is_symlink() and "Host vm-lnx01" in real.read_text()


def test_a_damaged_block_is_refused_and_left_alone(ssh_app, home):
    config = home / ".ssh" / "config"
    config.parent.mkdir()
    config.write_text("# BEGIN jitctl managed\nHost x\n")
    r = invoke(ssh_app, "ssh-config", "-g", "rg-jit-demo")
    assert r.exit_code == 2 and "has a damaged jitctl block" in r.stderr
    assert config.read_text() == "# BEGIN jitctl managed\nHost x\n"


def test_a_vm_name_cannot_inject_directives(ssh_app, backend, home):
    from jitctl.emulator.seeder import Seeder
    from jitctl.model import JitPolicy, PolicyVm

    s = Seeder(backend)
    nic = ssh_app.gateway().get_vm(DEMO_LNX).nics[0].id
    bad = s.vm("evil%h*", [nic], os_type="Linux")
    gw = ssh_app.gateway()
    policy = gw.get_policy(SUB, "rg-jit-demo", "westeurope", "default")
    gw.put_policy(
        JitPolicy(
            SUB,
            "rg-jit-demo",
            "westeurope",
            "default",
            (*policy.vms, PolicyVm(bad, (PortRule(22),))),
        )
    )
    r = invoke(ssh_app, "ssh-config", "-g", "rg-jit-demo")
    assert r.exit_code == 0, r.output
    assert "Skipped VM 'evil%h*': its name cannot be an ssh Host name." in r.stderr
    assert "evil" not in (home / ".ssh" / "config").read_text()
    r = invoke(ssh_app, "ssh-config", "-g", "rg-jit-demo", "--user", "a b")
    assert r.exit_code == 2


def test_proxy_command_quoting_posix_and_windows():
    argv = ["/opt/my tools/py'thon", "-m", "jitctl", "ssh-proxy", "vm1", "-g", "rg(1)"]
    assert proxy_command(argv, "linux") == (
        "'/opt/my tools/py'\"'\"'thon' -m jitctl ssh-proxy vm1 -g 'rg(1)'"
    )
    win = [r"C:\Program Files\Python 3.12\python.exe", "-m", "jitctl", "ssh-proxy", "vm1"]
    assert proxy_command(win, "win32") == (
        r'"C:\Program Files\Python 3.12\python.exe" -m jitctl ssh-proxy vm1'
    )
    assert proxy_command([r"C:\100%\python.exe"], "win32") == r"C:\100%%\python.exe"  # ssh's token
    with pytest.raises(BadInput):
        proxy_command(["a\nProxyJump evil"], "linux")


def test_windows_branch_writes_windows_command_lines(ssh_app, home, monkeypatch):
    monkeypatch.setattr(sys, "executable", r"C:\Program Files\Python\python.exe")
    ssh_app.runner = RecordingRunner(platform="win32")
    assert invoke(ssh_app, "ssh-config", "-g", "rg-jit-demo").exit_code == 0
    line = next(x for x in (home / ".ssh" / "config").read_text().splitlines() if "Proxy" in x)
    assert line == (
        r'    ProxyCommand "C:\Program Files\Python\python.exe" -m jitctl ssh-proxy vm-lnx01 '
        f"-g rg-jit-demo -s {SUB} --port 22 --emulator"
    )


def test_group_and_all_subscriptions_exclude_each_other(ssh_app, home):
    r = invoke(ssh_app, "ssh-config", "-g", "rg-prod", "--all-subscriptions")
    assert r.exit_code == 2
    r = invoke(ssh_app, "-o", "json", "ssh-config", "--all-subscriptions", "--dry-run")
    assert json.loads(r.stdout)["hosts"] == ["vm-lnx01"]


def proxy_line(home) -> str:
    text = (home / ".ssh" / "config").read_text()
    return next(x for x in text.splitlines() if "ProxyCommand" in x).strip()


def test_via_broker_writes_proxy_commands_that_ask_the_broker_quoted(
    ssh_app, home, tmp_path, monkeypatch
):
    url = "https://jit.contoso.com/team a?x=1&y=%41"
    r = invoke(ssh_app, "ssh-config", "-g", "rg-jit-demo", "--via-broker", "--broker", url)
    assert r.exit_code == 0, r.output
    argv = [sys.executable, "-m", "jitctl", "ssh-proxy", "vm-lnx01", "-g", "rg-jit-demo", "-s"]
    argv += [SUB, "--port", "22", "--via-broker", "--broker", url, "--emulator"]
    assert proxy_line(home) == "ProxyCommand " + shlex.join(argv).replace("%", "%%")
    assert shlex.split(proxy_line(home).replace("%%", "%"))[1:] == argv
    # from the config file, and --direct (or JITCTL_VIA_BROKER=0) over it
    path = tmp_path / "config.toml"
    path.write_text("[ssh-config]\nvia-broker = true\n")
    monkeypatch.setenv("JITCTL_CONFIG", str(path))
    assert invoke(ssh_app, "ssh-config", "-g", "rg-jit-demo").exit_code == 0
    assert proxy_line(home) == "ProxyCommand " + proxy("vm-lnx01", "rg-jit-demo").replace(
        "--emulator", "--via-broker --emulator"
    )
    assert invoke(ssh_app, "ssh-config", "-g", "rg-jit-demo", "--direct").exit_code == 0
    assert proxy_line(home) == "ProxyCommand " + proxy("vm-lnx01", "rg-jit-demo")
