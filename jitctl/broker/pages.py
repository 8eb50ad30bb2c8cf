"""The broker's web pages, served by the API's app: pending requests to decide, my requests,
the history with each request's audit trail; approve, deny, cancel and revoke as plain HTML
forms (POST, then a redirect), so they work without JavaScript.

- Sign-in: OpenID Connect code + PKCE + nonce (signin.py); the access token is checked by the
  API's TokenVerifier once, and who it names is kept in the database until the token's expiry
  (websessions.py: the cookie holds a random id), so an expired token signs the person out. Sign-out ends the issuer's session too when it has an end_session_endpoint.
- Session: Starlette's SessionMiddleware, a cookie signed with the server's secret
  (itsdangerous), HttpOnly, SameSite=Lax, Secure when the broker is served over HTTPS.
- CSRF: a random token per session, in a hidden field of every form, checked on every POST
  (403 without it). SameSite=Lax alone would leave same-site subdomains able to post.
- What a person may do is decided by the API's own handlers (one definition): the pages call
  them with the signed-in principal, so a requester's POST to approve their own request
  answers 403 here as in the API.
- Jinja2 with autoescape: a requester's reason, ticket or VM name is text, never markup.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from jitctl.broker.api import Api, Call, Verifier
from jitctl.broker.errors import Unauthenticated
from jitctl.broker.lifecycle import Action
from jitctl.broker.pagesauth import SignIn, csrf_ok
from jitctl.broker.paging import Page
from jitctl.broker.records import RequestRecord
from jitctl.broker.rules import Principal
from jitctl.broker.signin import OidcClient
from jitctl.broker.views import error_answer, request_json
from jitctl.broker.vmexposure import VmExposure
from jitctl.broker.websessions import WebSessions
from jitctl.errors import BadInput, JitctlError
from jitctl.parsing import format_human_duration, parse_iso_duration

log = logging.getLogger("jitctl.broker.pages")

SESSION_COOKIE = "jitctl_broker"
SESSION_AGE = 8 * 3600  # a working day; the token inside expires sooner and is checked
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
FORMS = {  # what a button posts -> the API handler's action and the body's text field
    "approve": "comment",
    "deny": "reason",
    "cancel": "comment",
    "revoke": "comment",
}


@dataclass(frozen=True)
class PagesConfig:
    oidc: OidcClient
    secret: str  # signs the session cookie; replicas share it (JITCTL_BROKER_SESSION_SECRET)
    public_url: str | None = None  # the broker's address as browsers see it
    https_only: bool = False  # the cookie's Secure flag
    exposure: Callable[[str], VmExposure] | None = None
    page_size: int = 50
    extra_routes: tuple[BaseRoute, ...] = ()  # e.g. the emulator's sign-in, with --emulator

    def attach(self, api: Api, verifier: Verifier) -> tuple[list[Any], list[Any]]:
        """The pages' routes and middleware on the API's handlers (create_app's `pages`)."""
        pages = Pages(api, verifier, self)
        return list(pages.routes()), list(pages.middleware())


def _templates() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("jitctl.broker", "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["span"] = lambda iso: format_human_duration(parse_iso_duration(iso)) if iso else ""
    return env


def _when(at: datetime | str | None) -> str:
    """One way to show a time on every page (rows, ends, the trail), to the second, in UTC:
    the store gives datetimes, the API's JSON ISO 8601 text."""
    if not at:
        return ""
    if isinstance(at, str):
        at = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class Pages(SignIn):
    config: PagesConfig

    def __init__(self, api: Api, verifier: Verifier, config: PagesConfig) -> None:
        self.api = api
        self.store = api.store
        self.access = api.access
        self.verifier = verifier
        self.config = config
        self.sessions = WebSessions(api.store)
        self.env = _templates()

    def middleware(self) -> list[Middleware]:
        return [
            Middleware(
                SessionMiddleware,
                secret_key=self.config.secret,
                session_cookie=SESSION_COOKIE,
                max_age=SESSION_AGE,
                same_site="lax",
                https_only=self.config.https_only,
            )
        ]

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", lambda _: RedirectResponse("/pending", 303)),
            Route("/auth/login", self.login),
            Route("/auth/callback", self.callback),
            Route("/auth/logout", self.logout, methods=["POST"]),
            Route("/auth/signed-out", self.signed_out),
            Route("/pending", self._page("pending.html", self.pending)),
            Route("/mine", self._page("mine.html", self.mine)),
            Route("/history", self._page("history.html", self.history)),
            Route("/requests/{id}", self._page("request.html", self.detail)),
            Route("/requests/{id}/{action}", self.act, methods=["POST"]),
            *self.config.extra_routes,
        ]

    # --- plumbing ------------------------------------------------------------------------------

    def _render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
        session = request.scope.get("session", {})
        html = self.env.get_template(name).render(
            csrf=session.get("csrf", ""), flash=session.pop("flash", None), **ctx
        )
        return HTMLResponse(html, status, headers=HEADERS)

    def _error(self, request: Request, err: JitctlError, who: Principal | None) -> Response:
        status, body = error_answer(err)
        return self._render(request, "error.html", status, who=who, error=body["error"])

    def _who(self, request: Request) -> Principal | None:
        sid = request.session.get("sid")
        if not sid:
            return None
        who = self.sessions.find(str(sid))
        if who is None:  # signed out, or the token it came with expired: sign in again
            request.session.clear()
        return who

    def _page(
        self, template: str, build: Callable[[Principal, Request], dict[str, Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def page(request: Request) -> Response:
            who = None
            try:
                who = await run_in_threadpool(self._who, request)
                if who is None:
                    target = request.url.path + (
                        f"?{request.url.query}" if request.url.query else ""
                    )
                    return RedirectResponse(f"/auth/login?next={quote(target)}", 303)
                ctx = await run_in_threadpool(build, who, request)
            except JitctlError as err:
                return self._error(request, err, who)
            return self._render(request, template, who=who, **ctx)

        return page

    # --- pages ----------------------------------------------------------------------------------

    def _rows(self, recs: list[RequestRecord], who: Principal) -> list[dict[str, Any]]:
        events = self.store.events_of([r.id for r in recs])
        asked = {e["request_id"]: e["data"] for e in events if e["action"] == Action.REQUEST.value}
        rows = []
        for rec in recs:
            row = request_json(rec, who, self.access, events)
            row["created"] = rec.created_at
            row["reasons"] = asked.get(rec.id, {}).get("reasons", [])
            rows.append(row)
        return rows

    def _exposure(self, vm_ids: list[str]) -> dict[str, VmExposure]:
        if self.config.exposure is None:
            return {}
        return {vm_id: self.config.exposure(vm_id) for vm_id in dict.fromkeys(vm_ids)}

    def _listed(self, who: Principal, request: Request, scope: str) -> Page:
        """The API's own page of a scope (one way to page, for the pages and the API)."""
        return self.api.page(who, scope, self.config.page_size, request.query_params.get("older"))

    def pending(self, who: Principal, request: Request) -> dict[str, Any]:
        page = self._listed(who, request, "pending")
        return {
            "tab": "pending",
            "rows": self._rows(page.rows, who),
            "exposure": self._exposure([r.vm_id for r in page.rows]),
            "older": page.older,
        }

    def mine(self, who: Principal, request: Request) -> dict[str, Any]:
        page = self._listed(who, request, "mine")
        return {"tab": "mine", "rows": self._rows(page.rows, who), "older": page.older}

    def history(self, who: Principal, request: Request) -> dict[str, Any]:
        page = self._listed(who, request, "all")
        return {"tab": "history", "rows": self._rows(page.rows, who), "older": page.older}

    def detail(self, who: Principal, request: Request) -> dict[str, Any]:
        shown = self.api.show(Call(who, {}, {}, {"id": request.path_params["id"]}))
        rec = self.store.get(shown["id"])
        events = self.store.events_of([rec.id])
        return {
            "tab": "",
            "row": self._rows([rec], who)[0],
            "events": events,
            "exposure": self._exposure([rec.vm_id]),
        }

    # --- decisions --------------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request, form.get("csrf")):
            return self.forbidden(request)
        action = request.path_params["action"]
        rid = request.path_params["id"]
        who = None
        try:
            who = await run_in_threadpool(self._who, request)
            if who is None:
                raise Unauthenticated("You are not signed in.", "Sign in, then try again.")
            if action not in FORMS:
                raise BadInput(f"No action '{action[:20]}'.", "Use the page's buttons.")
            text = str(form.get("text") or "").strip()
            body = {FORMS[action]: text} if text else {}
            call = Call(who, body, {}, {"id": rid})
            handler = {
                "approve": self.api.approve,
                "deny": self.api.deny,
                "cancel": self.api.decide(Action.CANCEL),
                "revoke": self.api.decide(Action.REVOKE),
            }[action]
            done = await run_in_threadpool(handler, call)
        except JitctlError as err:
            return self._error(request, err, who)
        request.session["flash"] = f"{action.capitalize()}: the request is now {done['state']}."
        return RedirectResponse(f"/requests/{quote(rid)}", 303)
