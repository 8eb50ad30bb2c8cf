"""Start the remote desktop or ssh client: argument lists only, never a shell.

The Runner is injected so tests can check the exact command for each platform.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jitctl.errors import AzureError, BadInput, NotFound
from jitctl.files import private_dir, write_private
from jitctl.parsing import parse_port
from jitctl.textsafe import has_unsafe, printable

# Linux clients, first found wins; each opens a .rdp file.
LINUX_RDP = (("xfreerdp3", ()), ("xfreerdp", ()), ("remmina", ("-c",)))


class Runner(Protocol):
    platform: str

    def which(self, name: str) -> str | None: ...

    def start(self, args: Sequence[str]) -> None: ...

    def run(self, args: Sequence[str]) -> int: ...

    def spawn(self, args: Sequence[str]) -> Child: ...


class Child(Protocol):
    """A started client (subprocess.Popen has these)."""

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


@dataclass
class SystemRunner:
    platform: str = sys.platform

    def which(self, name: str) -> str | None:
        return shutil.which(name)

    def start(self, args: Sequence[str]) -> None:
        """Detached: the desktop client outlives jitctl."""
        windows = self.platform == "win32"
        subprocess.Popen(  # an argument list, never a shell
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            creationflags=getattr(subprocess, "DETACHED_PROCESS", 0) if windows else 0,
            start_new_session=not windows,
        )

    def run(self, args: Sequence[str]) -> int:
        return subprocess.call(list(args))  # an argument list, never a shell

    def spawn(self, args: Sequence[str]) -> Child:
        """Attached (the terminal is shared), for jitctl to keep access open while it runs."""
        return subprocess.Popen(list(args))  # an argument list, never a shell


# --- what reaches the client: checked, never passed through ---------------------------------
#
# The user name is the requester's text and the host comes from Azure: either could carry a
# CR/LF that adds lines to the .rdp file, or start with '-' and become an ssh option. Both are
# checked here, and the user name once more before anything is requested (check_user).

MAX_USER = 256
# Shell metacharacters: OpenSSH 9.6 and later refuses most of them in a command-line user name
# itself (they would reach a shell through %r in ProxyCommand or Match exec).
_SSH_USER_FORBIDDEN = set("'`\";&<>|(){}$\\")
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def check_user(user: str | None, protocol: str = "rdp") -> str | None:
    """The user name to connect as: refused (exit 2) when it could inject into a file or argv."""
    if user is None:
        return None
    shown = printable(user)
    if has_unsafe(user):
        raise BadInput(f"User name '{shown}' holds control characters.", "Give a plain name.")
    if not user.strip() or user != user.strip() or len(user) > MAX_USER:
        raise BadInput(
            f"User name '{shown}' is empty, too long or has spaces at an end.",
            f"Give a name of 1 to {MAX_USER} characters.",
        )
    if user.startswith("-"):
        raise BadInput(f"User name '{shown}' starts with '-'.", "Give the name without it.")
    if protocol == "ssh" and any(c.isspace() or c in _SSH_USER_FORBIDDEN for c in user):
        raise BadInput(
            f"User name '{shown}' has spaces or shell characters, which ssh refuses.",
            "Give the account's login name.",
        )
    return user


def check_host(host: str) -> str:
    """The VM's address (from Azure): an IP address or a DNS name, nothing else."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise AzureError(
            f"Azure gave '{printable(host)}' as the VM's address, which is not a host name.",
            "Check the VM's public IP address in Azure, or connect with --private.",
        )
    return host


def rdp_file_content(host: str, port: int, user: str | None) -> str:
    host, port, user = check_host(host), parse_port(port), check_user(user, "rdp")
    address = f"[{host}]" if ":" in host else host  # an IPv6 address, then its port
    lines = [
        f"full address:s:{address}:{port}",
        "prompt for credentials:i:1",
        "administrative session:i:0",
        "screen mode id:i:2",
        "authentication level:i:2",
    ]
    if user:
        lines.insert(1, f"username:s:{user}")
    # mstsc reads .rdp files as UTF-16 or ANSI; CRLF line ends are what it writes itself.
    return "\r\n".join(lines) + "\r\n"


def write_rdp_file(directory: Path, vm_name: str, host: str, port: int, user: str | None) -> Path:
    """The .rdp file holds connection details: written 0600 in a 0700 folder of the user's."""
    content = rdp_file_content(host, port, user)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in vm_name).lstrip(".")
    folder = private_dir(directory / "rdp", own=True)
    path = folder / f"{safe or 'vm'}.rdp"
    write_private(path, content.encode("utf-8"))
    return path


def rdp_command(runner: Runner, rdp_file: Path, wait: bool = False) -> list[str]:
    """The client for the platform; with `wait`, one that runs until the session ends (mstsc and
    xfreerdp do; macOS's open needs -W)."""
    if runner.platform == "win32":
        return ["mstsc", str(rdp_file)]
    if runner.platform == "darwin":
        return ["open", *(["-W"] if wait else []), str(rdp_file)]
    for name, flags in LINUX_RDP:
        exe = runner.which(name)
        if exe:
            return [exe, *flags, str(rdp_file)]
    # A program missing here is not Azure refusing (exit 6): it is not found (exit 4).
    raise NotFound(
        "No remote desktop client found (xfreerdp3, xfreerdp or remmina).",
        f"Install one, or open {rdp_file} yourself (it is written; --no-launch skips this).",
    )


# OpenSSH's options that take an argument (its getopt string, ssh.c).
_SSH_OPTIONS_WITH_ARGUMENT = set("bceilmopBDEFIJLOPQRSwW")


def split_ssh_args(extra: Sequence[str]) -> tuple[list[str], list[str]]:
    """The user's extra ssh arguments: options (before the destination) and the remote command
    (after it). The first word that is not an option, or a '--', starts the command."""
    options: list[str] = []
    i = 0
    while i < len(extra):
        word = extra[i]
        if word == "--":
            return options, list(extra[i + 1 :])
        if not word.startswith("-") or word == "-":
            break
        options.append(word)
        for pos, letter in enumerate(word[1:], start=1):
            if letter in _SSH_OPTIONS_WITH_ARGUMENT:
                if pos == len(word) - 1 and i + 1 < len(extra):  # its argument is the next word
                    i += 1
                    options.append(extra[i])
                break
        i += 1
    return options, list(extra[i:])


def ssh_args(exe: str, host: str, port: int, user: str | None, extra: Sequence[str]) -> list[str]:
    """ssh -p PORT [user's options] -- user@host [remote command]. OpenSSH takes the first -p
    it reads, so the JIT port wins; after '--' it reads the destination as a destination,
    whatever it holds, and no option after it."""
    host, port, user = check_host(host), parse_port(port), check_user(user, "ssh")
    options, command = split_ssh_args(extra)
    destination = f"{user}@{host}" if user else host
    return [exe, "-p", str(port), *options, "--", destination, *command]


def ssh_command(
    runner: Runner, host: str, port: int, user: str | None, extra: Sequence[str]
) -> list[str]:
    exe = runner.which("ssh")
    if not exe:
        raise NotFound(
            "No ssh client found.", "Install OpenSSH, or use --no-launch and connect yourself."
        )
    return ssh_args(exe, host, port, user, extra)


@dataclass(frozen=True)
class ConnectResult:
    """Where to connect, until when, and what was started (if anything)."""

    ready: Any  # jitctl.services.connect.AccessReady
    protocol: str  # rdp | ssh
    rdp_file: str | None
    command: tuple[str, ...]
    launched: bool
    exit_status: int | None = None


# While a client runs: given `running` (is the client still there?), returns when it is not.
KeepAlive = Callable[[Callable[[], bool]], object]


def run_keeping(runner: Runner, command: Sequence[str], keep: KeepAlive) -> int:
    """Run the client, keeping access open while it runs; its exit status."""
    child = runner.spawn(command)
    try:
        keep(lambda: child.poll() is None)
    finally:
        status = child.wait()  # Ctrl-C reached the client too: wait for it to finish
    return status


def connect_rdp(
    runner: Runner,
    data_dir: Path,
    ready: Any,
    user: str | None,
    launch: bool,
    keep: KeepAlive | None = None,
    shown: Callable[[ConnectResult], None] | None = None,
) -> ConnectResult:
    """Write the .rdp file and start the client; with `keep`, wait for the client, keeping
    access open meanwhile (`shown` gets the result once the client is started)."""
    path = write_rdp_file(data_dir, ready.vm_name, ready.connect_host, ready.connect_port, user)
    command = rdp_command(runner, path, wait=keep is not None) if launch else []
    result = ConnectResult(ready, "rdp", str(path), tuple(command), launch)
    if launch and keep is not None:
        if shown is not None:
            shown(result)
        return dataclasses.replace(result, exit_status=run_keeping(runner, command, keep))
    if launch:
        runner.start(command)
    return result


def connect_ssh(
    runner: Runner,
    ready: Any,
    user: str | None,
    extra: Sequence[str],
    launch: bool,
    keep: KeepAlive | None = None,
) -> ConnectResult:
    if not launch:
        command = ssh_args("ssh", ready.connect_host, ready.connect_port, user, extra)
        return ConnectResult(ready, "ssh", None, tuple(command), False)
    command = ssh_command(runner, ready.connect_host, ready.connect_port, user, extra)
    status = run_keeping(runner, command, keep) if keep else runner.run(command)
    return ConnectResult(ready, "ssh", None, tuple(command), True, status)
