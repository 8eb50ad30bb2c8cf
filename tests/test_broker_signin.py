"""The pages' OIDC client against the emulator's identity provider (in-process), and the VM
exposure cache: what each refuses, and how often the exposure is read."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from jitctl.broker.errors import IdentityUnavailable, Unauthenticated
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
    token = oidc.exchange(code, started.verifier, REDIRECT)
    assert token.count(".") == 2


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
