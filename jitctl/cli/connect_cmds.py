"""rdp, ssh, status, history: the pre-connect helper and the views of grants."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import click

from jitctl.app import App
from jitctl.cli import CONTEXT
from jitctl.cli.commands import emit, group_option, timeout_seconds, vm_refs
from jitctl.parsing import parse_duration, parse_port, parse_source


def connect_options(default_port: int) -> Callable[[Any], Any]:
    options = [
        group_option,
        click.option(
            "--source-ip",
            help="Address to let in (default: this machine's public IPv4, from two echo services that must agree).",
        ),
        click.option(
            "--port", default=str(default_port), show_default=True, help="Port to request."
        ),
        click.option("--duration", help="How long (90m, 1h, PT1H); default: the policy's maximum."),
        click.option("--justification", help="Why; kept in the policy's request history."),
        click.option(
            "--timeout",
            default="5m",
            show_default=True,
            help="How long to wait for access (30s, 5m).",
        ),
        click.option(
            "--min-remaining",
            default="15m",
            show_default=True,
            help="Reuse a live grant with at least this much left.",
        ),
        click.option("--user", help="User name to connect as."),
        click.option("--private", is_flag=True, help="Connect to the private IP (VPN or peering)."),
        click.option(
            "--no-launch", is_flag=True, help="Print address, file and expiry; start nothing."
        ),
        click.option("--policy-name", help="Use this JIT policy when several cover the VM."),
    ]

    def decorate(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def ready_access(app: App, vm: str, resource_group: str | None, o: dict[str, Any]) -> Any:
    """Source, then reuse-or-request, then wait until effective (spinner on a terminal)."""
    from jitctl.cli.progress import Spinner
    from jitctl.services.connect import ensure_access

    ref = vm_refs(app, [vm], resource_group)[0]
    port = parse_port(o["port"])
    duration = parse_duration(o["duration"]) if o["duration"] else None
    min_remaining = parse_duration(o["min_remaining"], minimum=timedelta(0))
    limit = timeout_seconds(o["timeout"])
    source = parse_source(o["source_ip"]).split("/")[0] if o["source_ip"] else app.public_ip()
    with Spinner(f"waiting for access to {ref.name}") as spin:
        return ensure_access(
            app.gateway(),
            ref,
            source,
            app.clock,
            port,
            duration,
            o["justification"],
            min_remaining,
            limit,
            o["private"],
            o["policy_name"],
            lambda msg: click.echo(msg, err=True),
            spin.update,
        )


@click.command(context_settings=CONTEXT)
@click.argument("vm")
@connect_options(3389)
@click.pass_obj
def rdp(app: App, vm: str, resource_group: str | None, **o: Any) -> None:
    """From nothing to a remote desktop: get access for this machine, wait until it is live, connect.

    Reuses a live grant with enough time left; else requests one. Writes an .rdp file (0600, in
    your data directory) and opens it with mstsc (Windows), open (macOS) or xfreerdp/remmina (Linux).

    \b
    Example:
      jitctl rdp vm-win01 -g rg-prod --user azureuser
      jitctl rdp vm-win01 -g rg-prod --no-launch -o json
    """
    from jitctl.launch import check_user, connect_rdp

    check_user(o["user"], "rdp")
    ready = ready_access(app, vm, resource_group, o)
    emit(
        app, connect_rdp(app.get_runner(), app.get_data_dir(), ready, o["user"], not o["no_launch"])
    )


@click.command(context_settings=CONTEXT)
@click.argument("vm")
@connect_options(22)
@click.argument("ssh_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def ssh(
    ctx: click.Context, vm: str, resource_group: str | None, ssh_args: tuple[str, ...], **o: Any
) -> None:
    """Get access for this machine, wait until it is live, then run ssh (extra arguments after --).

    Once ssh has run, jitctl exits with ssh's own exit status.

    \b
    Example:
      jitctl ssh vm-lnx01 -g rg-prod --user azureuser -- -i ~/.ssh/id_ed25519
    """
    from jitctl.launch import check_user, connect_ssh

    app: App = ctx.obj
    check_user(o["user"], "ssh")
    ready = ready_access(app, vm, resource_group, o)
    result = connect_ssh(app.get_runner(), ready, o["user"], ssh_args, not o["no_launch"])
    if result.launched:
        ctx.exit(result.exit_status or 0)
    emit(app, result)


@click.command(context_settings=CONTEXT)
@click.argument("vm", required=False)
@group_option
@click.pass_obj
def status(app: App, vm: str | None, resource_group: str | None) -> None:
    """Active grants: VM, port, source, until, time left (a VM, a resource group, or all).

    \b
    Example:
      jitctl status -g rg-prod
    """
    from jitctl.services.query import status as run

    ref = vm_refs(app, [vm], resource_group)[0] if vm else None
    emit(app, run(app.gateway(), app.subscription_id, app.clock.now(), resource_group, ref))


@click.command(context_settings=CONTEXT)
@click.argument("vm")
@group_option
@click.pass_obj
def history(app: App, vm: str, resource_group: str | None) -> None:
    """Past requests for a VM: requestor, start, end, source, port, status, justification.

    \b
    Example:
      jitctl history vm-win01 -g rg-prod -o json
    """
    from jitctl.services.query import history as run

    emit(app, run(app.gateway(), vm_refs(app, [vm], resource_group)[0]))
