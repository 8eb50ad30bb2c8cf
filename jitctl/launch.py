"""Start the remote desktop or ssh client: argument lists only, never a shell.

The Runner is injected so tests can check the exact command for each platform.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jitctl.errors import Refused
from jitctl.files import write_private

# Linux clients, first found wins; each opens a .rdp file.
LINUX_RDP = (("xfreerdp3", ()), ("xfreerdp", ()), ("remmina", ("-c",)))


class Runner(Protocol):
    platform: str

    def which(self, name: str) -> str | None: ...

    def start(self, args: Sequence[str]) -> None: ...

    def run(self, args: Sequence[str]) -> int: ...


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


def rdp_file_content(host: str, port: int, user: str | None) -> str:
    lines = [
        f"full address:s:{host}:{port}",
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
    """The .rdp file holds connection details: written 0600 in the user's data directory."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in vm_name)
    path = directory / "rdp" / f"{safe}.rdp"
    write_private(path, rdp_file_content(host, port, user).encode("utf-8"))
    return path


def rdp_command(runner: Runner, rdp_file: Path) -> list[str]:
    if runner.platform == "win32":
        return ["mstsc", str(rdp_file)]
    if runner.platform == "darwin":
        return ["open", str(rdp_file)]
    for name, flags in LINUX_RDP:
        exe = runner.which(name)
        if exe:
            return [exe, *flags, str(rdp_file)]
    raise Refused(
        "No remote desktop client found (xfreerdp3, xfreerdp or remmina).",
        f"Install one, or open {rdp_file} yourself (it is written; --no-launch skips this).",
    )


def ssh_command(
    runner: Runner, host: str, port: int, user: str | None, extra: Sequence[str]
) -> list[str]:
    exe = runner.which("ssh")
    if not exe:
        raise Refused(
            "No ssh client found.", "Install OpenSSH, or use --no-launch and connect yourself."
        )
    return [exe, "-p", str(port), f"{user}@{host}" if user else host, *extra]


@dataclass(frozen=True)
class ConnectResult:
    """Where to connect, until when, and what was started (if anything)."""

    ready: Any  # jitctl.services.connect.AccessReady
    protocol: str  # rdp | ssh
    rdp_file: str | None
    command: tuple[str, ...]
    launched: bool
    exit_status: int | None = None


def connect_rdp(
    runner: Runner, data_dir: Path, ready: Any, user: str | None, launch: bool
) -> ConnectResult:
    path = write_rdp_file(data_dir, ready.vm_name, ready.connect_host, ready.connect_port, user)
    command = rdp_command(runner, path) if launch else []
    if launch:
        runner.start(command)
    return ConnectResult(ready, "rdp", str(path), tuple(command), launch)


def connect_ssh(
    runner: Runner, ready: Any, user: str | None, extra: Sequence[str], launch: bool
) -> ConnectResult:
    if not launch:
        command = [
            "ssh",
            "-p",
            str(ready.connect_port),
            f"{user}@{ready.connect_host}" if user else ready.connect_host,
            *extra,
        ]
        return ConnectResult(ready, "ssh", None, tuple(command), False)
    command = ssh_command(runner, ready.connect_host, ready.connect_port, user, extra)
    return ConnectResult(ready, "ssh", None, tuple(command), True, runner.run(command))
