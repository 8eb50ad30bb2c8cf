"""jitctl broker serve and migrate: run an approval broker (the client's commands are in
broker_cmds.py)."""

from __future__ import annotations

from typing import Any

import click

from jitctl.app import App
from jitctl.cli.globalopts import CONTEXT
from jitctl.cli.output import emit

DB = click.option(
    "--db",
    envvar="JITCTL_BROKER_DB",
    metavar="URL",
    help="SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB (else "
    "JITCTL_BROKER_DB, else SQLite in jitctl's state folder).",
)


@click.command(context_settings=CONTEXT)
@DB
@click.pass_obj
def migrate(app: App, db: str | None) -> None:
    """Bring the broker's database to this jitctl's schema (serve does it on start too).

    \b
    Example:
      jitctl broker migrate --db postgresql+psycopg://broker@db.internal/broker
    """
    from jitctl.cli.broker_run import run_migrate

    emit(app, run_migrate(app, db), lambda: "database migrated")


@click.command(context_settings=CONTEXT)
@DB
@click.option(
    "--policies",
    "policies",
    default="policies",
    show_default=True,
    type=click.Path(),
    help="The policy folder; re-read on change and on SIGHUP.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", "listen", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--tls-cert", type=click.Path(), help="PEM certificate: serve HTTPS (with --tls-key)."
)
@click.option("--tls-key", type=click.Path(), help="PEM private key of --tls-cert.")
@click.option(
    "--issuer",
    envvar="JITCTL_BROKER_ISSUER",
    help="OIDC issuer whose tokens are accepted (else JITCTL_BROKER_ISSUER).",
)
@click.option(
    "--audience",
    envvar="JITCTL_BROKER_AUDIENCE",
    help="The tokens' audience: the broker's app id (else JITCTL_BROKER_AUDIENCE).",
)
@click.option(
    "--client-id",
    envvar="JITCTL_BROKER_CLIENT_ID",
    help="The web pages' OIDC client id; its redirect URIs are <broker>/auth/callback and "
    "<broker>/auth/signed-out "
    "(else JITCTL_BROKER_CLIENT_ID; without it, and without --emulator, no pages).",
)
@click.option(
    "--admin",
    "admins",
    multiple=True,
    envvar="JITCTL_BROKER_ADMINS",
    help="group:NAME or user:UPN who run the broker (repeatable; else JITCTL_BROKER_ADMINS, space-separated).",
)
@click.option(
    "--auditor",
    "auditors",
    multiple=True,
    envvar="JITCTL_BROKER_AUDITORS",
    help="group:NAME or user:UPN who may read the log (repeatable).",
)
@click.option(
    "--worker/--no-worker",
    default=True,
    envvar="JITCTL_BROKER_WORKER",
    show_default=True,
    help="Run the worker (initiates, verifies, sweeps, revokes, notifies) beside the API. "
    "--no-worker serves the API and pages alone: run at least one replica with it.",
)
@click.pass_obj
def serve(app: App, **options: Any) -> None:
    """Run the approval broker: the JSON API, the web pages, and the worker that opens
    approved access.

    \b
    Examples (the emulator's identity provider signs the tokens, then Entra ID's):
      jitctl broker serve --policies policies/examples/rg-prod-approvals.yaml --admin group:broker-admins
      jitctl broker serve --policies policies --issuer https://login.microsoftonline.com/TENANT/v2.0 \\
        --audience 11111111-2222-3333-4444-555555555555 --admin group:jit-admins
    """
    from jitctl.cli.broker_run import run_serve

    run_serve(app, **options)
