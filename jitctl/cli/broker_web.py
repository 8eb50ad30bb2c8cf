"""The web pages' wiring for `broker serve`: the OIDC client (the issuer's endpoints, or with
--emulator the emulator's identity provider, in-process), the session secret, and the VM
exposure read through the broker's own Azure identity."""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

from jitctl.app import App

log = logging.getLogger("jitctl.broker")

EMULATOR_AUTHORIZE = "/emulator/authorize"
EMULATOR_LOGOUT = "/emulator/logout"


class IdpTransport:
    """httpx transport to the in-process emulator's identity provider (discovery, token)."""

    def __init__(self, idp: Any) -> None:
        self.idp = idp

    def handle_request(self, request: Any) -> Any:
        import httpx

        status, headers, body = self.idp.handle(
            request.method, str(request.url), dict(request.headers), request.read()
        )
        return httpx.Response(status, headers=headers, content=body)

    def close(self) -> None:
        pass


def emulator_signin_routes(idp: Any) -> tuple[Any, ...]:
    """The emulator's sign-in and sign-out pages on the broker's own address: the in-process
    issuer has no address a browser could open. Only with --emulator."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from jitctl.emulator.backend import DEFAULT_TENANT

    def relay(endpoint: str) -> Any:
        async def answer(request: Request) -> Response:
            raw = await request.body()
            url = f"{idp.base_url}/{DEFAULT_TENANT}/oauth2/v2.0/{endpoint}?{request.url.query}"
            status, headers, body = await run_in_threadpool(
                idp.handle, request.method, url, dict(request.headers), raw
            )
            return Response(body, status, headers=headers)

        return answer

    return (
        Route(EMULATOR_AUTHORIZE, relay("authorize"), methods=["GET", "POST"]),
        Route(EMULATOR_LOGOUT, relay("logout"), methods=["GET", "POST"]),
    )


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to any interface


def check_session_secret(app: App, client_id: str | None, host: str) -> None:
    """Refuse to serve pages signed with a random key on an address others reach: behind a
    load balancer each replica would sign with its own key, and a sign-in made on one replica
    would fail on the next (nor would a restart keep anyone signed in)."""
    from jitctl.errors import BadInput

    pages = app.emulator or bool(client_id)
    if pages and not is_loopback(host) and not _secret():
        raise BadInput(
            f"The web pages on {host} need a session secret shared by every replica: "
            "set JITCTL_BROKER_SESSION_SECRET (e.g. `openssl rand -base64 32`).",
            "Set JITCTL_BROKER_SESSION_SECRET to the same random value on every replica, "
            "or serve on 127.0.0.1.",
        )


def _secret() -> str:
    return os.environ.get("JITCTL_BROKER_SESSION_SECRET", "").strip()


def pages_config(
    app: App, verifier: Any, client_id: str | None, https: bool, exposure: Any = None
) -> Any:
    """The pages' settings, or None (no pages) without a client id outside --emulator."""
    import httpx

    from jitctl.broker.pages import PagesConfig
    from jitctl.broker.signin import OidcClient

    public = os.environ.get("JITCTL_BROKER_PUBLIC_URL", "").strip() or None
    secret = _secret()
    extra: tuple[Any, ...] = ()
    if app.emulator:
        from jitctl.emulator.oidc import BROKER_APP_ID

        idp = app.identity_provider()
        oidc = OidcClient(
            getattr(verifier, "issuer", idp.issuer),
            client_id or BROKER_APP_ID,
            getattr(verifier, "audience", BROKER_APP_ID),
            http=httpx.Client(transport=IdpTransport(idp), timeout=10.0),  # type: ignore[arg-type]
            authorize_url=EMULATOR_AUTHORIZE,
            end_session_url=EMULATOR_LOGOUT,
        )
        extra = emulator_signin_routes(idp)
    elif not client_id:
        log.warning("no --client-id (JITCTL_BROKER_CLIENT_ID): the web pages are off")
        return None
    else:
        oidc = OidcClient(
            verifier.issuer,
            client_id,
            verifier.audience,
            client_secret=os.environ.get("JITCTL_BROKER_CLIENT_SECRET") or None,
        )
    if not secret:
        # loopback only (check_session_secret): sessions end when this process does
        log.warning("JITCTL_BROKER_SESSION_SECRET is not set: a random one signs the sessions")
        secret = secrets.token_urlsafe(32)
    return PagesConfig(
        oidc=oidc,
        secret=secret,
        public_url=public,
        https_only=https or bool(public and public.startswith("https://")),
        exposure=exposure,
        extra_routes=extra,
    )


def exposure_reader(app: App) -> Any:
    """The VM's exposure (audit's findings), through the broker's identity, kept briefly."""
    from jitctl.broker.vmexposure import ExposureCache
    from jitctl.services.audit import audit

    return ExposureCache(lambda sub: audit(app.fleet(), [sub], app.clock.now()))
