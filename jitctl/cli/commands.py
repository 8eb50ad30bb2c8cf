"""Commands: each parses its input, calls one service, renders the result."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta, timezone
from typing import Any

import click

from jitctl.app import App
from jitctl.cli import CONTEXT
from jitctl.cli.options import (
    ALLOW_ANY,
    DEFAULT_TIMEOUT,
    VmSelection,
    group_option,
    ports_option,
    source_ip_option,
    timeout_option,
    vm_must_exist,
    vm_options,
)
from jitctl.cli.output import emit, poll_progress, warn
from jitctl.cli.paramtypes import DurationType, ProtocolType, SourceType
from jitctl.cli.root import cli
from jitctl.cli.several import each_vm
from jitctl.errors import NotEffective, suggest
from jitctl.ids import VmRef
from jitctl.parsing import checkable_address


@cli.command(context_settings=CONTEXT)
@vm_options(many=True)
@ports_option("Port to protect (repeatable; default 3389).")
@click.option("--protocol", type=ProtocolType(), default="any", show_default=True)
@click.option(
    "--max-duration",
    type=DurationType(),
    default="3h",
    show_default=True,
    help="Longest access a request may ask for (5m to 24h).",
)
@click.option(
    "--source",
    "sources",
    multiple=True,
    type=SourceType("range"),
    help="Allowed requester range (repeatable; default: any address, one per request).",
)
@ALLOW_ANY
@click.option(
    "--policy-name",
    help="JIT policy name (default: the policy that already names the VM, else 'default', "
    "the portal's); '{vm}' gives each VM its own policy.",
)
@click.option("--dry-run", is_flag=True, help="Show the change; write nothing.")
@click.pass_obj
def enable(
    app: App,
    vm: VmSelection,
    ports: tuple[int, ...],
    protocol: str,
    max_duration: timedelta,
    sources: tuple[str, ...],
    allow_any_source: bool,
    policy_name: str | None,
    dry_run: bool,
) -> None:
    """Add VMs to the JIT policy of their resource group and region (read, merge, write).

    Every other VM and port in the policy stays as it was; nothing to change means no write.

    \b
    Example:
      jitctl enable vm-win01 vm-win02 -g rg-prod --port 3389 --port 22 --max-duration 2h \\
        --source 198.51.100.0/24 --source 203.0.113.0/24
      jitctl enable vm-lnx01 -g rg-prod --port 22 --max-duration 1h
    """
    from jitctl.model import PortRule
    from jitctl.services.policies import enable as run

    allowed = list(sources) or ["*"]
    rules = [
        PortRule(
            number=p,
            protocol=protocol,
            max_duration=max_duration,
            allowed_source_address_prefix=allowed[0] if len(allowed) == 1 else None,
            allowed_source_address_prefixes=tuple(allowed) if len(allowed) > 1 else None,
        )
        for p in ports or (3389,)
    ]
    refs = vm.refs(app)
    emit(app, run(app.gateway(), refs, rules, policy_name, dry_run, clock=app.clock))


@cli.command(context_settings=CONTEXT)
@vm_options(many=True)
@ports_option("Port to remove (repeatable; default: the whole VM).")
@click.option("--policy-name", help="Only this JIT policy.")
@click.option("--dry-run", is_flag=True, help="Show the change; write nothing.")
@click.pass_obj
def disable(
    app: App,
    vm: VmSelection,
    ports: tuple[int, ...],
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

    def one(ref: VmRef) -> Any:
        with vm_must_exist(app, ref):
            return run(
                app.gateway(), ref, list(ports) or None, policy_name, dry_run, clock=app.clock
            )

    each_vm(app, vm, one)


@cli.command(context_settings=CONTEXT)
@vm_options(many=True)
@click.pass_obj
def show(
    app: App,
    vm: VmSelection,
) -> None:
    """Show a VM's JIT configuration and its current grants (active, initiating, failed).

    \b
    Example:
      jitctl show vm-win01 -g rg-prod
    """
    from jitctl.services.query import show_vm

    def one(ref: VmRef) -> Any:
        with vm_must_exist(app, ref):
            return show_vm(app.gateway(), ref, app.clock.now())

    each_vm(app, vm, one)


@cli.command(name="list", context_settings=CONTEXT)
@group_option
@click.pass_obj
def list_(app: App, resource_group: str | None) -> None:
    """List JIT policies: VMs, ports, sources, maximum durations and current grants.

    \b
    Example:
      jitctl list -g rg-prod -o json
    """
    from jitctl.services.query import list_fleet, list_policies

    subs, now = app.subscription_ids(), app.clock.now()
    if len(subs) > 1:
        emit(app, list_fleet(app.fleet(), subs, resource_group, now))
        return
    emit(app, list_policies(app.gateway(), subs[0], resource_group, now))


def warn_timeout_without_wait(app: App, wait: bool, timeout: timedelta | None) -> float:
    if timeout is not None and not wait:
        warn(app, "warning: --timeout has no effect without --wait.")
    return (timeout or DEFAULT_TIMEOUT).total_seconds()


@cli.command(context_settings=CONTEXT)
@vm_options(many=True)
@source_ip_option("request", "The address to let in (IPv4 or CIDR).")
@ports_option("Port (repeatable; default 3389).")
@click.option(
    "--duration",
    type=DurationType(),
    help="How long (90m, 1h, PT1H); default: the policy's maximum.",
)
@click.option("--justification", help="Why; kept in the policy's request history.")
@click.option("--policy-name", help="Use this JIT policy when several cover the VM.")
@ALLOW_ANY
@click.option("--wait", is_flag=True, help="Then wait until the NSGs really let the source in.")
@timeout_option("With --wait: how long")
@click.pass_obj
def request(
    app: App,
    vm: VmSelection,
    source_ip: str,
    ports: tuple[int, ...],
    duration: timedelta | None,
    justification: str | None,
    policy_name: str | None,
    allow_any_source: bool,
    wait: bool,
    timeout: timedelta | None,
) -> None:
    """Request timed access for one source address, checked against the policy first.

    With --wait, the one document is the grant and the proof: {"request": ..., "verification": ...}.

    \b
    Example:
      jitctl request vm-win01 -g rg-prod --source-ip 203.0.113.7 --duration 1h \\
        --justification "INC-4711" --wait
    """
    from jitctl.cli.progress import requested_line
    from jitctl.cli.render import RequestWait
    from jitctl.errors import TimedOut
    from jitctl.services.access import request_access
    from jitctl.services.verify import WaitTimedOut

    limit = warn_timeout_without_wait(app, wait, timeout)
    numbers = list(ports) or [3389]
    if wait:
        checkable_address(source_ip)

    def one(ref: VmRef) -> Any:
        with vm_must_exist(app, ref):
            granted = request_access(
                app.gateway(),
                ref,
                source_ip,
                app.clock.now(),
                numbers,
                duration,
                justification,
                policy_name,
                clock=app.clock,
            )
        if not wait:
            return granted
        for note in granted.notes:  # a lost answer read back: say so before waiting
            warn(app, f"jitctl: {note}")
        try:
            proof = wait_for(app, ref, source_ip, numbers, limit, intro=requested_line(granted))
        except WaitTimedOut as err:  # not applied yet, the grant stands: until when, how to check
            if not err.pending:
                raise
            until = max(p.end_time for p in granted.ports).astimezone(timezone.utc)
            again = suggest(
                "verify",
                ref.name,
                "-g",
                ref.resource_group,
                "--source-ip",
                source_ip,
                *port_args(numbers),
                "--wait",
                subscription=ref.subscription_id,
            )
            raise TimedOut(
                err.message, f"Granted until {until:%H:%M} UTC; check again: {again}", [again]
            ) from err
        return RequestWait(granted, proof)

    each_vm(app, vm, one)


def wait_for(
    app: App,
    ref: VmRef,
    source: str,
    ports: Sequence[int],
    limit: float,
    nic: str | None = None,
    require_jit: bool = False,
    intro: str = "",
) -> Any:
    from jitctl.cli.output import STRUCTURED
    from jitctl.cli.progress import Spinner
    from jitctl.services.firewall import firewall_address
    from jitctl.services.verify import wait_until_effective

    # -o json: the document says it; --only-show-errors: nothing but errors
    said = "" if app.output in STRUCTURED or app.only_show_errors else intro
    with Spinner(f"waiting for access to {ref.name}", intro=said) as spin:
        result, _ = wait_until_effective(
            app.gateway(),
            ref,
            source.split("/")[0],
            app.clock,
            ports,
            limit,
            nic,
            require_jit,
            poll_progress(app, spin),
            firewall=firewall_address(app.gateway(), ref),
        )
    trust_warning(app, result)
    return result


def trust_warning(app: App, result: Any) -> None:
    """Say once when the verdict is Azure's grant, not a rule jitctl read (a firewall it
    cannot read); the JSON says it too ("verified": false)."""
    note = result.trust_note()
    if note:
        warn(app, f"warning: {note}.")


@cli.command(context_settings=CONTEXT)
@vm_options(many=True)
@source_ip_option("address", "The address that should get in (IPv4).")
@ports_option("Port (repeatable; default 3389).")
@click.option("--nic", help="NIC name or id for a multi-NIC VM (default: the primary NIC).")
@click.option(
    "--require-jit", is_flag=True, help="Fail (exit 7) when access does not come from JIT."
)
@click.option("--wait", is_flag=True, help="Poll until access is effective (backoff 1 s to 5 s).")
@timeout_option("With --wait: how long")
@click.pass_obj
def verify(
    app: App,
    vm: VmSelection,
    source_ip: str,
    ports: tuple[int, ...],
    nic: str | None,
    require_jit: bool,
    wait: bool,
    timeout: timedelta | None,
) -> None:
    """Prove access: evaluate the VM's subnet and NIC NSGs as Azure does. Exit 0 only if effective.

    Not effective: the result (with "ok": false) is still the document, and the exit code is 7.

    \b
    Example:
      jitctl verify vm-win01 -g rg-prod --source-ip 203.0.113.7 --require-jit
    """
    from jitctl.errors import NotEffective
    from jitctl.services.firewall import firewall_address
    from jitctl.services.verify import check
    from jitctl.services.verify import verify as run

    limit = warn_timeout_without_wait(app, wait, timeout)
    numbers = list(ports) or [3389]
    if nic and len(vm.given) > 1:
        raise click.UsageError("--nic names a NIC of one VM; name one VM with it.")

    def one(ref: VmRef) -> Any:
        if wait:
            return wait_for(app, ref, source_ip, numbers, limit, nic, require_jit)
        fw = firewall_address(app.gateway(), ref)
        result = run(app.gateway(), ref, source_ip, numbers, nic, require_jit, fw, app.clock.now())
        trust_warning(app, result)
        return result

    def judge(ref: VmRef, result: Any) -> NotEffective | None:
        try:
            check(result)
        except NotEffective as err:
            return what_to_do(err, result, ref, source_ip, numbers)
        return None

    each_vm(app, vm, one, judge)


def port_args(ports: Sequence[int]) -> list[str]:
    """`--port N` for each port, none for RDP's 3389 alone (the default of verify and request)."""
    return [] if list(ports) == [3389] else [w for p in ports for w in ("--port", str(p))]


def what_to_do(
    err: NotEffective, result: Any, ref: VmRef, source_ip: str, ports: Sequence[int]
) -> NotEffective:
    """The next step when verify fails, as a command ready to paste where there is one."""
    if all(p.evaluation.protected for p in result.ports) and result.effective:
        return NotEffective(
            err.message, "Remove or narrow that rule, so that only JIT opens the port."
        )
    where = (ref.name, "-g", ref.resource_group)
    if not result.effective:
        fix = suggest(
            "request",
            *where,
            "--source-ip",
            source_ip,
            *port_args(ports),
            "--wait",
            subscription=ref.subscription_id,
        )
        return NotEffective(err.message, f"Request access: {fix}", [fix])
    fix = suggest("enable", *where, *port_args(ports), subscription=ref.subscription_id)
    return NotEffective(err.message, f"Put an NSG on the VM's NIC or subnet, then: {fix}", [fix])
