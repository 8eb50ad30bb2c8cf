"""The pages' OIDC client against the emulator's identity provider (in-process), and the VM
exposure cache: what each refuses, and how often the exposure is read."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from jitctl.broker.errors import IdentityUnavailable, Unauthenticated
from jitctl.broker.identity import TokenVerifier
from jitctl.broker.signin import OidcClient, challenge_of
from jitctl.broker.vmexposure import ExposureCache
from jitctl.cli.broker_web import IdpTransport
from jitctl.emulator import Backend, FakeClock
from jitctl.emulator.oidc import BROKER_APP_ID, IdentityProvider
from jitctl.errors import NotFound
from jitctl.services.audit import AuditResult, Finding, VmAudit

REDIRECT = "http://127.0.0.1:8080/auth/callback"


@pytest.fixture
def idp() -> IdentityProvider:
    return IdentityProvider(Backend(clock=FakeClock()))


def client(idp: IdentityProvider, issuer: str | None = None) -> OidcClient:
    http = httpx.Client(transport=IdpTransport(idp))  # type: ignore[arg-type]
    return OidcClient(issuer or idp.issuer, BROKER_APP_ID, BROKER_APP_ID, http=http)


def test_a_sign_in_sends_an_s256_challenge_and_trades_the_code_with_its_verifier(
    idp: IdentityProvider,
) -> None:
    oidc = client(idp)
    started = oidc.start(REDIRECT)
    query = {k: v[0] for k, v in parse_qs(urlsplit(started.url).query).items()}
    assert query["code_challenge"] == challenge_of(started.verifier)
    assert query["code_challenge_method"] == "S256" and query["state"] == started.state
    _, headers, _ = idp.handle("GET", started.url + "&login_hint=bob@contoso.com", {}, None)
    code = parse_qs(urlsplit(headers["Location"]).query)["code"][0]
    with pytest.raises(Unauthenticated, match="code_verifier does not match"):
        oidc.exchange(code, "not-the-verifier-" + "x" * 40, REDIRECT)
    _, headers, _ = idp.handle("GET", started.url + "&login_hint=bob@contoso.com", {}, None)
    code = parse_qs(urlsplit(headers["Location"]).query)["code"][0]
    tokens = oidc.exchange(code, started.verifier, REDIRECT)
    assert tokens.access_token.count(".") == 2
    assert jwt.decode(tokens.id_token, options={"verify_signature": False})["nonce"] == (
        started.nonce
    )


def test_each_sign_in_sends_its_own_nonce_and_the_id_token_must_carry_it(
    idp: IdentityProvider,
) -> None:
    oidc = client(idp)
    first, second = oidc.start(REDIRECT), oidc.start(REDIRECT)
    nonces = [parse_qs(urlsplit(s.url).query)["nonce"][0] for s in (first, second)]
    assert nonces == [first.nonce, second.nonce] and first.nonce != second.nonce
    assert len(first.nonce) >= 32  # 24 random bytes
    _, headers, _ = idp.handle("GET", second.url + "&login_hint=bob@contoso.com", {}, None)
    code = parse_qs(urlsplit(headers["Location"]).query)["code"][0]
    tokens = oidc.exchange(code, second.verifier, REDIRECT)
    verifier = TokenVerifier(idp.issuer, BROKER_APP_ID, jwks=Direct(idp), clock=idp.clock)
    claims = verifier.check_id_token(tokens.id_token, BROKER_APP_ID, second.nonce)
    assert claims["preferred_username"] == "bob@contoso.com"
    with pytest.raises(Unauthenticated, match="not issued for this sign-in"):
        verifier.check_id_token(tokens.id_token, BROKER_APP_ID, first.nonce)
    with pytest.raises(Unauthenticated, match="not for this broker"):
        verifier.check_id_token(tokens.id_token, "another-client", second.nonce)


class Direct:
    """The verifier's JwksSource on the in-process provider."""

    def __init__(self, idp: IdentityProvider) -> None:
        self.idp = idp

    def fetch(self, url: str) -> Any:
        import json

        status, _, body = self.idp.handle("GET", url, {}, None)
        assert status == 200, url
        return json.loads(body)


def test_sign_out_goes_to_the_issuers_end_session_endpoint_with_the_hint(
    idp: IdentityProvider,
) -> None:
    back = "http://127.0.0.1:8080/auth/signed-out"
    url = client(idp).logout_url(back, "the.id.token")
    parts = urlsplit(url or "")
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == idp.discovery()["end_session_endpoint"]
    assert parse_qs(parts.query) == {
        "post_logout_redirect_uri": [back],
        "client_id": [BROKER_APP_ID],
        "id_token_hint": ["the.id.token"],
    }
    assert "id_token_hint" not in (client(idp).logout_url(back, None) or "")


def test_an_issuer_without_end_session_endpoint_signs_out_locally_only(
    idp: IdentityProvider,
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        doc = idp.discovery()
        del doc["end_session_endpoint"]
        return httpx.Response(200, json=doc)

    oidc = OidcClient(
        idp.issuer,
        BROKER_APP_ID,
        BROKER_APP_ID,
        http=httpx.Client(transport=httpx.MockTransport(answer)),
    )
    assert oidc.logout_url("http://127.0.0.1:8080/auth/signed-out", "a.b.c") is None


def test_an_issuer_whose_discovery_names_another_is_not_trusted(idp: IdentityProvider) -> None:
    impostor = client(idp)
    impostor.issuer = idp.issuer + "-other"
    with pytest.raises(IdentityUnavailable, match="is not this issuer's"):
        impostor.start(REDIRECT)


VM = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"


def test_the_exposure_is_read_once_per_subscription_while_fresh_and_a_failure_is_shown() -> None:
    ticks = [0.0]
    reads: list[str] = []
    answers: list[Any] = [
        AuditResult(
            ("s1",),
            (VmAudit(VM, True, None, "p"),),
            (Finding("bypass", "high", VM, "port 22 open to the Internet"),),
        ),
        NotFound("No subscription s1.", "Check it."),
    ]

    def read(sub: str) -> AuditResult:
        reads.append(sub)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    cache = ExposureCache(read, ttl=60, monotonic=lambda: ticks[0])
    first = cache(VM)
    assert first.protected is True and [f.message for f in first.findings] == [
        "port 22 open to the Internet"
    ]
    assert cache(VM.replace("vm1", "vm2")).protected is None  # same audit: not read again
    assert reads == ["s1"]
    ticks[0] = 61
    assert cache(VM).error == "Not read: No subscription s1."
    assert reads == ["s1", "s1"]
