"""Running a broker: its store, rules, verifier and worker wired from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jitctl.app import App
from jitctl.errors import BadInput


def run_migrate(app: App, db: str | None) -> dict[str, Any]:
    from jitctl.broker.store import Store

    store = Store.open(db, app.clock)
    try:
        store.migrate()
    finally:
        store.engine.dispose()
    return {"migrated": True, "database": store.engine.url.render_as_string(hide_password=True)}


def verifier_for(app: App, issuer: str | None, audience: str | None) -> Any:
    """Tokens checked against the issuer's keys; with --emulator the emulator is the issuer
    (its identity provider, the same checking code)."""
    if not app.emulator and (not issuer or not audience):
        raise BadInput(
            "The broker needs the issuer and the audience of the tokens it accepts.",
            "Pass --issuer and --audience (or set JITCTL_BROKER_ISSUER and "
            "JITCTL_BROKER_AUDIENCE); with --emulator the emulator is the issuer.",
        )
    return app.token_verifier(issuer, audience)


def principals(values: tuple[str, ...]) -> tuple[str, ...]:
    """group:NAME / user:UPN, repeated or space-separated (as an environment variable gives them)."""
    out = tuple(p for v in values for p in v.split())
    bad = [p for p in out if not p.startswith(("group:", "user:"))]
    if bad:
        raise BadInput(f"'{bad[0]}' is not a principal.", "Write group:NAME or user:UPN.")
    return out


def run_serve(
    app: App,
    db: str | None,
    policies: str,
    host: str,
    listen: int,
    tls_cert: str | None,
    tls_key: str | None,
    issuer: str | None,
    audience: str | None,
    client_id: str | None,
    admins: tuple[str, ...],
    auditors: tuple[str, ...],
    worker: bool = True,
    verifier: Any = None,
) -> None:
    from jitctl.broker.api import Settings, create_app
    from jitctl.broker.azureside import JitCheck, VmTags
    from jitctl.broker.server import FolderRules, ServeConfig, ServedBroker, check_tls, make_worker
    from jitctl.broker.server import serve as run_uvicorn
    from jitctl.broker.store import Store
    from jitctl.broker.views import Access
    from jitctl.cli.broker_web import check_session_secret, exposure_reader, pages_config

    config = ServeConfig(
        host, listen, Path(tls_cert) if tls_cert else None, Path(tls_key) if tls_key else None
    )
    check_tls(config)  # every check that needs nothing else, before the database is touched
    check_session_secret(app, client_id, host)
    access = Access(principals(admins), principals(auditors))
    rules = FolderRules(Path(policies))
    verifier = verifier or verifier_for(app, issuer, audience)
    store = Store.open(db, app.clock)
    store.migrate()

    gateway = app.gateway()
    if hasattr(gateway, "warm"):  # the SDKs imported before the first approval needs them
        gateway.warm(app.default_subscription())
    settings = Settings(
        access=access,
        subscription=app.default_subscription(),
        vm_tags=VmTags(gateway),
        jit_check=JitCheck(gateway),
    )
    pages = pages_config(
        app, verifier, client_id, https=config.tls_cert is not None, exposure=exposure_reader(app)
    )
    serve = app.serve_broker or run_uvicorn
    try:
        serve(
            ServedBroker(
                create_app(store, rules, verifier, settings, pages),
                make_worker(store, gateway, app.clock) if worker else None,
                rules,
                config,
            )
        )
    finally:
        store.engine.dispose()
