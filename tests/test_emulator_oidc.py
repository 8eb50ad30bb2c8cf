"""The emulator as an OpenID Connect provider: the authorization code flow with PKCE, as a web
page drives it (no JavaScript), in-process and over the emulator's HTTPS server, and its tokens
checked by the broker's verifier."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from jitctl.broker.identity import HttpsJson, TokenVerifier
from jitctl.broker.rules import Principal
from jitctl.emulator import Backend
from jitctl.emulator.oidc import BROKER_APP_ID, USERS, IdentityProvider
from jitctl.emulator.transport import emulator_session

REDIRECT = "http://127.0.0.1:8080/auth/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def claims_of(token: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


class Flow:
    """A browser and a web app's back end, on one requests session."""

    def __init__(self, session: requests.Session, issuer: str, **verify: Any) -> None:
        self.s = session
        self.doc = session.get(f"{issuer}/.well-known/openid-configuration", **verify).json()
        self.verify = verify

    def authorize(self, method: str = "GET", **params: str) -> requests.Response:
        url = self.doc["authorization_endpoint"]
        if method == "POST":
            return self.s.post(url, data=params, allow_redirects=False, **self.verify)
        return self.s.get(url, params=params, allow_redirects=False, **self.verify)

    def token(self, **form: str) -> requests.Response:
        return self.s.post(self.doc["token_endpoint"], data=form, **self.verify)


def base_params(challenge: str, **more: str) -> dict[str, str]:
    return {
        "client_id": BROKER_APP_ID,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": f"openid profile api://{BROKER_APP_ID}/.default",
        "state": "s-1",
        "nonce": "n-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **more,
    }


def code_from(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()}


@pytest.fixture
def idp(backend: Backend) -> IdentityProvider:
    return IdentityProvider(backend)


@pytest.fixture
def flow(idp: IdentityProvider) -> Flow:
    return Flow(emulator_session(idp), idp.issuer)


@pytest.fixture
def verifier(idp: IdentityProvider, clock):
    return TokenVerifier(
        idp.issuer, BROKER_APP_ID, jwks=HttpsJson(emulator_session(idp)), clock=clock
    )


def test_the_picker_lists_every_test_user_and_posts_back_with_the_request(flow):
    _, challenge = pkce()
    page = flow.authorize(**base_params(challenge))
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert re.findall(r'name="login_hint" value="([^"]+)"', page.text) == list(USERS)
    assert f'<input type="hidden" name="code_challenge" value="{challenge}">' in page.text
    assert '<form method="post">' in page.text and "<script" not in page.text


def test_sign_in_by_the_picker_then_the_code_for_tokens(flow, verifier):
    code_verifier, challenge = pkce()
    answer = code_from(
        flow.authorize("POST", **base_params(challenge), login_hint="bob@contoso.com")
    )
    assert answer["state"] == "s-1"
    tokens = flow.token(
        grant_type="authorization_code",
        code=answer["code"],
        redirect_uri=REDIRECT,
        client_id=BROKER_APP_ID,
        code_verifier=code_verifier,
    )
    assert tokens.status_code == 200
    body = tokens.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert verifier.verify(body["access_token"]) == Principal(
        "bob@contoso.com", frozenset({"ops-leads"})
    )
    id_claims = claims_of(body["id_token"])
    assert (id_claims["aud"], id_claims["nonce"]) == (BROKER_APP_ID, "n-1")
    assert verifier.verify(body["id_token"]).upn == "bob@contoso.com"


def test_login_hint_skips_the_picker(flow):
    _, challenge = pkce()
    answer = code_from(flow.authorize(**base_params(challenge, login_hint="Dave@Contoso.com")))
    assert set(answer) == {"code", "state"}


def test_a_code_is_used_once_and_only_with_its_verifier(flow):
    code_verifier, challenge = pkce()
    code = code_from(flow.authorize(**base_params(challenge, login_hint="alice@contoso.com")))
    form = {
        "grant_type": "authorization_code",
        "code": code["code"],
        "redirect_uri": REDIRECT,
        "client_id": BROKER_APP_ID,
    }
    wrong = flow.token(**form, code_verifier=pkce()[0])
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    assert wrong.json()["error_description"] == (
        "The code_verifier does not match the code_challenge."
    )
    again = flow.token(**form, code_verifier=code_verifier)  # a failed try used the code up
    assert again.json()["error_description"] == "The code is unknown, used or expired."


def test_a_code_expires_after_ten_minutes(flow, clock):
    code_verifier, challenge = pkce()
    code = code_from(flow.authorize(**base_params(challenge, login_hint="alice@contoso.com")))
    clock.advance(minutes=10)
    late = flow.token(
        grant_type="authorization_code",
        code=code["code"],
        redirect_uri=REDIRECT,
        client_id=BROKER_APP_ID,
        code_verifier=code_verifier,
    )
    assert late.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("change", "description"),
    [
        ({"client_id": "other"}, "The code was issued to another client_id."),
        (
            {"redirect_uri": "http://127.0.0.1:9/cb"},
            "The redirect_uri differs from the authorize one.",
        ),
    ],
)
def test_the_code_is_bound_to_its_client_and_redirect(flow, change, description):
    code_verifier, challenge = pkce()
    code = code_from(flow.authorize(**base_params(challenge, login_hint="alice@contoso.com")))
    form = {
        "grant_type": "authorization_code",
        "code": code["code"],
        "redirect_uri": REDIRECT,
        "client_id": BROKER_APP_ID,
        "code_verifier": code_verifier,
        **change,
    }
    assert flow.token(**form).json()["error_description"] == description


@pytest.mark.parametrize("method", [None, "plain"])
def test_pkce_s256_is_required(flow, method):
    params = base_params("x" * 43, login_hint="alice@contoso.com")
    del params["code_challenge_method"]
    if method:
        params["code_challenge_method"] = method
    answer = code_from(flow.authorize(**params))
    assert answer == {
        "error": "invalid_request",
        "error_description": "PKCE is required: code_challenge with code_challenge_method=S256.",
        "state": "s-1",
    }


def test_a_redirect_that_is_no_web_address_gets_a_page_not_a_redirect(flow):
    page = flow.authorize(**base_params("c", redirect_uri="javascript:alert(1)"))
    assert page.status_code == 400 and "Location" not in page.headers
    assert "The request&#x27;s redirect_uri is not an http(s) address." in page.text


def test_hostile_parameters_are_escaped_in_the_picker(flow):
    evil = '"><script>alert(1)</script>'
    page = flow.authorize(**base_params("c", state=evil, login_hint=evil))
    assert "<script>" not in page.text
    assert "There is no test user &quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;." in page.text
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_the_key_is_kept_in_the_state_file_for_every_process(tmp_path, clock):
    from jitctl.app import App

    state = tmp_path / "emulator.sqlite"
    first = App(emulator=True, state_file=state, clock=clock)
    second = App(emulator=True, state_file=state, clock=clock)
    try:
        token = first.emulator_token("carol@contoso.com", BROKER_APP_ID)
        principal = second.token_verifier(None, None).verify(token)
        assert principal == Principal("carol@contoso.com", frozenset({"broker-admins", "admin"}))
    finally:
        first.close()
        second.close()


def test_an_emulator_reset_rolls_the_key(tmp_path, clock):
    from jitctl.app import App
    from jitctl.emulator.store import reset_file

    state = tmp_path / "emulator.sqlite"
    app = App(emulator=True, state_file=state, clock=clock)
    try:
        before = app.identity_provider().jwks()["keys"][0]["kid"]
        token = app.emulator_token("bob@contoso.com", BROKER_APP_ID)
        assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"] == before
        reset_file(state, Backend())
        after = claims_of(app.emulator_token("bob@contoso.com", BROKER_APP_ID))
        assert after["preferred_username"] == "bob@contoso.com"
        assert app.identity_provider().jwks()["keys"][0]["kid"] != before
    finally:
        app.close()


def test_over_https_with_the_servers_certificate_trusted(backend, clock, monkeypatch):
    """The real path: the emulator's HTTPS server, the verifier's own HTTPS client trusting
    the CA from SSL_CERT_FILE (as from REQUESTS_CA_BUNDLE), nothing injected."""
    from jitctl.broker.errors import IdentityUnavailable
    from jitctl.emulator.server import EmulatorServer

    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    server = EmulatorServer(backend)
    server.start()
    try:
        lines = dict(line.removeprefix("export ").split("=", 1) for line in server.shell_lines())
        issuer, audience = lines["JITCTL_BROKER_ISSUER"], lines["JITCTL_BROKER_AUDIENCE"]
        assert issuer == f"{server.endpoint}/72f988bf-0000-4000-8000-00000000e001/v2.0"
        token = server.identity.mint("dave@contoso.com", audience=audience)
        with pytest.raises(IdentityUnavailable) as err:  # the self-signed CA, not trusted
            TokenVerifier(issuer, audience, clock=clock).verify(token)
        assert err.value.message.endswith("its TLS certificate is not trusted.")
        for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            monkeypatch.setenv(variable, str(server.cert_path))
            assert TokenVerifier(issuer, audience, clock=clock).verify(token) == Principal(
                "dave@contoso.com", frozenset({"engineers", "oncall"})
            )
            monkeypatch.delenv(variable)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.cert_path))
        flow = Flow(requests.Session(), issuer, verify=str(server.cert_path))
        code_verifier, challenge = pkce()
        page = flow.authorize(**base_params(challenge))
        assert "Erin SRE &lt;erin@contoso.com&gt; (engineers, sre)" in page.text
        answer = code_from(
            flow.authorize("POST", **base_params(challenge), login_hint="erin@contoso.com")
        )
        body = flow.token(
            grant_type="authorization_code",
            code=answer["code"],
            redirect_uri=REDIRECT,
            client_id=BROKER_APP_ID,
            code_verifier=code_verifier,
        ).json()
        assert TokenVerifier(issuer, audience, clock=clock).verify(body["access_token"]).upn == (
            "erin@contoso.com"
        )
    finally:
        server.stop()


def test_logout_checks_the_hint_and_sends_the_browser_back_with_its_state(flow, idp):
    end = flow.doc["end_session_endpoint"]
    assert end == f"{idp.base_url}/{idp.issuer.split('/')[-2]}/oauth2/v2.0/logout"
    back = "http://127.0.0.1:8080/auth/signed-out"
    hint = idp.mint("bob@contoso.com")  # aud: the broker's app id
    out = flow.s.get(
        end,
        params={"post_logout_redirect_uri": back, "id_token_hint": hint, "state": "s-9"},
        allow_redirects=False,
    )
    assert out.status_code == 302 and out.headers["Location"] == back + "?state=s-9"
    by_client = flow.s.get(
        end, params={"post_logout_redirect_uri": back, "client_id": "c-1"}, allow_redirects=False
    )
    assert by_client.status_code == 302 and by_client.headers["Location"] == back
    head, body, sig = hint.split(".")
    forged = f"{head}.{body[:-4]}AAAA.{sig}"
    refusals = {
        "The id_token_hint is not a token this provider issued.": {"id_token_hint": forged},
        "The id_token_hint was issued to another client_id.": {
            "id_token_hint": hint,
            "client_id": "another-client",
        },
        "post_logout_redirect_uri needs client_id or id_token_hint.": {},
        "The post_logout_redirect_uri is not an http(s) address.": {"client_id": "c-1"},
    }
    for message, params in refusals.items():
        target = "javascript:alert(1)" if "http(s)" in message else back
        page = flow.s.get(
            end, params={"post_logout_redirect_uri": target, **params}, allow_redirects=False
        )
        assert page.status_code == 400 and message in page.text, message
    plain = flow.s.get(end, allow_redirects=False)
    assert plain.status_code == 200 and "You are signed out." in plain.text
