"""ssh-proxy, ssh-config, tunnel: plain `ssh vm` and local ports, with access got on the way."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from jitctl.app import App
from jitctl.cli.connect_cmds import ConnectRequest, connect_options, keeper, ready_access
from jitctl.cli.globalopts import CONTEXT, where_options
from jitctl.cli.options import group_option
from jitctl.cli.output import emit, warn
from jitctl.cli.paramtypes import PortType
from jitctl.errors import JitctlError, Refused


def open_connection(ready: Any) -> Any:
    """A socket to where access was opened; a refusal says what is (and is not) the cause."""
    from jitctl.relay import connect

    try:
        return connect(ready.connect_host, ready.connect_port)
    except OSError as err:
        raise JitctlError(
            f"Access to {ready.vm_name} is effective, but {ready.connect_host}:"
            f"{ready.connect_port} did not answer: {err.strerror or err}.",
            f"Check that the VM runs and serves port {ready.port}.",
        ) from None


def _end_stdout() -> None:
    """The VM finished sending: close the pipe to ssh (fd 1 now points to the null device, so
    nothing later can write into the connection)."""
    stream = sys.stdout.buffer
    stream.flush()
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not a real file (tests): nothing to close
        return
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), fd)


def while_running(work: Callable[[], Any], keep: Callable[[Callable[[], bool]], Any] | None) -> Any:
    """Run `work`; with `keep`, in a thread, keeping access open until it returns."""
    if keep is None:
        return work()
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(work()), daemon=True)
    thread.start()
    keep(thread.is_alive)
    thread.join()
    return out[0] if out else None


@click.command("ssh-proxy", context_settings=CONTEXT)
@connect_options(22, client=False)
@click.pass_obj
def ssh_proxy(app: App, req: ConnectRequest) -> None:
    """For ssh's ProxyCommand: get access, wait until it is live, relay stdin and stdout to the VM.

    Only the connection's bytes go to stdout (notes and errors go to stderr, and no document is
    written). Exit 0 when the connection ended; the usual exit codes when access could not be
    had. In ~/.ssh/config, `ProxyCommand jitctl ssh-proxy vm-lnx01 -g rg-prod`; `jitctl
    ssh-config` writes such Host entries.

    \b
    Example:
      jitctl ssh-proxy vm-lnx01 -g rg-prod --keep-alive
    """
    from jitctl.relay import relay_stdio

    app.output = "none"  # stdout is the connection: not even an error document goes there
    ready = ready_access(app, req)
    sock = open_connection(ready)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    keep = keeper(app, req, ready) if req.keep_alive else None
    while_running(lambda: relay_stdio(sock, stdin, stdout, _end_stdout), keep)


@dataclass(frozen=True)
class TunnelOpen:
    """Where to connect locally, and where it leads."""

    vm_id: str
    local_address: str
    local_port: int
    remote_host: str
    remote_port: int
    end_time: datetime
    rdp_file: str | None = None


@click.command(context_settings=CONTEXT)
@connect_options(3389, client=False)
@click.option(
    "--local-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Local port on 127.0.0.1 (0: a free one).",
)
@click.option("--rdp", is_flag=True, help="Open the remote desktop client on the tunnel.")
@click.option("--user", help="User name for the .rdp file (with --rdp).")
@click.pass_obj
def tunnel(app: App, req: ConnectRequest, local_port: int, rdp: bool) -> None:
    """Forward a port on 127.0.0.1 to the VM once access is live, until Ctrl-C.

    For clients that cannot use a ProxyCommand (RDP clients, database tools). Listens on
    127.0.0.1 only, accepts several connections, and writes where to connect as the document.
    With --rdp, opens mstsc (Windows), open (macOS) or xfreerdp/remmina (Linux) on the tunnel and
    stops when it exits.

    \b
    Example:
      jitctl tunnel vm-win01 -g rg-prod --port 3389 --local-port 13389 --keep-alive
    """
    from jitctl.launch import check_user, rdp_command, write_rdp_file
    from jitctl.relay import LOOPBACK, Tunnel

    check_user(req.user, "rdp")
    ready = ready_access(app, req)
    fwd = Tunnel(
        ready.connect_host, ready.connect_port, local_port, on_event=lambda m: warn(app, m)
    )
    try:
        host, port = fwd.start()
    except OSError as err:
        raise Refused(
            f"Cannot listen on {LOOPBACK}:{local_port}: {err.strerror or err}.",
            "Pick another --local-port, or 0 for a free one.",
        ) from None
    try:
        runner = app.get_runner()
        rdp_file = (
            write_rdp_file(app.get_data_dir(), ready.vm_name, host, port, req.user) if rdp else None
        )
        info = TunnelOpen(
            ready.vm_id,
            host,
            port,
            ready.connect_host,
            ready.connect_port,
            ready.end_time,
            str(rdp_file) if rdp_file else None,
        )
        emit(
            app,
            info,
            lambda: (
                f"Connect to {host}:{port} (forwarded to {ready.vm_name} "
                f"{ready.connect_host}:{ready.connect_port}, access until {ready.end_time:%H:%M} UTC)."
            ),
        )
        warn(app, "Press Ctrl-C to stop.")
        keep = keeper(app, req, ready, fwd.follow, fwd.follow_host) if req.keep_alive else None
        if rdp_file is not None:
            child = runner.spawn(rdp_command(runner, rdp_file, wait=True))
            running = lambda: child.poll() is None  # noqa: E731
        else:
            running = lambda: True  # noqa: E731
        if keep is not None:
            keep(running)
        while running():
            app.clock.sleep(1.0)
        warn(app, "The client exited; tunnel closed.")
    except KeyboardInterrupt:
        warn(app, "Tunnel closed.")
    finally:
        fwd.close()


def proxy_argv(
    app: App,
    vm_id: str,
    port: int,
    private: bool,
    keep_alive: bool,
    via_broker: bool = False,
    broker_url: str | None = None,
) -> list[str]:
    """This jitctl (its absolute path), as ssh will run it for the VM."""
    from jitctl.ids import segments

    parts = segments(vm_id)
    argv = [sys.executable, "-m", "jitctl", "ssh-proxy", parts["virtualmachines"]]
    argv += ["-g", parts["resourcegroups"], "-s", parts["subscriptions"], "--port", str(port)]
    flags = (("--private", private), ("--keep-alive", keep_alive), ("--via-broker", via_broker))
    argv += [flag for flag, on in flags if on]
    if via_broker and broker_url:
        argv += ["--broker", broker_url]
    return argv + where_options(app)  # the cloud (or emulator) of this run, for ssh's later ones


def _summary(r: Any) -> str:
    if r.diff and not r.written:
        return r.diff.rstrip("\n") + "\n(dry run: nothing written)"
    lines = [
        f"{'Wrote' if r.written else 'Up to date:'} {r.path}: {len(r.hosts)} host(s)"
        + (f"; added {', '.join(r.added)}" if r.added else "")
        + (f"; removed {', '.join(r.removed)}" if r.removed else "")
    ]
    if not r.hosts:
        lines.append("No VM has a JIT policy with this port here.")
    return "\n".join(lines)


@click.command("ssh-config", context_settings=CONTEXT)
@group_option
@click.option(
    "--file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the entries to this file, and an Include of it in ~/.ssh/config.",
)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The ssh config file to edit (default: ~/.ssh/config; for ssh -F).",
)
@click.option("--port", type=PortType(), default=22, show_default=True, help="The ssh port.")
@click.option("--user", help="User for every entry (default: ssh's own).")
@click.option("--private", is_flag=True, help="Connect to the private IPs (VPN or peering).")
@click.option("--keep-alive", is_flag=True, help="ProxyCommand with --keep-alive.")
@click.option(
    "--via-broker/--direct",
    envvar="JITCTL_VIA_BROKER",
    default=False,
    help="ProxyCommand with --via-broker: ssh gets access through the approval broker "
    "(default JITCTL_VIA_BROKER, else via-broker in the config file).",
)
@click.option(
    "--broker",
    "broker_url",
    metavar="URL",
    help="With --via-broker: the broker's URL, written into the ProxyCommand (else ssh-proxy "
    "reads JITCTL_BROKER_URL or the config file when ssh runs it).",
)
@click.option("--dry-run", is_flag=True, help="Show the change; write nothing.")
@click.pass_obj
def ssh_config(
    app: App,
    resource_group: str | None,
    file: Path | None,
    config: Path | None,
    port: int,
    user: str | None,
    private: bool,
    keep_alive: bool,
    via_broker: bool,
    broker_url: str | None,
    dry_run: bool,
) -> None:
    """Host entries for plain `ssh VM`: one per VM in a JIT policy with the port, via ssh-proxy.

    Written between '# BEGIN jitctl managed' and '# END jitctl managed' in ~/.ssh/config (or in
    --file, included from it); the rest of the file is left as it is. Running it again changes
    nothing; entries of VMs that are gone from the resource group (or subscription) are removed,
    and those of other groups are kept.

    \b
    Example:
      jitctl ssh-config -g rg-prod --user azureuser --config ssh_config --dry-run
    """
    from jitctl.launch import check_user
    from jitctl.services.sshconfig import Scope, default_config, jit_vms, update

    all_subscriptions = app.all_subscriptions  # the global option, as for the fleet commands
    if all_subscriptions and resource_group:
        raise click.UsageError("Give -g or --all-subscriptions, not both")
    check_user(user, "ssh")
    subs = app.subscription_ids() if all_subscriptions else [app.subscription_id]
    gw = app.gateway()
    found = {
        Scope(sub, resource_group): jit_vms(gw, Scope(sub, resource_group), port) for sub in subs
    }
    result = update(
        config.expanduser().absolute() if config else default_config(),
        found,
        lambda vm_id: proxy_argv(app, vm_id, port, private, keep_alive, via_broker, broker_url),
        user,
        app.get_runner().platform,
        file.expanduser().absolute() if file else None,
        dry_run,
    )
    for name in result.skipped:
        warn(app, f"Skipped VM '{name}': its name cannot be an ssh Host name.")
    emit(app, result, lambda: _summary(result))
