"""rdp, ssh, status, history: the pre-connect helper and the views of grants."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from jitctl.app import App
from jitctl.cli.broker_calls import audience_option
from jitctl.cli.globalopts import CONTEXT
from jitctl.cli.options import (
    VmSelection,
    vm_must_exist,
    vm_options,
)
from jitctl.cli.output import emit, poll_progress, warn
from jitctl.cli.paramtypes import DurationType, PortType, SourceType
from jitctl.cli.several import each_vm
from jitctl.errors import BadInput
from jitctl.ids import VmRef

if TYPE_CHECKING:
    from jitctl.services.connect import AccessRequest


@dataclass(frozen=True)
class ConnectRequest:
    """What rdp and ssh were asked for, parsed and checked before anything runs."""

    vm: VmSelection
    source_ip: str | None  # None: this machine's public address
    port: int
    duration: timedelta | None
    justification: str | None
    timeout: timedelta
    min_remaining: timedelta
    user: str | None
    private: bool
    launch: bool
    policy_name: str | None
    keep_alive: bool = False
    via_broker: bool = False  # ask the approval broker; hold no Azure right
    broker_url: str | None = None
    ticket: str | None = None

    def access(self, ref: VmRef, source: str) -> AccessRequest:
        """What the service is handed: the VM resolved and the source known."""
        from jitctl.services.connect import AccessRequest

        return AccessRequest(
            ref,
            source,
            self.port,
            self.duration,
            self.justification,
            self.min_remaining,
            self.timeout,
            self.private,
            self.policy_name,
        )


KEEP_ALIVE_HELP = (
    "While the client runs, request again before the grant ends (same duration, within the "
    "policy's maximum, same justification; with --via-broker, a new broker request its rules "
    "decide); stop when it exits."
)


def connect_options(default_port: int, client: bool = True) -> Callable[[Any], Any]:
    """The options of rdp and ssh; without `client` (ssh-proxy, tunnel), no --user and no
    --no-launch."""
    options = [
        vm_options(),
        click.option(
            "--source-ip",
            type=SourceType("address"),
            help="Address to let in (default: this machine's public IPv4, from two echo services that must agree).",
        ),
        click.option(
            "--port",
            type=PortType(),
            default=default_port,
            show_default=True,
            help="Port to request.",
        ),
        click.option(
            "--duration",
            type=DurationType(),
            help="How long (90m, 1h, PT1H); default: the policy's maximum.",
        ),
        click.option("--justification", help="Why; kept in the policy's request history."),
        click.option(
            "--timeout",
            type=DurationType(minimum=timedelta(seconds=1)),
            default="5m",
            show_default=True,
            help="How long to wait for access (30s, 5m).",
        ),
        click.option(
            "--min-remaining",
            type=DurationType(minimum=timedelta(0)),
            default="15m",
            show_default=True,
            help="Reuse a live grant with at least this much left.",
        ),
        *([click.option("--user", help="User name to connect as.")] if client else []),
        click.option("--private", is_flag=True, help="Connect to the private IP (VPN or peering)."),
        *(
            [
                click.option(
                    "--no-launch",
                    is_flag=True,
                    help="Print address, file and expiry; start nothing.",
                )
            ]
            if client
            else []
        ),
        click.option("--policy-name", help="Use this JIT policy when several cover the VM."),
        click.option("--keep-alive", is_flag=True, help=KEEP_ALIVE_HELP),
        click.option(
            "--via-broker/--direct",
            envvar="JITCTL_VIA_BROKER",
            default=False,
            help="Ask the approval broker for access (no Azure rights needed; "
            "--justification is the reason) instead of Azure directly; default "
            "JITCTL_VIA_BROKER, else via-broker in the config file.",
        ),
        click.option(
            "--broker",
            "broker_url",
            envvar="JITCTL_BROKER_URL",
            metavar="URL",
            help="With --via-broker: the broker's URL (else JITCTL_BROKER_URL).",
        ),
        audience_option,
        click.option("--ticket", help="With --via-broker: a ticket id, when the rules ask one."),
    ]

    def decorate(f: Any) -> Any:
        @functools.wraps(f)
        def command(*args: Any, **o: Any) -> Any:
            """The options, parsed by their types, become one typed request."""
            req = ConnectRequest(
                vm=o.pop("vm"),
                source_ip=o.pop("source_ip"),
                port=o.pop("port"),
                duration=o.pop("duration"),
                justification=o.pop("justification"),
                timeout=o.pop("timeout"),
                min_remaining=o.pop("min_remaining"),
                user=o.pop("user", None),
                private=o.pop("private"),
                launch=not o.pop("no_launch", False),
                policy_name=o.pop("policy_name"),
                keep_alive=o.pop("keep_alive"),
                via_broker=o.pop("via_broker"),
                broker_url=o.pop("broker_url"),
                ticket=o.pop("ticket"),
            )
            return f(*args, req=req, **o)

        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def ready_access(app: App, req: ConnectRequest) -> Any:
    """Source, then reuse-or-request, then wait until effective (spinner on a terminal);
    with --via-broker, all of it by the broker."""
    from jitctl.cli.progress import Spinner
    from jitctl.services.connect import ensure_access

    if req.via_broker:
        from jitctl.cli.broker_calls import broker_ready

        return broker_ready(app, req)
    if req.ticket:
        raise BadInput("--ticket is for the broker's rules.", "Add --via-broker, or leave it out.")
    ref = req.vm.one(app)
    source = req.source_ip or app.public_ip(lambda note: warn(app, note))
    with vm_must_exist(app, ref), Spinner(f"waiting for access to {ref.name}") as spin:
        return ensure_access(
            app.gateway(),
            req.access(ref, source),
            app.clock,
            lambda msg: warn(app, msg),
            poll_progress(app, spin),
        )


def keeper(
    app: App,
    req: ConnectRequest,
    ready: Any,
    on_moved: Callable[[int], None] | None = None,
    on_readdressed: Callable[[str], None] | None = None,
) -> Callable[[Callable[[], bool]], Any]:
    """With --keep-alive, what keeps access open while a client runs (notes on stderr);
    `on_moved(port)` when a renewal behind Azure Firewall maps the port anew,
    `on_readdressed(host)` when the VM's public address changed (a dynamic IP)."""
    from jitctl.services.keepalive import KeepAlive

    keep: Any
    if req.via_broker:  # renewals are asked of the broker, whose rules decide them
        from jitctl.cli.broker_calls import broker_keeper

        keep = broker_keeper(app, req, ready, on_moved, on_readdressed)
        name = ready.vm_name
    else:
        ref = req.vm.one(app)
        name = ref.name
        access = req.access(ref, ready.source).checked()
        keep = KeepAlive(
            app.gateway(), access, app.clock, ready.end_time, lambda msg: warn(app, msg)
        )
        if ready.via == "firewall":
            keep.mapped_port, keep.on_moved = ready.connect_port, on_moved
        if ready.via == "public":
            keep.connect_host, keep.on_readdressed = ready.connect_host, on_readdressed

    def run(running: Callable[[], bool]) -> Any:
        warn(app, f"Keeping access to {name} open while the client runs.")
        report = keep.run(running)
        if not report.ended:
            renewed = sum(r.until is not None for r in report.renewals)
            warn(
                app,
                f"Client ended; keep-alive stopped after {renewed} renewal(s). Access lasts "
                f"until {report.end_time:%H:%M} UTC.",
            )
        return report

    return run


@click.command(context_settings=CONTEXT)
@connect_options(3389)
@click.pass_obj
def rdp(app: App, req: ConnectRequest) -> None:
    """From nothing to a remote desktop: get access for this machine, wait until it is live, connect.

    Reuses a live grant with enough time left; else requests one. Writes an .rdp file (0600, in
    your data directory) and opens it with mstsc (Windows), open (macOS) or xfreerdp/remmina (Linux).
    With --keep-alive, jitctl stays until the client exits and renews access before it ends.

    \b
    Example:
      jitctl rdp vm-win01 -g rg-prod --user azureuser
      jitctl rdp vm-win01 -g rg-prod --no-launch -o json
    """
    from jitctl.launch import check_user, connect_rdp

    check_user(req.user, "rdp")
    ready = ready_access(app, req)

    where = {"host": ready.connect_host, "port": ready.connect_port}

    def rewrite(**changed: Any) -> None:  # a reconnect of the client reads the file again
        from jitctl.launch import write_rdp_file

        where.update(changed)
        write_rdp_file(app.get_data_dir(), ready.vm_name, where["host"], where["port"], req.user)

    keep = (
        keeper(
            app,
            req,
            ready,
            lambda port: rewrite(port=port),
            lambda host: rewrite(host=host),
        )
        if req.keep_alive and req.launch
        else None
    )
    shown = (lambda result: emit(app, result)) if keep else None
    result = connect_rdp(
        app.get_runner(), app.get_data_dir(), ready, req.user, req.launch, keep, shown
    )
    if keep is None:
        emit(app, result)


@click.command(context_settings=CONTEXT)
@connect_options(22)
@click.argument("ssh_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def ssh(ctx: click.Context, ssh_args: tuple[str, ...], req: ConnectRequest) -> None:
    """Get access for this machine, wait until it is live, then run ssh (extra arguments after --).

    Once ssh has run, jitctl exits with ssh's own exit status (and ssh has the terminal: no
    document is written).

    \b
    Example:
      jitctl ssh vm-lnx01 -g rg-prod --user azureuser -- -i ~/.ssh/id_ed25519
    """
    from jitctl.launch import check_user, connect_ssh

    app: App = ctx.obj
    check_user(req.user, "ssh")
    ready = ready_access(app, req)
    keep = keeper(app, req, ready) if req.keep_alive else None
    result = connect_ssh(app.get_runner(), ready, req.user, ssh_args, req.launch, keep)
    if result.launched:
        ctx.exit(result.exit_status or 0)
    emit(app, result)


@click.command(context_settings=CONTEXT)
@vm_options(many=True)
@click.pass_obj
def status(
    app: App,
    vm: VmSelection,
) -> None:
    """Current grants: VM, port, source, state, until, time left (a VM, a group, or all).

    A grant is active once Azure applied it; a pending request shows as initiating, one Azure
    could not apply as failed.

    \b
    Example:
      jitctl status -g rg-prod
    """
    from jitctl.services.query import status as run
    from jitctl.services.query import status_fleet

    if vm.given:
        each_vm(
            app,
            vm,
            lambda ref: run(
                app.gateway(), ref.subscription_id, app.clock.now(), vm.resource_group, ref
            ),
        )
        return
    subs = app.subscription_ids()
    if len(subs) > 1:
        emit(app, status_fleet(app.fleet(), subs, app.clock.now(), vm.resource_group))
        return
    emit(app, run(app.gateway(), subs[0], app.clock.now(), vm.resource_group, None))


@click.command(context_settings=CONTEXT)
@vm_options(many=True)
@click.pass_obj
def history(
    app: App,
    vm: VmSelection,
) -> None:
    """Past requests: start, requestor, VM, port, source, end, state, justification.

    Without a VM: every request kept in the JIT policies of the subscription (-g: of that
    group; -s repeated or --all-subscriptions: of those subscriptions).

    \b
    Example:
      jitctl history vm-win01 -g rg-prod -o json
      jitctl history -g rg-prod
    """
    from jitctl.services.query import history as run
    from jitctl.services.query import history_fleet, history_scope

    now = app.clock.now()
    if not vm.given:
        subs = app.subscription_ids()
        if len(subs) > 1:
            emit(app, history_fleet(app.fleet(), subs, now, vm.resource_group))
        else:
            emit(app, history_scope(app.gateway(), subs[0], now, vm.resource_group))
        return

    def one(ref: VmRef) -> Any:
        with vm_must_exist(app, ref):
            return run(app.gateway(), ref, now)

    each_vm(app, vm, one)
