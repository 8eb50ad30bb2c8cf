"""The broker's web pages without a browser: who may see and do what (anonymous, requester,
approver, admin, another engineer), CSRF, the sign-in's checks, escaping, and the cookie."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from jitctl.app import App
from jitctl.broker.lifecycle import State
from jitctl.broker.store import Store
from jitctl.emulator.oidc import BROKER_APP_ID
from tests.brokerpages import BASE, Browser, ask, build


@pytest.fixture
def web(tmp_path: Any, app: App, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Store]:
    return build(tmp_path, app, monkeypatch)


def as_user(web: tuple[Any, Store], upn: str) -> Browser:
    person = Browser(web[0])
    person.sign_in(upn)
    return person


def buttons(html: str) -> list[str]:
    return re.findall(r'data-action="(\w+)"', html)


def test_anonymous_is_sent_to_sign_in_and_cannot_post(web: tuple[Any, Store], app: App) -> None:
    asgi, store = web
    made = ask(asgi, app)
    anon = Browser(asgi)
    for path in ("/", "/pending", "/mine", "/history", f"/requests/{made['id']}"):
        got = anon.get(path)
        assert got.status_code == 303, path
        if path != "/":
            assert got.headers["location"] == f"/auth/login?next={path}"
    posted = anon.post(f"/requests/{made['id']}/approve", csrf=None)
    assert posted.status_code == 403 and "anti-forgery token" in posted.text
    assert store.get(made["id"]).state is State.PENDING


def test_the_requester_gets_no_approve_button_and_a_post_to_approve_is_403(
    web: tuple[Any, Store], app: App
) -> None:
    asgi, store = web
    made = ask(asgi, app)
    alice = as_user(web, "alice@contoso.com")
    assert made["id"] not in alice.get("/pending").text  # never hers to decide
    mine = alice.get("/mine")
    assert made["id"] in mine.text and buttons(mine.text) == ["cancel"]
    detail = alice.get(f"/requests/{made['id']}")
    assert detail.status_code == 200 and buttons(detail.text) == ["cancel"]
    refused = alice.post(f"/requests/{made['id']}/approve", text="lgtm")
    assert refused.status_code == 403 and "(self_approval)" in refused.text
    assert store.get(made["id"]).state is State.PENDING
    cancelled = alice.post(f"/requests/{made['id']}/cancel")
    assert cancelled.status_code == 303
    assert store.get(made["id"]).state is State.CANCELLED


def test_the_approver_sees_the_request_with_the_rules_words_and_the_vm_exposure_and_approves(
    web: tuple[Any, Store], app: App
) -> None:
    asgi, store = web
    made = ask(asgi, app)
    bob = as_user(web, "bob@contoso.com")
    pending = bob.get("/pending").text
    assert made["id"] in pending and buttons(pending) == ["approve", "deny"]
    assert "needs 1 approval(s) from group:ops-leads or user:lead@contoso.com" in pending
    assert "not-in-policy: vm-win01 is in no JIT policy." in pending  # audit's finding
    no_token = bob.post(f"/requests/{made['id']}/approve", csrf=None)
    wrong = bob.post(f"/requests/{made['id']}/approve", csrf="forged")
    assert no_token.status_code == wrong.status_code == 403
    assert store.get(made["id"]).state is State.PENDING
    done = bob.post(f"/requests/{made['id']}/approve", text="ok for INC42")
    assert done.status_code == 303 and done.headers["location"] == f"/requests/{made['id']}"
    assert store.get(made["id"]).state is State.APPROVED
    detail = bob.get(done.headers["location"]).text
    assert "Approve: the request is now approved." in detail
    trail = re.findall(r"<td>(request|approve)</td>", detail)
    assert trail == ["request", "approve"] and "ok for INC42" in detail
    assert made["id"] not in bob.get("/pending").text


def test_the_admin_may_deny_with_a_reason_but_not_approve(web: tuple[Any, Store], app: App) -> None:
    asgi, store = web
    made = ask(asgi, app)
    carol = as_user(web, "carol@contoso.com")
    assert buttons(carol.get("/pending").text) == ["deny", "cancel"]
    assert carol.post(f"/requests/{made['id']}/approve").status_code == 403
    no_reason = carol.post(f"/requests/{made['id']}/deny")
    assert no_reason.status_code == 400 and store.get(made["id"]).state is State.PENDING
    assert carol.post(f"/requests/{made['id']}/deny", text="not now").status_code == 303
    assert store.get(made["id"]).state is State.DENIED
    assert made["id"] in carol.get("/history").text


def test_another_engineer_neither_sees_nor_decides_a_request(
    web: tuple[Any, Store], app: App
) -> None:
    asgi, store = web
    made = ask(asgi, app)
    dave = as_user(web, "dave@contoso.com")
    for path in ("/pending", "/mine", "/history"):
        assert made["id"] not in dave.get(path).text
    assert dave.get(f"/requests/{made['id']}").status_code == 404
    assert dave.post(f"/requests/{made['id']}/approve").status_code == 404
    assert store.get(made["id"]).state is State.PENDING


def test_hostile_text_is_shown_as_text(web: tuple[Any, Store], app: App) -> None:
    asgi, _ = web
    made = ask(asgi, app, reason='<script>alert(1)</script><img src=x onerror="alert(2)">')
    html = as_user(web, "bob@contoso.com").get(f"/requests/{made['id']}").text
    assert "<script>alert" not in html and "<img src=x" not in html
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    )


def test_the_session_cookie_is_httponly_and_samesite_and_the_pages_forbid_framing(
    web: tuple[Any, Store],
) -> None:
    person = Browser(web[0])
    back = person.sign_in("bob@contoso.com")
    cookie = back.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    page = person.get("/pending")
    assert page.headers["x-frame-options"] == "DENY"
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none'


def test_a_callback_this_broker_did_not_start_is_refused_and_next_stays_on_the_site(
    web: tuple[Any, Store],
) -> None:
    stranger = Browser(web[0])
    got = stranger.get("/auth/callback?code=abc&state=made-up")
    assert got.status_code == 401 and "not started here" in got.text
    assert stranger.get("/pending").status_code == 303  # still signed out
    person = Browser(web[0])
    assert person.sign_in("bob@contoso.com", "https://evil.example/").headers["location"] == (
        "/pending"
    )


def test_signing_out_ends_the_session_here_and_at_the_identity_provider(
    web: tuple[Any, Store],
) -> None:
    bob = as_user(web, "bob@contoso.com")
    assert bob.post("/auth/logout", csrf=None).status_code == 403
    out = bob.post("/auth/logout")
    assert out.status_code == 303
    target = urlsplit(out.headers["location"])
    assert target.path == "/emulator/logout"  # the emulator's end_session_endpoint, relayed
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert query["post_logout_redirect_uri"] == f"{BASE}/auth/signed-out"
    assert query["client_id"] == BROKER_APP_ID
    hint = jwt.decode(query["id_token_hint"], options={"verify_signature": False})
    assert (hint["aud"], hint["preferred_username"]) == (BROKER_APP_ID, "bob@contoso.com")
    assert bob.get("/pending").status_code == 303  # the broker's session is over already
    at_idp = bob.get(out.headers["location"])
    assert at_idp.status_code == 302 and at_idp.headers["location"] == f"{BASE}/auth/signed-out"
    back = bob.get(at_idp.headers["location"])
    assert back.status_code == 200 and "You are signed out of the broker." in back.text


def test_with_an_issuer_without_end_session_sign_out_is_the_brokers_alone(
    tmp_path: Any, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    asgi, _ = build(tmp_path, app, monkeypatch, end_session=False)
    bob = as_user((asgi, None), "bob@contoso.com")  # type: ignore[arg-type]
    out = bob.post("/auth/logout")
    assert out.status_code == 200 and "You are signed out of the broker." in out.text
    assert bob.get("/pending").status_code == 303


def test_an_id_token_with_another_nonce_is_refused_and_signs_no_one_in(
    web: tuple[Any, Store],
) -> None:
    """The browser's sign-in sent one nonce; the code it comes back with was issued to a
    sign-in with another (a code injected from elsewhere): state and PKCE pass, the nonce
    does not."""
    person = Browser(web[0])
    swapped = lambda url, nonce: url.replace(f"nonce={nonce}", "nonce=someone-elses")  # noqa: E731
    dropped = lambda url, nonce: url.replace(f"&nonce={nonce}", "")  # noqa: E731
    for forge in (swapped, dropped):
        start = person.get("/auth/login").headers["location"]
        nonce = parse_qs(urlsplit(start).query)["nonce"][0]
        assert forge(start, nonce) != start
        picked = person.get(forge(start, nonce) + "&login_hint=bob@contoso.com")
        assert picked.status_code == 302, picked.text
        got = person.get(picked.headers["location"])
        assert got.status_code == 401
        assert "not issued for this sign-in (its nonce differs)" in got.text
        assert person.get("/pending").status_code == 303  # no session
    picked = person.get(
        person.get("/auth/login").headers["location"] + "&login_hint=bob@contoso.com"
    )
    assert person.get(picked.headers["location"]).status_code == 303  # untouched: signed in
    assert person.get("/pending").status_code == 200


def test_pages_follow_a_cursor_through_every_request_once(
    tmp_path: Any, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    asgi, _ = build(tmp_path, app, monkeypatch, page_size=3)
    made = []
    for i in range(7):  # four made in one instant, then three in another: ties span pages
        if i == 4:
            app.clock.advance(5)
        made.append(ask(asgi, app)["id"])
    bob = Browser(asgi)
    bob.sign_in("bob@contoso.com")
    for first in ("/pending", "/history"):
        seen: list[list[str]] = []
        path: str | None = first
        while path:
            html = bob.get(path).text
            seen.append(re.findall(r'<tr class="request" data-id="([^"]+)"', html))
            older = re.search(rf'href="({first}\?older=[^"]+)"', html)
            path = older.group(1).replace("&amp;", "&") if older else None
        assert [len(p) for p in seen] == [3, 3, 1], first
        shown = [i for p in seen for i in p]
        assert sorted(shown) == sorted(made)
        assert set(shown[:3]) == set(made[4:])  # newest first


def test_over_https_the_session_cookie_is_secure(
    tmp_path: Any, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    asgi, _ = build(tmp_path, app, monkeypatch, https=True)
    back = Browser(asgi, "https://127.0.0.1:8765").sign_in("bob@contoso.com")
    assert "; secure" in back.headers["set-cookie"].lower()
    # a browser keeps a Secure cookie off plain HTTP: the sign-in cannot finish there
    start = Browser(asgi).http.get("/auth/login")
    assert "; secure" in start.headers["set-cookie"].lower()


def test_durations_read_as_people_write_them_and_times_one_way(
    web: tuple[Any, Store], app: App
) -> None:
    """The pages show 1h (not Azure's PT1H) and every time as 'YYYY-MM-DD HH:MM:SS UTC': the
    row, the end of the pending time to live and each event of the trail."""
    asgi, _ = web
    made = ask(asgi, app)
    detail = as_user(web, "bob@contoso.com").get(f"/requests/{made['id']}").text
    assert "<td>1h</td>" in detail and "PT1H" not in detail
    now = app.clock.now().strftime("%Y-%m-%d %H:%M:%S UTC")
    assert re.findall(r"<td>(\d{4}-\d\d-\d\d[^<]*)</td>", detail) == [now]  # the request event
    assert "Undecided requests expire " in detail
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:", detail)  # no raw ISO text anywhere


def test_pages_on_a_verifier_that_cannot_check_id_tokens_refuse_every_sign_in(
    tmp_path: Any, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verifier for the API alone (a test's fake, a library user's own) serves the API, but
    no one signs in to the pages without the ID token's nonce checked."""
    from jitctl.broker.api import Settings, create_app
    from jitctl.broker.views import Access
    from jitctl.cli.broker_web import pages_config
    from tests.brokerapi import FakeVerifier, make_store, rules_in
    from tests.brokerpages import DEMO_POLICY

    monkeypatch.setenv("JITCTL_BROKER_SESSION_SECRET", "test-secret-" + "x" * 32)
    fake = FakeVerifier()
    pages = pages_config(app, fake, None, https=False)
    rules = rules_in(tmp_path, DEMO_POLICY)
    asgi = create_app(
        make_store(tmp_path, app.clock),
        lambda: rules,
        fake,
        Settings(access=Access(admins=("group:broker-admins",))),
        pages,
    )
    person = Browser(asgi)
    start = person.get("/auth/login").headers["location"]
    back = person.get(start + "&login_hint=bob@contoso.com").headers["location"]
    got = person.get(back)
    assert got.status_code == 503
    assert "cannot check a sign-in&#39;s ID token" in got.text
    assert person.get("/pending").status_code == 303 and fake.seen == []


def _cookie_session(person: Browser) -> dict[str, Any]:
    """The session cookie's content (signed, not encrypted: anyone holding it can read it)."""
    import base64
    import json

    raw = person.http.cookies["jitctl_broker"].split(".")[0]
    return dict(json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4))))


def test_the_cookie_holds_no_token_and_a_copied_cookie_dies_with_the_sign_out(
    web: tuple[Any, Store], app: App
) -> None:
    """The sign-in lives in the database: the cookie holds a random id and the form token
    (an Entra ID token with 200 groups would not fit a cookie, and no bearer token leaks
    with one). Signing out ends it for every copy of the cookie; so does the token's expiry."""
    asgi, _ = web
    bob = as_user(web, "bob@contoso.com")
    assert set(_cookie_session(bob)) == {"sid", "csrf"}
    assert len(bob.http.cookies["jitctl_broker"]) < 300
    copy = Browser(asgi)
    copy.http.cookies.set("jitctl_broker", bob.http.cookies["jitctl_broker"])
    assert copy.get("/pending").status_code == 200  # the same sign-in, until it ends
    assert bob.post("/auth/logout").status_code == 303
    assert copy.get("/pending").status_code == 303  # signed out everywhere

    again = as_user(web, "bob@contoso.com")
    assert again.get("/pending").status_code == 200
    app.clock.advance(hours=8, seconds=1)  # past the token's expiry (and a working day)
    assert again.get("/pending").status_code == 303


def test_a_revoked_request_page_says_what_the_release_did_in_azure(
    web: tuple[Any, Store], app: App
) -> None:
    """The real worker against the emulator: revoked is not yet closed in Azure (pending),
    then the page names the JIT allow rule it removed, and no longer says when access ends."""
    from click.testing import CliRunner

    from jitctl.broker.worker import Worker, WorkerSettings
    from jitctl.cli.commands import cli

    asgi, store = web
    enabled = CliRunner().invoke(
        cli, ["enable", "vm-win01", "-g", "rg-jit-demo", "--port", "3389"], obj=app
    )
    assert enabled.exit_code == 0, enabled.output
    made = ask(asgi, app)
    bob = as_user(web, "bob@contoso.com")
    assert bob.post(f"/requests/{made['id']}/approve", text="ok").status_code == 303
    worker = Worker(
        store, app.gateway(), app.clock, name="w1", settings=WorkerSettings(wait_timeout=30)
    )
    worker.run_once()
    assert store.get(made["id"]).state is State.ACTIVE
    assert "Access ends" in bob.get(f"/requests/{made['id']}").text
    assert bob.post(f"/requests/{made['id']}/revoke", text="done").status_code == 303
    page = bob.get(f"/requests/{made['id']}").text
    assert "Release: pending: the broker has not removed the JIT allow rules yet" in page
    worker.run_once()
    page = bob.get(f"/requests/{made['id']}").text
    found = re.search(r"Release: done: Removed 1 JIT allow rule\(s\)[^<]*\(removed ([^)]+)\)", page)
    assert found and found.group(1).startswith("vm-win01-nsg/MicrosoftDefenderForCloud-JITRule")
    assert "Access ends" not in page
    assert "release: done" in bob.get("/history").text


def test_a_failed_request_page_says_why_in_azures_words_and_what_to_do(
    web: tuple[Any, Store], app: App
) -> None:
    """Approved for a VM in no JIT policy: the worker's initiate fails, and the page says so
    with Azure's reason and jitctl's hint (before, only the audit log had them)."""
    from jitctl.broker.worker import Worker, WorkerSettings

    asgi, store = web
    made = ask(asgi, app)  # vm-win01 has no JIT policy yet
    bob = as_user(web, "bob@contoso.com")
    assert bob.post(f"/requests/{made['id']}/approve", text="ok").status_code == 303
    Worker(store, app.gateway(), app.clock, name="w1", settings=WorkerSettings()).run_once()
    assert store.get(made["id"]).state is State.FAILED
    page = bob.get(f"/requests/{made['id']}").text
    assert (
        "Failed: VM vm-win01 is in no JIT policy of resource group rg-jit-demo. "
        "(Enable it with: jitctl enable vm-win01 -g rg-jit-demo)"
    ) in page
