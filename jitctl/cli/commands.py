"""Commands: each parses its input, calls one service, renders the result."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from jitctl.app import App
from jitctl.cli import CONTEXT, JitctlGroup
from jitctl.ids import VmRef, parse_vm
from jitctl.parsing import parse_duration, parse_port, parse_protocol, parse_source

OUTPUTS = click.Choice(["table", "json"])
CLOUDS = ["AzureCloud", "AzureUSGovernment", "AzureChinaCloud"]


@click.group(cls=JitctlGroup, context_settings=CONTEXT)
@click.option(
    "-s",
    "--subscription",
    help="Subscription id (else AZURE_SUBSCRIPTION_ID, else the Azure CLI's default).",
)
@click.option(
    "--cloud",
    type=click.Choice(CLOUDS, case_sensitive=False),
    help="Azure cloud (default AzureCloud).",
)
@click.option(
    "--arm-endpoint",
    envvar="JITCTL_ARM_ENDPOINT",
    help="A custom cloud's ARM endpoint (Azure Stack, the emulator).",
)
@click.option(
    "--emulator",
    is_flag=True,
    envvar="JITCTL_EMULATOR",
    help="Run against the built-in Azure emulator (state kept between commands).",
)
@click.option(
    "-o",
    "--output",
    type=OUTPUTS,
    default="table",
    show_default=True,
    help="table for people, json for scripts.",
)
@click.option(
    "--debug", is_flag=True, help="Tracebacks and HTTP logging on stderr (tokens redacted)."
)
@click.version_option(package_name="jitctl")
@click.pass_context
def cli(
    ctx: click.Context,
    subscription: str | None,
    cloud: str | None,
    arm_endpoint: str | None,
    emulator: bool,
    output: str,
    debug: bool,
) -> None:
    """Azure Just-In-Time VM access: enable a policy, request access, wait until it is live,
    prove it.

    \b
    Example, on the built-in emulator (no Azure account needed):
      jitctl --emulator enable vm-win01 -g rg-jit-demo
      jitctl --emulator request vm-win01 -g rg-jit-demo --source-ip 203.0.113.7 --wait
      jitctl --emulator verify vm-win01 -g rg-jit-demo --source-ip 203.0.113.7
    """
    app = ctx.obj if isinstance(ctx.obj, App) else App()
    app.subscription = subscription or app.subscription
    app.cloud, app.arm_endpoint = cloud, arm_endpoint
    app.emulator = app.emulator or emulator
    app.output, app.debug = output, debug
    ctx.obj = app
    ctx.call_on_close(app.close)
    if debug:
        from jitctl.cli.logs import enable_debug_logging

        ctx.call_on_close(enable_debug_logging())


def group_option(f: Any) -> Any:
    return click.option("-g", "--resource-group", help="Resource group of VMs named by name.")(f)


def vm_refs(app: App, names: Sequence[str], group: str | None) -> list[VmRef]:
    """VMs by name (with -g) or full id; a VM id names the subscription when none is given."""
    sub = app.subscription_id if any(not n.startswith("/") for n in names) else app.subscription
    refs = [parse_vm(n, resource_group=group, subscription_id=sub) for n in names]
    if app.subscription is None and not app.emulator and refs:
        app.subscription = refs[0].subscription_id
    return refs


def emit(app: App, result: Any) -> None:
    from jitctl.cli.render import render

    click.echo(render(result, app.output, app.clock.now()))
    for note in getattr(result, "notes", ()):  # what a write or request had to recover from
        click.echo(f"jitctl: {note}", err=True)


def ports_or(values: Sequence[str], default: int) -> list[int]:
    return [parse_port(v) for v in values] or [default]


def timeout_seconds(text: str) -> float:
    from datetime import timedelta

    return parse_duration(text, minimum=timedelta(seconds=1)).total_seconds()


@cli.command(context_settings=CONTEXT)
@click.argument("vms", nargs=-1, required=True)
@group_option
@click.option("--port", "ports", multiple=True, help="Port to protect (repeatable; default 3389).")
@click.option("--protocol", default="any", show_default=True, help="tcp, udp or any.")
@click.option(
    "--max-duration",
    default="3h",
    show_default=True,
    help="Longest access a request may ask for (5m to 24h).",
)
@click.option(
    "--source",
    "sources",
    multiple=True,
    help="Allowed requester range (repeatable; default: any address, one per request).",
)
@click.option(
    "--allow-any-source", is_flag=True, help="Accept '*', 0.0.0.0/0, Internet or Any as --source."
)
@click.option(
    "--policy-name",
    default="default",
    show_default=True,
    help="JIT policy name (the portal uses 'default'); '{vm}' gives each VM its own policy.",
)
@click.option("--dry-run", is_flag=True, help="Show the change; write nothing.")
@click.pass_obj
def enable(
    app: App,
    vms: tuple[str, ...],
    resource_group: str | None,
    ports: tuple[str, ...],
    protocol: str,
    max_duration: str,
    sources: tuple[str, ...],
    allow_any_source: bool,
    policy_name: str,
    dry_run: bool,
) -> None:
    """Add VMs to the JIT policy of their resource group and region (read, merge, write).

    Every other VM and port in the policy stays as it was; nothing to change means no write.

    \b
    Example:
      jitctl enable vm-win01 vm-win02 -g rg-prod --port 3389 --max-duration 2h --source 198.51.100.0/24
    """
    from jitctl.model import PortRule
    from jitctl.services.policies import enable as run

    allowed = [parse_source(s, allow_any=allow_any_source) for s in sources] or ["*"]
    rules = [
        PortRule(
            number=p,
            protocol=parse_protocol(protocol),
            max_duration=parse_duration(max_duration),
            allowed_source_address_prefix=allowed[0] if len(allowed) == 1 else None,
            allowed_source_address_prefixes=tuple(allowed) if len(allowed) > 1 else None,
        )
        for p in ports_or(ports, 3389)
    ]
    refs = vm_refs(app, vms, resource_group)
    emit(app, run(app.gateway(), refs, rules, policy_name, dry_run, clock=app.clock))


@cli.command(context_settings=CONTEXT)
@click.argument("vm")
@group_option
@click.option(
    "--port", "ports", multiple=True, help="Port to remove (repeatable; default: the whole VM)."
)
@click.option("--policy-name", help="Only this JIT policy.")
@click.option("--dry-run", is_flag=True, help="Show the change; write nothing.")
@click.pass_obj
def disable(
    app: App,
    vm: str,
    resource_group: str | None,
    ports: tuple[str, ...],
    policy_name: str | None,
    dry_run: bool,
) -> None:
    """Remove ports, or the whole VM, from its JIT policy; other VMs stay.

    A policy whose last VM goes is deleted.

    \b
    Example:
      jitctl disable vm-win01 -g rg-prod --port 22
    """
    from jitctl.services.policies import disable as run

    numbers = [parse_port(p) for p in ports] or None
    emit(
        app,
        run(
            app.gateway(),
            vm_refs(app, [vm], resource_group)[0],
            numbers,
            policy_name,
            dry_run,
            clock=app.clock,
        ),
    )


@cli.command(context_settings=CONTEXT)
@click.argument("vm")
@group_option
@click.pass_obj
def show(app: App, vm: str, resource_group: str | None) -> None:
    """Show a VM's JIT configuration and active grants.

    \b
    Example:
      jitctl show vm-win01 -g rg-prod
    """
    from jitctl.services.query import show_vm

    emit(app, show_vm(app.gateway(), vm_refs(app, [vm], resource_group)[0], app.clock.now()))


@cli.command(name="list", context_settings=CONTEXT)
@group_option
@click.pass_obj
def list_(app: App, resource_group: str | None) -> None:
    """List JIT policies: VMs, ports, sources, maximum durations and active grants.

    \b
    Example:
      jitctl list -g rg-prod -o json
    """
    from jitctl.services.query import list_policies

    emit(app, list_policies(app.gateway(), app.subscription_id, resource_group, app.clock.now()))


@cli.command(context_settings=CONTEXT)
@click.argument("vm")
@group_option
@click.option("--source-ip", required=True, help="The address to let in (IPv4 or CIDR).")
@click.option("--port", "ports", multiple=True, help="Port (repeatable; default 3389).")
@click.option("--duration", help="How long (90m, 1h, PT1H); default: the policy's maximum.")
@click.option("--justification", help="Why; kept in the policy's request history.")
@click.option("--policy-name", help="Use this JIT policy when several cover the VM.")
@click.option("--allow-any-source", is_flag=True, help="Accept a wide-open source such as '*'.")
@click.option("--wait", is_flag=True, help="Then wait until the NSGs really let the source in.")
@click.option("--timeout", default="5m", show_default=True, help="With --wait: how long (30s, 5m).")
@click.pass_obj
def request(
    app: App,
    vm: str,
    resource_group: str | None,
    source_ip: str,
    ports: tuple[str, ...],
    duration: str | None,
    justification: str | None,
    policy_name: str | None,
    allow_any_source: bool,
    wait: bool,
    timeout: str,
) -> None:
    """Request timed access for one source address, checked against the policy first.

    \b
    Example:
      jitctl request vm-win01 -g rg-prod --source-ip 203.0.113.7 --duration 1h \\
        --justification "INC-4711" --wait
    """
    from jitctl.services.access import request_access

    ref = vm_refs(app, [vm], resource_group)[0]
    source = parse_source(source_ip, allow_any=allow_any_source)
    length = parse_duration(duration) if duration else None
    limit = timeout_seconds(timeout)
    numbers = ports_or(ports, 3389)
    emit(
        app,
        request_access(
            app.gateway(),
            ref,
            source,
            app.clock.now(),
            numbers,
            length,
            justification,
            policy_name,
            clock=app.clock,
        ),
    )
    if wait:
        emit(app, wait_for(app, ref, source, numbers, limit))


def wait_for(
    app: App,
    ref: VmRef,
    source: str,
    ports: Sequence[int],
    limit: float,
    nic: str | None = None,
    require_jit: bool = False,
) -> Any:
    from jitctl.cli.progress import Spinner
    from jitctl.services.verify import wait_until_effective

    with Spinner(f"waiting for access to {ref.name}") as spin:
        result, _ = wait_until_effective(
            app.gateway(),
            ref,
            source.split("/")[0],
            app.clock,
            ports,
            limit,
            nic,
            require_jit,
            spin.update,
        )
    return result


@cli.command(context_settings=CONTEXT)
@click.argument("vm")
@group_option
@click.option("--source-ip", required=True, help="The address that should get in (IPv4).")
@click.option("--port", "ports", multiple=True, help="Port (repeatable; default 3389).")
@click.option("--nic", help="NIC name or id for a multi-NIC VM (default: the primary NIC).")
@click.option(
    "--require-jit", is_flag=True, help="Fail (exit 7) when access does not come from JIT."
)
@click.option("--wait", is_flag=True, help="Poll until access is effective (backoff 1 s to 5 s).")
@click.option("--timeout", default="5m", show_default=True, help="With --wait: how long (30s, 5m).")
@click.pass_obj
def verify(
    app: App,
    vm: str,
    resource_group: str | None,
    source_ip: str,
    ports: tuple[str, ...],
    nic: str | None,
    require_jit: bool,
    wait: bool,
    timeout: str,
) -> None:
    """Prove access: evaluate the VM's subnet and NIC NSGs as Azure does. Exit 0 only if effective.

    \b
    Example:
      jitctl verify vm-win01 -g rg-prod --source-ip 203.0.113.7 --require-jit
    """
    from jitctl.services.verify import check
    from jitctl.services.verify import verify as run

    ref = vm_refs(app, [vm], resource_group)[0]
    source = parse_source(source_ip).split("/")[0]
    numbers = ports_or(ports, 3389)
    if wait:
        result = wait_for(app, ref, source, numbers, timeout_seconds(timeout), nic, require_jit)
    else:
        result = run(app.gateway(), ref, source, numbers, nic, require_jit)
    emit(app, result)
    check(result)


def _register() -> None:
    from jitctl.cli.connect_cmds import history, rdp, ssh, status
    from jitctl.cli.emulator_cmds import demo, emulator
    from jitctl.cli.policy_cmds import policy, role

    for command in (demo, emulator, rdp, ssh, status, history, policy, role):
        cli.add_command(command)


_register()
