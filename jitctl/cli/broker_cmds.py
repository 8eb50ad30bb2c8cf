"""jitctl broker: ask for access through an approval broker, decide, read its record (a thin
client of the broker's JSON API); and run one (serve, migrate)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from jitctl.app import App
from jitctl.cli.broker_calls import audience_option, client
from jitctl.cli.globalopts import CONTEXT
from jitctl.cli.output import emit
from jitctl.cli.paramtypes import PortType


def broker_option(f: Any) -> Any:
    return click.option(
        "--broker",
        "broker_url",
        envvar="JITCTL_BROKER_URL",
        metavar="URL",
        help="The broker's URL (else JITCTL_BROKER_URL); plain http only to a loopback address.",
    )(audience_option(f))


def show_request(app: App, doc: dict[str, Any]) -> None:
    from jitctl.cli.broker_tables import request_text

    emit(app, doc, lambda: request_text(doc, app.clock.now()))


@click.group(context_settings=CONTEXT)
def broker() -> None:
    """Access through an approval broker: request, approve, deny, and the audit log.

    \b
    Example:
      jitctl broker request vm-lnx01 -g rg-prod --port 22 --reason "deploy INC42" --ticket INC42
      jitctl broker approve 0b7c1e52-4f0e-4d5a-9a53-2f1d1a3f9e10 --comment "ok for the deploy"
    """


@broker.command(context_settings=CONTEXT)
@click.argument("vm")
@click.option("-g", "--resource-group", required=True, help="The VM's resource group.")
@click.option(
    "--port", "ports", multiple=True, type=PortType(), help="Port (repeatable; default 3389)."
)
@click.option("--duration", help="How long (90m, 1h, PT1H); default 1h, or the rules' maximum.")
@click.option("--reason", required=True, help="Why; shown to the approvers and kept in the log.")
@click.option("--ticket", help="A ticket id, when the rules ask for one.")
@click.option("--source-ip", help="The address to let in (default: this machine's public IPv4).")
@click.option(
    "--break-glass",
    is_flag=True,
    help="Approve it yourself, where the rules allow; everyone is told.",
)
@click.option("--wait", is_flag=True, help="Then wait until access is live and verified.")
@click.option("--timeout", default="10m", show_default=True, help="With --wait: how long.")
@broker_option
@click.pass_obj
def request(
    app: App,
    vm: str,
    resource_group: str,
    ports: tuple[int, ...],
    duration: str | None,
    reason: str,
    ticket: str | None,
    source_ip: str | None,
    break_glass: bool,
    wait: bool,
    timeout: str,
    broker_url: str | None,
) -> None:
    """Ask the broker for access; the rules say who must approve it.

    \b
    Example:
      jitctl broker request vm-lnx01 -g rg-prod --port 22 --duration 1h --reason "deploy INC42" \\
        --ticket INC42 --wait
    """
    from jitctl.cli.broker_calls import show_live, wait_active
    from jitctl.parsing import parse_duration

    api = client(app, broker_url)
    limit = parse_duration(timeout, minimum=timedelta(seconds=1), maximum=timedelta(days=1))
    body = {
        "vm": vm,
        "resource_group": resource_group,
        "subscription": app.subscription,
        "ports": list(ports or (3389,)),
        "duration": duration,
        "reason": reason,
        "ticket": ticket,
        "source": source_ip or app.public_ip(),
        "break_glass": break_glass,
    }
    doc = api.call("POST", "/requests", {k: v for k, v in body.items() if v is not None})
    if not wait:
        show_request(app, doc)
        return
    doc = wait_active(app, api, doc, limit.total_seconds())
    show_live(app, doc)


@broker.command(name="list", context_settings=CONTEXT)
@click.option("--mine", "scope", flag_value="mine", default=True, help="My requests (default).")
@click.option("--pending", "scope", flag_value="pending", help="Pending requests I may decide.")
@click.option("--all", "scope", flag_value="all", help="Every request I may see.")
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="At most this many, newest first (the broker is asked page by page).",
)
@broker_option
@click.pass_obj
def list_(app: App, scope: str, limit: int, broker_url: str | None) -> None:
    """List access requests: mine, the ones waiting for me, or all I may see.

    \b
    Examples:
      jitctl broker list --pending
      jitctl broker list --all --limit 500 -o json
    """
    from jitctl.cli.broker_calls import list_requests
    from jitctl.cli.broker_tables import requests_table

    rows = list_requests(app, client(app, broker_url), scope, limit)
    emit(app, rows, lambda: requests_table(rows, app.clock.now()))


def act(app: App, url: str | None, request_id: str, path: str, **body: Any) -> None:
    """One call about one request; its answer (the request now) is the document."""
    sent = {k: v for k, v in body.items() if v is not None}
    method = "POST" if path else "GET"
    show_request(app, client(app, url).call(method, f"/requests/{request_id}{path}", sent or None))


ID = click.argument("request_id", metavar="ID")


@broker.command(context_settings=CONTEXT)
@ID
@broker_option
@click.pass_obj
def show(app: App, request_id: str, broker_url: str | None) -> None:
    """Show an access request: its state, what the rules said, who approved.

    \b
    Example:
      jitctl broker show 0b7c1e52-4f0e-4d5a-9a53-2f1d1a3f9e10 -o json
    """
    act(app, broker_url, request_id, "")


@broker.command(context_settings=CONTEXT)
@ID
@click.option("--comment", help="Kept in the log with the approval.")
@broker_option
@click.pass_obj
def approve(app: App, request_id: str, comment: str | None, broker_url: str | None) -> None:
    """Approve a request the rules let you approve (never your own).

    \b
    Example:
      jitctl broker approve 0b7c1e52-4f0e-4d5a-9a53-2f1d1a3f9e10 --comment "ok for INC42"
    """
    act(app, broker_url, request_id, "/approve", comment=comment)


@broker.command(context_settings=CONTEXT)
@ID
@click.option("--reason", required=True, help="Why; the requester is told.")
@broker_option
@click.pass_obj
def deny(app: App, request_id: str, reason: str, broker_url: str | None) -> None:
    """Deny a pending request, saying why.

    \b
    Example:
      jitctl broker deny 0b7c1e52-4f0e-4d5a-9a53-2f1d1a3f9e10 --reason "use staging"
    """
    act(app, broker_url, request_id, "/deny", reason=reason)


@broker.command(context_settings=CONTEXT)
@ID
@broker_option
@click.pass_obj
def cancel(app: App, request_id: str, broker_url: str | None) -> None:
    """Withdraw a request before access is opened.

    \b
    Example:
      jitctl broker cancel 0b7c1e52-4f0e-4d5a-9a53-2f1d1a3f9e10
    """
    act(app, broker_url, request_id, "/cancel")


@broker.command(context_settings=CONTEXT)
@ID
@click.option(
    "--wait", is_flag=True, help="Then wait until the broker removed the JIT allow rules."
)
@click.option("--timeout", default="2m", show_default=True, help="With --wait: how long.")
@broker_option
@click.pass_obj
def revoke(app: App, request_id: str, wait: bool, timeout: str, broker_url: str | None) -> None:
    """End access early (active, or activating); open connections survive until they close.

    The broker's worker removes the JIT allow rule from the NSGs (Azure has no revoke call):
    until then `release` is pending. Revoked while activating, it waits for Azure to apply or
    fail the initiate first. With --wait: until it is done, then what it removed; exit 7 when
    the rules were not removed (or an Azure Firewall still lets the source in).

    \b
    Example:
      jitctl broker revoke 0b7c1e52-4f0e-4d5a-9a53-2f1d1a3f9e10 --wait
    """
    from jitctl.cli.broker_calls import wait_released
    from jitctl.parsing import parse_duration

    limit = parse_duration(timeout, minimum=timedelta(seconds=1), maximum=timedelta(days=1))
    api = client(app, broker_url)
    doc = api.call("POST", f"/requests/{request_id}/revoke")
    if wait:
        doc = wait_released(app, api, doc, limit.total_seconds())
    show_request(app, doc)
    if wait:
        from jitctl.errors import NotEffective

        release = doc["release"] or {}
        if release.get("status") not in ("done", "not_needed"):
            raise NotEffective(
                f"Request {doc['id']} is revoked but its access was not removed: "
                f"{release.get('detail', 'no release')}.",
                "Remove the JIT allow rule by hand, or give the broker network write rights "
                "(jitctl role show broker).",
            )


@broker.command(context_settings=CONTEXT)
@ID
@click.option("--duration", required=True, help="From now (90m, 1h); within the rules' maximum.")
@broker_option
@click.pass_obj
def extend(app: App, request_id: str, duration: str, broker_url: str | None) -> None:
    """Extend active access: a new end, the duration from now.

    \b
    Example:
      jitctl broker extend 0b7c1e52-4f0e-4d5a-9a53-2f1d1a3f9e10 --duration 1h
    """
    act(app, broker_url, request_id, "/extend", duration=duration)


def _log_output(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from jitctl.cli.globalopts import OUTPUT_FORMATS, app_of

    if value in OUTPUT_FORMATS:  # the global formats: errors are written in them too
        app_of(ctx).output = value
    return value


@broker.command(context_settings=CONTEXT)
@click.option("--since", metavar="T", help="From this time (ISO 8601) or this long ago (24h, 7d).")
@click.option(
    "--verify",
    is_flag=True,
    help="Check the hash chain: exit 0 only if no row was changed or deleted.",
)
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(("table", "json", "jsonc", "yaml", "yamlc", "tsv", "none", "jsonl", "csv")),
    callback=_log_output,
    metavar="FORMAT",
    help="table (default), json, yaml, tsv, none; or the broker's own jsonl or csv export.",
)
@broker_option
@click.pass_obj
def log(app: App, since: str | None, verify: bool, fmt: str | None, broker_url: str | None) -> None:
    """The broker's audit log (hash-chained): every request, decision and Azure answer.

    \b
    Example:
      jitctl broker log --since 24h -o csv
      jitctl broker log --verify
    """
    from jitctl.cli.broker_tables import events_table, log_check
    from jitctl.errors import JitctlError

    api = client(app, broker_url)
    if verify:
        check = api.call("GET", "/log/verify")
        emit(app, check, lambda: log_check(check))
        if not check["ok"]:
            raise JitctlError(
                f"The audit log is broken: {len(check['problems'])} problem(s).",
                "Compare with an export kept outside the database; see docs/broker.md.",
            )
        return
    params = {"format": "csv" if fmt == "csv" else "jsonl", **({"since": since} if since else {})}
    text = api.call("GET", "/log", params=params, text=True)
    if fmt in ("csv", "jsonl"):
        click.echo(text, nl=False)
        return
    import json

    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    emit(app, rows, lambda: events_table(rows))


@broker.command(context_settings=CONTEXT)
@click.argument("vm")
@click.option("-g", "--resource-group", required=True, help="The VM's resource group.")
@click.option(  # not `as_user`: that is the global --as (who the CLI is on the emulator)
    "--as-user", "for_user", help="Whose request (default: you, with your token's groups)."
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    help="A group of --as-user (repeatable): only their token has them.",
)
@click.option(
    "--port", "ports", multiple=True, type=PortType(), help="Port (repeatable; default 3389)."
)
@click.option("--duration", help="How long (default 1h).")
@click.option("--reason", help="As the request would give it.")
@click.option("--ticket", help="As the request would give it.")
@click.option("--break-glass", is_flag=True, help="As a break-glass request.")
@click.option(
    "--source-ip",
    help="The address or range to let in, where the rules limit it (left out: not checked).",
)
@broker_option
@click.pass_obj
def explain(
    app: App,
    vm: str,
    resource_group: str,
    for_user: str | None,
    groups: tuple[str, ...],
    ports: tuple[int, ...],
    duration: str | None,
    reason: str | None,
    ticket: str | None,
    break_glass: bool,
    source_ip: str | None,
    broker_url: str | None,
) -> None:
    """What the rules would do with a request, and who could approve it. Stores nothing.

    \b
    Example:
      jitctl broker explain vm-lnx01 -g rg-prod --as-user dave@contoso.com --group engineers --group oncall --port 22 --reason "restart nginx" --ticket INC47
    """
    from jitctl.cli.broker_tables import decision_text

    body = {
        "vm": vm,
        "resource_group": resource_group,
        "subscription": app.subscription,
        "as_user": for_user,
        "groups": list(groups) if groups else None,
        "ports": list(ports or (3389,)),
        "duration": duration,
        "reason": reason,
        "ticket": ticket,
        "break_glass": break_glass,
        "source": source_ip,
    }
    doc = client(app, broker_url).call(
        "POST", "/explain", {k: v for k, v in body.items() if v is not None}
    )
    emit(app, doc, lambda: decision_text(doc))


# Running a broker (serve, migrate) is in broker_server_cmds.py, to keep each module small.
from jitctl.cli.broker_server_cmds import migrate, serve  # noqa: E402

broker.add_command(migrate)
broker.add_command(serve)
