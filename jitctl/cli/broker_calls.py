"""The broker's API as the CLI calls it: a client with the URL and token the options give,
and --wait's polling until access is live."""

from __future__ import annotations

from typing import Any

import click

from jitctl.app import App

AUDIENCE = "jitctl.broker_audience"  # where --broker-audience leaves its value (ctx.meta)


def _keep_audience(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    ctx.meta[AUDIENCE] = value or ""


def audience_option(f: Any) -> Any:
    """--broker-audience, beside every --broker: whom the CLI asks Entra ID a token for. Not a
    parameter of the command: broker_calls.client reads it, one place for every command."""
    return click.option(
        "--broker-audience",
        envvar="JITCTL_BROKER_AUDIENCE",
        metavar="ID",
        expose_value=False,
        callback=_keep_audience,
        help="The broker's application (client) id or App ID URI, for its token from Entra ID "
        "(else JITCTL_BROKER_AUDIENCE or the config file; not needed with --emulator).",
    )(f)


def client(app: App, url: str | None) -> Any:
    from jitctl.broker.client import BrokerClient
    from jitctl.broker.client_auth import broker_token
    from jitctl.errors import BadInput

    if not url:
        raise BadInput(
            "No broker given.", "Pass --broker URL or set JITCTL_BROKER_URL to the broker's URL."
        )
    ctx = click.get_current_context(silent=True)
    audience = str(ctx.meta.get(AUDIENCE, "")) if ctx else ""
    return BrokerClient(url, lambda: broker_token(app, audience), app.broker_http)


def wait_active(app: App, api: Any, doc: dict[str, Any], limit: float) -> dict[str, Any]:
    """Until the broker says active (jitctl.broker.via.wait_active), notes on stderr."""
    from jitctl.broker.via import wait_active as wait
    from jitctl.cli.output import warn

    return wait(api, doc, limit, app.clock, lambda msg: warn(app, msg))


def wait_released(app: App, api: Any, doc: dict[str, Any], limit: float) -> dict[str, Any]:
    """Until the broker's worker has removed a revoked request's JIT allow rules (or failed
    to); still pending after `limit` seconds: TimedOut, with the id."""
    from jitctl.errors import TimedOut

    waited = 0.0
    while (doc.get("release") or {}).get("status") == "pending":
        if waited >= limit:
            raise TimedOut(
                f"Request {doc['id']} is revoked, but the broker has not removed its JIT allow "
                "rules yet.",
                f"See where it is with: jitctl broker show {doc['id']}",
            )
        app.clock.sleep(2.0)  # the worker looks for work every 2 s
        waited += 2.0
        doc = api.call("GET", f"/requests/{doc['id']}")
    return doc


def broker_ready(app: App, req: Any) -> Any:
    """`--via-broker`: access through the broker (jitctl.broker.via), for a ConnectRequest;
    where to connect comes back as the broker found it (no Azure call from here)."""
    from jitctl.broker.via import ready
    from jitctl.cli.output import warn

    ask = broker_ask(app, req)
    return ready(client(app, req.broker_url), ask, app.clock, lambda msg: warn(app, msg))


def broker_ask(app: App, req: Any) -> Any:
    """What to ask the broker for, from a ConnectRequest (the source found once)."""
    from jitctl.broker.via import BrokerAsk
    from jitctl.cli.output import warn
    from jitctl.errors import BadInput

    if req.policy_name:
        raise BadInput(
            "--policy-name is the broker's choice with --via-broker.", "Leave out --policy-name."
        )
    vm, group, subscription = via_target(app, req.vm)
    source = req.source_ip or app.public_ip(lambda note: warn(app, note))
    return BrokerAsk(
        vm,
        group,
        subscription,
        req.port,
        source,
        req.justification,
        req.ticket,
        req.duration,
        req.min_remaining,
        req.timeout,
        req.private,
    )


def broker_keeper(
    app: App,
    req: Any,
    ready: Any,
    on_moved: Any = None,
    on_readdressed: Any = None,
) -> Any:
    """--keep-alive --via-broker: renewals asked of the broker (jitctl.broker.viakeep)."""
    import dataclasses

    from jitctl.broker.viakeep import BrokerKeepAlive
    from jitctl.cli.output import warn

    ask = dataclasses.replace(broker_ask(app, req), source=ready.source)
    return BrokerKeepAlive(
        client(app, req.broker_url),
        ask,
        app.clock,
        ready,
        lambda msg: warn(app, msg),
        on_moved,
        on_readdressed,
    )


def via_target(app: App, sel: Any) -> tuple[str, str, str | None]:
    """The VM as the broker is asked for it: name, group and subscription (none: the
    broker's), read from the options alone, since a requester may see no subscription."""
    from jitctl.clouds import default_resource_group
    from jitctl.errors import BadInput
    from jitctl.ids import segments

    given = sel.given[0] if sel.given else ""
    if given.lower().startswith("/subscriptions/"):
        parts = segments(given)
        if "virtualmachines" in parts and "resourcegroups" in parts:
            return parts["virtualmachines"], parts["resourcegroups"], parts["subscriptions"]
        raise BadInput(f"'{given}' is not a VM id.", "Give a VM name and -g, or the VM's id.")
    group = sel.resource_group or default_resource_group()
    if not given or not group:
        raise BadInput("Name the VM and its resource group.", "Give VM -g RESOURCE_GROUP.")
    return given, group, app.subscription


def show_live(app: App, doc: dict[str, Any]) -> None:
    """An active request and the broker's verify proof, as `request --wait` shows a grant and
    its proof: exit 0 only when the proof says access is effective."""
    from jitctl.cli.broker_tables import proof_text, request_text
    from jitctl.cli.output import emit, warn
    from jitctl.errors import NotEffective

    proof = (doc.get("access") or {}).get("verification")
    if proof is None:
        raise NotEffective(
            f"The broker says request {doc['id']} is active but shows no proof that it is live.",
            f"Upgrade the broker, or check yourself: jitctl broker show {doc['id']}",
        )
    if proof.get("trust"):  # the firewall could not be read: the verdict is Azure's grant
        warn(app, f"warning: {proof['trust']}.")
    emit(app, doc, lambda: request_text(doc, app.clock.now()) + "\n" + proof_text(proof))
    if not proof["effective"]:
        raise NotEffective(
            f"Request {doc['id']} is active, but the broker's verify found it not effective.",
            f"See what it found: jitctl broker show {doc['id']} -o json",
        )


PAGE = 100  # requests asked for at once


def list_requests(app: App, api: Any, scope: str, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` requests of a scope, following the broker's `older` cursor page by
    page; a note on stderr when there are more (the document itself stays one list)."""
    from jitctl.cli.output import warn

    rows: list[dict[str, Any]] = []
    older: str | None = None
    while len(rows) < limit:
        params = {"scope": scope, "limit": str(min(PAGE, limit - len(rows)))}
        if older:
            params["older"] = older
        doc = api.call("GET", "/requests", params=params)
        rows += doc["requests"]
        older = doc.get("older")
        if not older:
            return rows
    warn(app, f"The newest {limit} shown; there are more: raise --limit.")
    return rows
