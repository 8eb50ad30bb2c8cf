"""The broker pages' sign-in and sign-out (OpenID Connect, signin.py) and their CSRF check:
a part of the Pages class (pages.py), kept apart to keep each module small."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jitctl.broker.errors import IdentityUnavailable, NotPermitted, Unauthenticated
from jitctl.errors import JitctlError

if TYPE_CHECKING:
    from jitctl.broker.api import Verifier
    from jitctl.broker.rules import Principal
    from jitctl.broker.signin import OidcClient
    from jitctl.broker.store import Store
    from jitctl.broker.websessions import WebSessions

log = logging.getLogger("jitctl.broker.pages")

SIGNED_IN_AT_MOST = timedelta(hours=8)  # a working day, whatever a token's own lifetime


def _expiry(access_token: str, now: datetime) -> datetime:
    """Until when a sign-in holds: the (already verified) access token's `exp`, at most a
    working day."""
    import jwt

    exp = jwt.decode(access_token, options={"verify_signature": False}).get("exp")
    latest = now + SIGNED_IN_AT_MOST
    if not isinstance(exp, (int, float)):
        return latest
    return min(datetime.fromtimestamp(exp, timezone.utc), latest)


@runtime_checkable
class IdTokenChecker(Protocol):
    """A verifier that also checks a sign-in's ID token (identity.TokenVerifier)."""

    def check_id_token(self, token: str, client_id: str, nonce: str) -> dict[str, Any]: ...


class SignInSettings(Protocol):
    """What the sign-in reads of the pages' settings (pages.PagesConfig)."""

    @property
    def oidc(self) -> OidcClient: ...

    @property
    def public_url(self) -> str | None: ...


class SignIn:
    """/auth/login, /auth/callback, /auth/logout and /auth/signed-out."""

    config: SignInSettings
    verifier: Verifier
    store: Store
    sessions: WebSessions

    # the Pages class's own
    _error: Callable[[Request, JitctlError, Principal | None], Response]
    _render: Callable[..., Response]

    def forbidden(self, request: Request) -> Response:
        err = NotPermitted(
            "The form's anti-forgery token is missing or stale.",
            "Reload the page and submit the form again.",
        )
        return self._error(request, err, None)

    def _redirect_uri(self, request: Request, path: str = "/auth/callback") -> str:
        base = self.config.public_url or str(request.base_url)
        return base.rstrip("/") + path

    # --- sign-in --------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        try:
            started = await run_in_threadpool(self.config.oidc.start, self._redirect_uri(request))
        except JitctlError as err:
            return self._error(request, err, None)
        request.session["signin"] = {
            "state": started.state,
            "verifier": started.verifier,
            "nonce": started.nonce,
            "next": _local(request.query_params.get("next")),
        }
        return RedirectResponse(started.url, 303, headers={"Cache-Control": "no-store"})

    async def callback(self, request: Request) -> Response:
        pending = request.session.pop("signin", None)
        params = request.query_params
        try:
            if params.get("error"):
                raise Unauthenticated(
                    f"The sign-in failed: {params.get('error_description') or params['error']}.",
                    "Sign in again.",
                )
            state = params.get("state", "")
            if not pending or not secrets.compare_digest(state, pending["state"]):
                raise Unauthenticated(
                    "This sign-in was not started here, or was already used.", "Sign in again."
                )
            tokens = await run_in_threadpool(
                self.config.oidc.exchange,
                params.get("code", ""),
                pending["verifier"],
                self._redirect_uri(request),
            )
            if not isinstance(self.verifier, IdTokenChecker):  # a verifier of the API alone
                raise IdentityUnavailable(
                    "This broker's token verifier cannot check a sign-in's ID token.",
                    "Run the broker with its own verifier (--issuer and --audience).",
                )
            await run_in_threadpool(
                self.verifier.check_id_token,
                tokens.id_token,
                self.config.oidc.client_id,
                str(pending.get("nonce", "")),
            )
            who = await run_in_threadpool(self.verifier.verify, tokens.access_token)
            until = _expiry(tokens.access_token, self.store.clock.now())
            sid = await run_in_threadpool(self.sessions.open, who, until, tokens.id_token)
        except JitctlError as err:
            return self._error(request, err, None)
        request.session.clear()  # a new session: nothing from before the sign-in carries over
        request.session.update(sid=sid, csrf=secrets.token_urlsafe(32))
        log.info("signed in to the pages: %s", who.upn)
        return RedirectResponse(pending["next"], 303)

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request, form.get("csrf")):
            return self.forbidden(request)
        sid = request.session.get("sid")
        request.session.clear()
        id_token = None
        if sid:
            try:
                id_token = await run_in_threadpool(self.sessions.close, str(sid))
            except JitctlError as err:  # the cookie is gone: the browser is signed out here
                log.warning("sign-in not removed from the database: %s", err.message)
        back = self._redirect_uri(request, "/auth/signed-out")
        try:
            target = await run_in_threadpool(self.config.oidc.logout_url, back, id_token)
        except JitctlError as err:  # the issuer is unreachable: the broker's session is over
            log.warning("sign-out at the identity provider skipped: %s", err.message)
            target = None
        if target is None:
            return self._render(request, "signed_out.html", who=None)
        return RedirectResponse(target, 303, headers={"Cache-Control": "no-store"})

    async def signed_out(self, request: Request) -> Response:
        """Where the issuer sends the browser back after its sign-out."""
        return self._render(request, "signed_out.html", who=None)


def _local(target: str | None) -> str:
    """Only a path on this site: a sign-in never sends anyone elsewhere (open redirects)."""
    if not target:
        return "/pending"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/pending"
    return target


def csrf_ok(request: Request, sent: Any) -> bool:
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not expected or not isinstance(sent, str):
        return False
    return secrets.compare_digest(sent.encode(), expected.encode())
