"""Who may do what on the broker's JSON API: every endpoint x {anonymous, requester, approver,
admin} with the status expected and nothing stored or changed on a refusal; no self-approval
by any path; real tokens (the emulator's identity provider, the real TokenVerifier) refused
when their issuer, audience, signature, algorithm or expiry is wrong; hostile text inert in
the terminal."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from jitctl.app import App
from jitctl.broker.api import create_app
from jitctl.broker.identity import HttpsJson, TokenVerifier
from jitctl.broker.models import approvals, events, outbox, requests
from jitctl.broker.rules import Decision, Outcome, Principal
from jitctl.cli.commands import cli
from jitctl.clock import FakeClock
from jitctl.emulator import Backend
from jitctl.emulator.oidc import BROKER_APP_ID, IdentityProvider
from jitctl.emulator.transport import emulator_session
from tests.brokerapi import ASK, POLICY, Broker, InProcess, make_store, rules_in, settings

ANON, REQUESTER, APPROVER, ADMIN = None, "ann", "olga", "adam"
WHO = [ANON, REQUESTER, APPROVER, ADMIN]


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    b = Broker(tmp_path, FakeClock())
    yield b
    b.close()


def snapshot(broker: Broker) -> tuple[Any, ...]:
    """Every row of every table: a refusal must leave them as they were."""
    with broker.store.engine.connect() as conn:
        return tuple(
            tuple(tuple(r) for r in conn.execute(select(t)).all())
            for t in (requests, approvals, events, outbox)
        )


# endpoint -> (method, path, body, the request's state first, {who: status})
MATRIX: dict[str, tuple[str, str, dict[str, Any] | None, str | None, dict[Any, int]]] = {
    "healthz": (
        "GET",
        "/healthz",
        None,
        None,
        {ANON: 401, REQUESTER: 200, APPROVER: 200, ADMIN: 200},
    ),
    "create": (
        "POST",
        "/requests",
        ASK,
        None,
        {ANON: 401, REQUESTER: 201, APPROVER: 403, ADMIN: 403},
    ),
    "list": (
        "GET",
        "/requests",
        None,
        "pending",
        {ANON: 401, REQUESTER: 200, APPROVER: 200, ADMIN: 200},
    ),
    "show": (
        "GET",
        "/requests/{id}",
        None,
        "pending",
        {ANON: 401, REQUESTER: 200, APPROVER: 200, ADMIN: 200},
    ),
    "approve": (
        "POST",
        "/requests/{id}/approve",
        {},
        "pending",
        {ANON: 401, REQUESTER: 403, APPROVER: 200, ADMIN: 403},
    ),
    "deny": (
        "POST",
        "/requests/{id}/deny",
        {"reason": "no"},
        "pending",
        {ANON: 401, REQUESTER: 403, APPROVER: 200, ADMIN: 200},
    ),
    "cancel": (
        "POST",
        "/requests/{id}/cancel",
        {},
        "pending",
        {ANON: 401, REQUESTER: 200, APPROVER: 403, ADMIN: 200},
    ),
    "revoke": (
        "POST",
        "/requests/{id}/revoke",
        {},
        "active",
        {ANON: 401, REQUESTER: 200, APPROVER: 200, ADMIN: 200},
    ),
    "extend": (
        "POST",
        "/requests/{id}/extend",
        {"duration": "1h"},
        "active",
        {ANON: 401, REQUESTER: 403, APPROVER: 200, ADMIN: 200},
    ),
    "explain": (
        "POST",
        "/explain",
        {"vm": "web1", "resource_group": "rg-prod", "ports": [22]},
        None,
        {ANON: 401, REQUESTER: 200, APPROVER: 200, ADMIN: 200},
    ),
    "log": ("GET", "/log", None, "pending", {ANON: 401, REQUESTER: 403, APPROVER: 403, ADMIN: 200}),
    "log_verify": (
        "GET",
        "/log/verify",
        None,
        "pending",
        {ANON: 401, REQUESTER: 403, APPROVER: 403, ADMIN: 200},
    ),
}


@pytest.mark.parametrize("who", WHO, ids=["anonymous", "requester", "approver", "admin"])
@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_every_endpoint_for_every_role(broker, endpoint, who):
    method, path, body, state, expected = MATRIX[endpoint]
    rid = ""
    if state is not None:
        rid = broker.ask(REQUESTER)["id"]
        if state == "active":
            assert (
                broker.call(APPROVER, "POST", f"/requests/{rid}/approve", json={}).status_code
                == 200
            )
            broker.activate(rid)
    before = snapshot(broker)
    answer = broker.call(who, method, path.format(id=rid), json=body)
    assert answer.status_code == expected[who], answer.text
    if answer.status_code >= 400:
        assert set(answer.json()["error"]) == {"code", "message", "hint"}
        after = snapshot(broker)
        if answer.json()["error"]["code"] == "refused":  # the rules said no: the attempt is logged
            assert [e[5] for e in after[2][len(before[2]) :]] == ["refuse"]
            after = (*after[:2], before[2], *after[3:])
        assert after == before  # a refusal stores and changes nothing else


def test_no_self_approval_by_any_path(broker):
    """eve is an engineer and an ops lead: she may approve others' requests, never her own,
    whether by approve, extend, or a break-glass she is not allowed."""
    rid = broker.ask("eve")["id"]
    before = snapshot(broker)
    own = broker.call("eve", "POST", f"/requests/{rid}/approve", json={})
    assert (own.status_code, own.json()["error"]["code"]) == (403, "self_approval")
    assert (
        broker.call("eve", "POST", f"/requests/{rid}/deny", json={"reason": "x"}).status_code == 403
    )
    assert snapshot(broker) == before
    others = broker.ask("ann")["id"]
    assert broker.call("eve", "POST", f"/requests/{others}/approve", json={}).status_code == 200
    # her own request, approved by someone else and active: she may not extend it
    assert broker.call("olga", "POST", f"/requests/{rid}/approve", json={}).status_code == 200
    broker.activate(rid)
    before = snapshot(broker)
    extend = broker.call("eve", "POST", f"/requests/{rid}/extend", json={"duration": "1h"})
    assert extend.status_code == 403 and snapshot(broker) == before
    # break-glass is not approval: only the rules' breakGlass requesters get it
    glass = broker.call("eve", "POST", "/requests", json={**ASK, "break_glass": True})
    assert glass.status_code == 403 and glass.json()["error"]["code"] == "refused"
    assert broker.store.get(rid).approved_by == ("olga@contoso.com",)


# endpoint -> (the request's state first, status) for a requester who is also an admin (and,
# for max, an approver of others' requests): on their own request they are its requester only
OWN: dict[str, tuple[str, int]] = {
    "show": ("pending", 200),
    "approve": ("pending", 403),
    "deny": ("pending", 403),
    "cancel": ("pending", 200),
    "revoke": ("active", 200),
    "extend": ("active", 403),
    "log": ("pending", 200),
    "log_verify": ("pending", 200),
}


@pytest.mark.parametrize("who", ["ada", "max"])
@pytest.mark.parametrize("endpoint", list(OWN))
def test_an_admin_is_only_the_requester_of_their_own_request(broker, endpoint, who):
    """The reviewer's case: an engineer and broker admin got 200 extending their own grant.
    On one's own request every role but requester goes: no approving, denying or extending it
    (403 self_approval, nothing stored); cancel and revoke stay theirs, as its requester."""
    method, path, body, _, _ = MATRIX[endpoint]
    state, status = OWN[endpoint]
    rid = broker.ask(who)["id"]
    if state == "active":
        assert broker.call("olga", "POST", f"/requests/{rid}/approve", json={}).status_code == 200
        broker.activate(rid)
    shown = broker.call(who, "GET", f"/requests/{rid}").json()
    assert shown["your_roles"] == ["requester"]
    pending = broker.call(who, "GET", "/requests", params={"scope": "pending"}).json()
    assert rid not in [r["id"] for r in pending["requests"]]  # not theirs to decide
    assert shown["actions"] == (["revoke"] if state == "active" else ["cancel"])
    before = snapshot(broker)
    answer = broker.call(who, method, path.format(id=rid), json=body)
    assert answer.status_code == status, answer.text
    if status == 403:
        assert answer.json()["error"]["code"] == "self_approval"
        assert snapshot(broker) == before
    # on another's request the same person keeps the admin role (and max the approver's)
    other = broker.ask("ann")["id"]
    roles = broker.call(who, "GET", f"/requests/{other}").json()["your_roles"]
    assert roles == (["admin", "approver"] if who == "max" else ["admin"])


def test_one_persons_extension_keeps_a_two_person_grant_within_max_duration(broker, tmp_path):
    """minApprovals 2, maxDuration 3h: one approver (or an admin) may extend, but not past 3h
    from when access went live; longer is a new request, which two people decide."""
    two = POLICY.replace("minApprovals: 1", "minApprovals: 2")
    (tmp_path / "two").mkdir()
    b = Broker(tmp_path / "two", broker.clock, two)
    rid = b.ask("ann")["id"]
    b.clock.advance(minutes=10)  # the cap counts from access live, not from the asking
    for who in ("olga", "lead"):
        assert b.call(who, "POST", f"/requests/{rid}/approve", json={}).status_code == 200
    b.activate(rid)  # live at 09:10, until 10:10
    b.clock.advance(minutes=50)
    first = b.call("olga", "POST", f"/requests/{rid}/extend", json={"duration": "2h"})
    assert first.status_code == 200 and first.json()["extending_to"] == "2026-01-05T12:00:00Z"
    b.clock.advance(hours=1)  # 11:00; the cap is 12:10
    before = snapshot(b)
    for who in ("olga", "adam"):
        over = b.call(who, "POST", f"/requests/{rid}/extend", json={"duration": "2h"})
        assert over.status_code == 403 and over.json()["error"] == {
            "code": "forbidden",
            "message": f"Request {rid} took 2 approvals: one person's extension may not take "
            "it past 3h from its start (2026-01-05T12:10:00Z).",
            "hint": "Extend by 1h10m or less, or ask a new request (jitctl broker request), "
            "which its approvers decide.",
        }
    assert snapshot(b) == before
    upto = b.call("adam", "POST", f"/requests/{rid}/extend", json={"duration": "1h10m"})
    assert upto.status_code == 200 and upto.json()["extending_to"] == "2026-01-05T12:10:00Z"
    b.close()
    # one approval: one person could approve a new request as long; the extension may be too
    rid = broker.ask("ann")["id"]
    assert broker.call("olga", "POST", f"/requests/{rid}/approve", json={}).status_code == 200
    broker.activate(rid)
    broker.clock.advance(hours=2)
    again = broker.call("olga", "POST", f"/requests/{rid}/extend", json={"duration": "3h"})
    assert again.status_code == 200


def test_who_is_who_goes_by_the_tokens_object_id_not_the_name(tmp_path):
    """ivy asks; renamed (same oid, new name) she still may not approve her own request, and
    oz renamed is still one approver of two; yet oz, holding the name ivy had, is not ivy."""
    two = POLICY.replace("minApprovals: 1", "minApprovals: 2")
    b = Broker(tmp_path, FakeClock(), two)
    try:
        rid = b.ask("ivy")["id"]
        assert b.store.get(rid).requester_oid == "1c0ffee0-0000-4000-8000-000000000001"
        before = snapshot(b)
        own = b.call("ivy2", "POST", f"/requests/{rid}/approve", json={})
        assert (own.status_code, own.json()["error"]["code"]) == (403, "self_approval")
        shown = b.call("ivy2", "GET", f"/requests/{rid}").json()
        assert (shown["your_roles"], shown["actions"]) == (["requester"], ["cancel"])
        assert snapshot(b) == before
        assert b.call("oz", "POST", f"/requests/{rid}/approve", json={}).status_code == 200
        again = b.call("oz2", "POST", f"/requests/{rid}/approve", json={})
        assert (again.status_code, again.json()["error"]["code"]) == (409, "already_reviewed")
        assert b.store.get(rid).state.value == "pending"
        # the name alone makes nobody the requester: oz under ivy's old name is an approver
        other = b.ask("ivy")["id"]
        roles = b.call("oz3", "GET", f"/requests/{other}").json()["your_roles"]
        assert roles == ["approver"]
        assert b.call("oz3", "POST", f"/requests/{other}/approve", json={}).status_code == 200
    finally:
        b.close()


def test_an_approver_listed_twice_counts_once(broker, tmp_path):
    """minApprovals counts distinct people: the same approver twice is not two approvals."""
    two = POLICY.replace("minApprovals: 1", "minApprovals: 2")
    (tmp_path / "two").mkdir()
    b = Broker(tmp_path / "two", FakeClock(), two)
    rid = b.ask("ann")["id"]
    assert b.call("olga", "POST", f"/requests/{rid}/approve", json={}).status_code == 200
    again = b.call("olga", "POST", f"/requests/{rid}/approve", json={})
    assert again.status_code == 409 and b.store.get(rid).state.value == "pending"
    b.close()


# --- real tokens: the emulator's identity provider and the real verifier ----------------------


@pytest.fixture
def idp(backend: Backend) -> IdentityProvider:
    return IdentityProvider(backend)


@pytest.fixture
def real(tmp_path: Path, idp: IdentityProvider, clock: FakeClock) -> Any:
    """The API with the real TokenVerifier reading the emulator's JWKS."""
    store = make_store(tmp_path, clock)
    verifier = TokenVerifier(
        idp.issuer, BROKER_APP_ID, jwks=HttpsJson(emulator_session(idp)), clock=clock
    )
    ruleset = rules_in(tmp_path, POLICY.replace("group:engineers", "group:engineering"))
    app = create_app(store, lambda: ruleset, verifier, settings())
    http = httpx.Client(transport=InProcess(app), base_url="http://127.0.0.1")
    yield store, http
    http.close()
    store.engine.dispose()


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def bad_tokens(idp: IdentityProvider, clock: FakeClock) -> dict[str, str]:
    good = idp.mint("alice@contoso.com")
    head, body, sig = good.split(".")
    forged = b64({**claims_of(good), "groups": ["ops-leads", "sre"]})
    return {
        "wrong issuer": idp.mint(
            "alice@contoso.com", extra={"iss": "https://login.example.com/t/v2.0"}
        ),
        "wrong audience": idp.mint("alice@contoso.com", audience="another-app"),
        "bad signature": f"{head}.{forged}.{sig}",
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{body}.",
        "expired": idp.mint("alice@contoso.com", lifetime=timedelta(minutes=1)),
    }


def test_bad_tokens_are_refused_before_anything_is_stored(real, idp, clock):
    store, http = real
    tokens = bad_tokens(idp, clock)
    clock.advance(minutes=10)  # past the expired token's end and the leeway
    for what, token in tokens.items():
        for method, path in (("POST", "/requests"), ("GET", "/requests"), ("GET", "/log")):
            answer = http.request(
                method, f"/api/v1{path}", headers={"Authorization": f"Bearer {token}"}, json=ASK
            )
            assert answer.status_code == 401, (what, path, answer.text)
            assert answer.json()["error"]["code"] == "unauthenticated"
    assert store.list_requests(limit=10) == [] and store.verify_log().events == 0
    fresh = idp.mint("alice@contoso.com")  # the same path with a good token works
    ok = http.get("/api/v1/healthz", headers={"Authorization": f"Bearer {fresh}"})
    assert ok.status_code == 200 and ok.json()["you"] == "alice@contoso.com"


# --- hostile text in the terminal ----------------------------------------------------------


HOSTILE = "deploy\x1b[2J\x1b]0;pwned\x07\rOK approved\x9b31m"


def test_the_api_refuses_control_characters_in_a_reason_or_a_vm_name(broker):
    before = snapshot(broker)
    for change in ({"reason": HOSTILE}, {"vm": "web1\x1b[31m"}, {"ticket": "IN\rC1"}):
        answer = broker.call("ann", "POST", "/requests", json={**ASK, **change})
        assert answer.status_code == 400, (change, answer.text)
    assert snapshot(broker) == before


def test_hostile_text_stored_shows_escaped_in_show_and_list(broker, monkeypatch):
    """Text written by another path (an older broker, the database itself) is still inert:
    control characters and escape sequences show escaped, never reach the terminal."""
    from jitctl.broker.rules import Ask

    vm = "/subscriptions/s1/resourceGroups/rg-prod/providers/Microsoft.Compute/virtualMachines/web1\x1b[5m"
    ask = Ask(
        requester=Principal("ann@contoso.com", frozenset({"engineers"})),
        vm_id=vm,
        ports=(22,),
        duration=timedelta(hours=1),
        at=broker.clock.now(),
        reason=HOSTILE,
        ticket="INC1\x1b[0m",
    )
    decision = Decision(Outcome.NEEDS_APPROVAL, ("p.yaml:3",), (("group:ops-leads",),), 1)
    rec = broker.store.create(ask, decision, source="203.0.113.7")
    monkeypatch.setenv("JITCTL_BROKER_TOKEN", "tok-ann")
    monkeypatch.setenv("JITCTL_BROKER_URL", "http://127.0.0.1:8765")
    app = App(clock=broker.clock, broker_http=broker.http)
    for args in (["broker", "show", rec.id], ["broker", "list"]):
        got = CliRunner().invoke(cli, args, obj=app, catch_exceptions=False)
        assert got.exit_code == 0, got.output
        assert not any(c in got.stdout for c in "\x1b\x07\r\x9b"), repr(got.stdout)
    shown = CliRunner().invoke(cli, ["broker", "show", rec.id], obj=app).stdout
    assert "reason         deploy\\x1b[2J\\x1b]0;pwned\\x07\\x0dOK approved\\x9b31m\n" in shown
    assert "vm             web1\\x1b[5m (rg-prod)\n" in shown
    as_json = CliRunner().invoke(cli, ["broker", "show", rec.id, "-o", "json"], obj=app).stdout
    assert json.loads(as_json)["reason"] == HOSTILE  # the data itself is kept as it was


def test_my_requests_go_by_the_object_id_too(tmp_path):
    """Renamed, ivy still lists what she asked as "mine"; oz, given ivy's old name, does not."""
    b = Broker(tmp_path, FakeClock())
    try:
        rid = b.ask("ivy")["id"]
        mine = b.call("ivy2", "GET", "/requests", params={"scope": "mine"}).json()
        assert [r["id"] for r in mine["requests"]] == [rid]
        theirs = b.call("oz3", "GET", "/requests", params={"scope": "mine"}).json()
        assert theirs["requests"] == []
    finally:
        b.close()
