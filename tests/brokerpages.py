"""The broker's web pages in-process for tests: the API and the pages on a SQLite store, the
issue's rules on the emulator's demo world, the emulator as the identity provider (its
sign-in page on the broker's address, as `broker serve --emulator` has it)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import httpx

from jitctl.app import App
from jitctl.broker.api import Settings, create_app
from jitctl.broker.store import Store
from jitctl.broker.views import Access
from jitctl.cli.broker_web import exposure_reader, pages_config
from jitctl.emulator.seeder import DEMO_SUBSCRIPTION
from jitctl.parsing import parse_vm
from tests.brokerapi import ASK, POLICY, SUB, InProcess, make_store, rules_in

DEMO_POLICY = POLICY.replace(SUB, DEMO_SUBSCRIPTION).replace("rg-prod", "rg-jit-demo")
DEMO_ASK = {**ASK, "vm": "vm-win01", "resource_group": "rg-jit-demo", "ports": [3389]}
BASE = "http://127.0.0.1:8765"


def build(
    tmp_path: Path,
    app: App,
    monkeypatch: Any,
    page_size: int = 50,
    https: bool = False,
    end_session: bool = True,
) -> tuple[Any, Store]:
    """The ASGI app (API and pages) and its store; without `end_session`, the issuer names no
    end_session_endpoint (sign-out is the broker's alone)."""
    monkeypatch.setenv("JITCTL_BROKER_SESSION_SECRET", "test-secret-" + "x" * 32)
    store = make_store(tmp_path, app.clock)
    rules = rules_in(tmp_path, DEMO_POLICY)
    verifier = app.token_verifier(None, None)

    def tags(vm_id: str) -> tuple[tuple[str, str], ...]:
        return app.gateway().get_vm(parse_vm(vm_id, resource_group=None, subscription_id=None)).tags

    settings = Settings(
        access=Access(admins=("group:broker-admins",)), subscription=DEMO_SUBSCRIPTION, vm_tags=tags
    )
    pages = pages_config(app, verifier, None, https=https, exposure=exposure_reader(app))
    pages = dataclasses.replace(pages, page_size=page_size)
    if not end_session:
        pages.oidc.end_session_url = None
        pages.oidc.endpoints().pop("end_session_endpoint")
    return create_app(store, lambda: rules, verifier, settings, pages), store


class Browser:
    """A person with a cookie jar, on the in-process app (no JavaScript, as a form post)."""

    def __init__(self, asgi: Any, base: str = BASE) -> None:
        self.http = httpx.Client(transport=InProcess(asgi), base_url=base)

    def sign_in(self, upn: str, next_page: str = "/pending") -> httpx.Response:
        start = self.http.get("/auth/login", params={"next": next_page})
        assert start.status_code == 303, start.text
        picked = self.http.get(start.headers["location"] + "&login_hint=" + upn)
        assert picked.status_code == 302, picked.text
        back = self.http.get(picked.headers["location"])
        assert back.status_code == 303, back.text
        return back

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def csrf(self, path: str = "/mine") -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.get(path).text)
        assert found, "no CSRF field on the page"
        return found.group(1)

    def post(self, path: str, csrf: str | None = "auto", **form: str) -> httpx.Response:
        data = dict(form)
        if csrf == "auto":
            data["csrf"] = self.csrf()
        elif csrf is not None:
            data["csrf"] = csrf
        return self.http.post(path, data=data)


def ask(asgi: Any, app: App, upn: str = "alice@contoso.com", **changes: Any) -> dict[str, Any]:
    """A request made through the API with the emulator's token for `upn`; `asgi` is the app,
    or the address of a server running it."""
    token = app.identity_provider().mint(upn)
    where: dict[str, Any] = (
        {"base_url": asgi}
        if isinstance(asgi, str)
        else {"transport": InProcess(asgi), "base_url": BASE}
    )
    with httpx.Client(**where) as http:
        made = http.post(
            "/api/v1/requests",
            json={**DEMO_ASK, **changes},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert made.status_code == 201, made.text
    return dict(made.json())
