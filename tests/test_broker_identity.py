"""The broker's token check (jitctl.broker.identity) against tokens the emulator's identity
provider signs (its own JWS code, not PyJWT), read through the in-process transport: the same
discovery -> JWKS -> signature -> claims path as against Entra ID."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import jwt
import pytest

from jitctl.broker.errors import IdentityUnavailable, StoreUnavailable, Unauthenticated
from jitctl.broker.identity import HttpsJson, TokenVerifier, principal_of
from jitctl.broker.rules import Principal
from jitctl.emulator import Backend, FakeClock
from jitctl.emulator.oidc import BROKER_APP_ID, IdentityProvider
from jitctl.emulator.transport import emulator_session
from jitctl.errors import BadInput, ExitCode


class Counting:
    """A JwksSource that counts what the verifier reads (the real HTTP path underneath)."""

    def __init__(self, idp: IdentityProvider) -> None:
        self.inner = HttpsJson(emulator_session(idp))
        self.urls: list[str] = []

    def fetch(self, url: str) -> Any:
        self.urls.append(url)
        return self.inner.fetch(url)


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idp(backend: Backend) -> IdentityProvider:
    return IdentityProvider(backend)


@pytest.fixture
def source(idp: IdentityProvider) -> Counting:
    return Counting(idp)


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def verifier(idp: IdentityProvider, source: Counting, clock: FakeClock, ticker: Ticker):
    return TokenVerifier(idp.issuer, BROKER_APP_ID, jwks=source, clock=clock, monotonic=ticker)


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as err:
        verifier.verify(token)
    assert err.value.code == ExitCode.NOT_SIGNED_IN
    return err.value.message


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    _, body, sig = token.split(".")
    return jwt.get_unverified_header(token), json.loads(base64.urlsafe_b64decode(body + "==")), sig


def test_a_token_of_the_emulator_gives_the_user_and_groups_and_app_roles(idp, verifier):
    assert verifier.verify(idp.mint("bob@contoso.com")) == Principal(
        "bob@contoso.com", frozenset({"ops-leads"})
    )
    carol = verifier.verify("Bearer " + idp.mint("CAROL@contoso.com"))
    assert carol == Principal("carol@contoso.com", frozenset({"broker-admins", "admin"}))


def test_the_principal_keeps_the_tokens_object_id_and_tenant(idp, verifier):
    """Names are for display; who is who goes by the immutable oid (with its tid)."""
    from jitctl.emulator.oidc import DEFAULT_TENANT
    from jitctl.emulator.oidcusers import USERS

    bob = verifier.verify(idp.mint("bob@contoso.com"))
    assert (bob.oid, bob.tid) == (USERS["bob@contoso.com"].oid, DEFAULT_TENANT)
    renamed = Principal("robert@contoso.com", bob.groups, oid=bob.oid.upper())
    assert renamed.same_as("bob@contoso.com", bob.oid)
    assert not Principal("bob@contoso.com", oid="another").same_as("bob@contoso.com", bob.oid)
    assert Principal("Bob@contoso.com").same_as("bob@contoso.com", bob.oid)  # no oid: the name
    no_ids = principal_of({"upn": "x@contoso.com", "oid": " ", "scp": "user"})
    assert (no_ids.oid, no_ids.tid) == (None, None)


def test_keys_are_read_once_through_discovery_and_cached(idp, verifier, source):
    for upn in ("alice@contoso.com", "bob@contoso.com", "dave@contoso.com"):
        verifier.verify(idp.mint(upn))
    tenant = idp.issuer.removesuffix("/v2.0")
    assert source.urls == [
        f"{idp.issuer}/.well-known/openid-configuration",
        f"{tenant}/discovery/v2.0/keys",
    ]


def test_a_rolled_key_is_read_again_but_not_at_every_unknown_key(idp, verifier, source, ticker):
    verifier.verify(idp.mint("bob@contoso.com"))
    idp.backend.state["identity"]["keys"] = []  # the issuer rolls its signing key
    token = idp.mint("bob@contoso.com")
    ticker.now += 30  # an unknown key id within a minute of the last read: no new read
    assert refused(verifier, token) == "The token is signed with a key the issuer does not publish."
    assert len(source.urls) == 2
    ticker.now += 31
    assert verifier.verify(token).upn == "bob@contoso.com"
    assert len(source.urls) == 3  # the JWKS only: the discovery document is kept


def test_the_keys_are_read_again_after_an_hour(idp, verifier, source, ticker):
    token = idp.mint("bob@contoso.com")
    verifier.verify(token)
    ticker.now += 3601
    verifier.verify(token)
    assert len(source.urls) == 3


def test_a_wrong_issuer_is_refused(idp, verifier):
    token = idp.mint("bob@contoso.com", extra={"iss": "https://login.example.com/t/v2.0"})
    assert refused(verifier, token) == f"The token's issuer is not {idp.issuer}."


def test_a_v1_token_says_how_to_get_v2_tokens(idp, verifier):
    token = idp.mint("bob@contoso.com", extra={"iss": "https://sts.windows.net/t/"})
    with pytest.raises(Unauthenticated) as err:
        verifier.verify(token)
    assert "requestedAccessTokenVersion to 2" in err.value.hint


def test_a_token_for_another_audience_is_refused(idp, verifier):
    token = idp.mint("bob@contoso.com", audience="00000003-0000-0000-c000-000000000000")
    assert (
        refused(verifier, token) == f"The token is not for this broker (audience {BROKER_APP_ID})."
    )


def test_the_app_id_uri_is_the_same_audience(idp, verifier):
    token = idp.mint("bob@contoso.com", audience=f"api://{BROKER_APP_ID}")
    assert verifier.verify(token).upn == "bob@contoso.com"


def test_a_changed_payload_breaks_the_signature(idp, verifier):
    head, claims, sig = parts(idp.mint("mallory@contoso.com"))
    claims["groups"] = ["ops-leads"]
    forged = f"{b64(head)}.{b64(claims)}.{sig}"
    assert refused(verifier, forged) == "The token's signature does not verify."


def test_alg_none_is_refused_before_any_key_is_read(idp, verifier, source):
    _, claims, _ = parts(idp.mint("bob@contoso.com"))
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    assert refused(verifier, unsigned) == (
        "The token is signed with 'none'; the broker accepts RS256 and ES256 only."
    )
    assert source.urls == []


def test_hs256_with_the_public_key_as_secret_is_refused(idp, verifier):
    """The key-confusion attack: the issuer's public key used as an HMAC secret."""
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization

    kid = idp.jwks()["keys"][0]["kid"]
    _, claims, _ = parts(idp.mint("bob@contoso.com"))
    public_key = jwt.algorithms.RSAAlgorithm.from_jwk(idp.jwks()["keys"][0])
    public_pem = public_key.public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signed = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{b64(claims)}"
    mac = hmac.new(public_pem, signed.encode(), hashlib.sha256).digest()
    token = f"{signed}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
    assert "accepts RS256 and ES256 only" in refused(verifier, token)


def test_an_expired_token_is_refused_past_the_leeway(idp, verifier, clock):
    token = idp.mint("bob@contoso.com", lifetime=timedelta(minutes=5))
    clock.advance(minutes=5, seconds=119)  # within two minutes of skew: still good
    assert verifier.verify(token).upn == "bob@contoso.com"
    clock.advance(seconds=1)
    assert refused(verifier, token) == "The token has expired."


def test_not_yet_valid_and_issued_in_the_future_are_refused(idp, verifier, clock):
    later = int(clock.now().timestamp()) + 3600
    assert refused(verifier, idp.mint("bob@contoso.com", extra={"nbf": later})) == (
        "The token is not valid yet (nbf)."
    )
    assert refused(verifier, idp.mint("bob@contoso.com", extra={"iat": later})) == (
        "The token was issued in the future (iat)."
    )


@pytest.mark.parametrize("claim", ["exp", "iat", "aud", "iss"])
def test_a_required_claim_missing_is_refused(idp, verifier, claim):
    assert refused(verifier, idp.mint("bob@contoso.com", extra={claim: None})) == (
        f"The token has no {claim!r} claim."
    )


@pytest.mark.parametrize("token", ["", "   ", "abc", "a.b.c", "x" * 20_000])
def test_what_is_no_jwt_is_refused(verifier, token):
    refused(verifier, token)


def test_group_overage_is_refused_rather_than_read_as_no_groups(idp, verifier):
    token = idp.mint(
        "mallory@contoso.com",
        extra={"groups": None, "_claim_names": {"groups": "src1"}, "_claim_sources": {}},
    )
    assert refused(verifier, token) == (
        "The token's groups were left out (the user is in too many groups)."
    )


def test_an_app_only_token_is_named_by_its_application_id(idp, verifier):
    token = idp.mint(
        "bob@contoso.com",
        extra={
            "preferred_username": None,
            "scp": None,
            "idtyp": "app",
            "azp": "11111111-2222-4000-8000-333333333333",
            "groups": None,
            "roles": ["pipeline"],
        },
    )
    assert verifier.verify(token) == Principal(
        "11111111-2222-4000-8000-333333333333", frozenset({"pipeline"})
    )


def test_a_user_token_without_a_name_is_refused(idp, verifier):
    token = idp.mint("bob@contoso.com", extra={"preferred_username": None})
    assert refused(verifier, token) == (
        "The token names no user (upn, preferred_username or email)."
    )


def test_upn_comes_before_preferred_username_and_email():
    base = {"scp": "x"}
    assert (
        principal_of({**base, "email": "e@x", "preferred_username": "p@x", "upn": "u@x"}).upn
        == "u@x"
    )
    assert principal_of({**base, "email": "e@x", "preferred_username": "p@x"}).upn == "p@x"
    assert principal_of({**base, "email": "e@x"}).upn == "e@x"


def test_es256_tokens_verify_and_an_algorithm_must_fit_its_key(clock):
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "e1"}
    rsa_jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "r1"}
    issuer = "https://issuer.example.com"
    docs = {
        f"{issuer}/.well-known/openid-configuration": {"issuer": issuer, "jwks_uri": "https://k"},
        "https://k": {"keys": [ec_jwk, rsa_jwk]},
    }

    class Fixed:
        def fetch(self, url: str) -> Any:
            return docs[url]

    verifier = TokenVerifier(issuer, "aud-1", jwks=Fixed(), clock=clock)
    now = int(clock.now().timestamp())
    claims = {"iss": issuer, "aud": "aud-1", "iat": now, "exp": now + 60, "upn": "x@y", "scp": "s"}
    good = jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "e1"})
    assert verifier.verify(good) == Principal("x@y", frozenset())
    wrong = jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "r1"})
    assert (
        refused(verifier, wrong) == "The token's algorithm ES256 does not fit the issuer's key r1."
    )


def test_an_issuer_whose_discovery_names_another_issuer_cannot_check_tokens(idp, clock):
    verifier = TokenVerifier(
        idp.issuer.replace("/v2.0", "/v2.0/extra"),
        BROKER_APP_ID,
        jwks=HttpsJson(emulator_session(idp)),
        clock=clock,
    )
    with pytest.raises(IdentityUnavailable) as err:
        verifier.verify(idp.mint("bob@contoso.com"))
    assert err.value.message.startswith("The identity provider answered 404")
    assert isinstance(err.value, StoreUnavailable)  # the API's 503, as for the database


def test_an_unreachable_issuer_is_unavailable_not_a_bad_token(clock):
    verifier = TokenVerifier("http://127.0.0.1:9", BROKER_APP_ID, clock=clock)
    with pytest.raises(IdentityUnavailable) as err:
        verifier.verify(f"{b64({'alg': 'RS256', 'kid': 'k'})}.{b64({'upn': 'x'})}.c2ln")
    assert err.value.message == (
        "The identity provider did not answer at "
        "http://127.0.0.1:9/.well-known/openid-configuration: ConnectionError."
    )


@pytest.mark.parametrize(
    "issuer", ["login.microsoftonline.com/t/v2.0", "http://login.example.com/t", "ftp://x", ""]
)
def test_an_issuer_must_be_https(issuer):
    with pytest.raises(BadInput) as err:
        TokenVerifier(issuer, BROKER_APP_ID)
    assert "is not an https URL" in err.value.message


def test_an_audience_is_required():
    with pytest.raises(BadInput) as err:
        TokenVerifier("https://login.example.com/t/v2.0", " ")
    assert err.value.hint.startswith("Give --audience (or JITCTL_BROKER_AUDIENCE)")
