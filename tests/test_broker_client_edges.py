"""The CLI's broker client at its edges: the CA file it trusts, the one loopback rule."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jitctl.broker.client import BrokerClient
from jitctl.emulator.server import self_signed_cert
from jitctl.errors import JitctlError
from jitctl.loopback import is_loopback


class Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "you": "ann@contoso.com"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def https_broker(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 whose certificate only its own CA file vouches for."""
    cert, key = self_signed_cert(tmp_path / "tls")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def test_the_client_trusts_requests_ca_bundle_as_the_azure_sdk_does(https_broker, monkeypatch):
    url, cert = https_broker
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    with pytest.raises(JitctlError, match="did not answer"):  # the system's store: untrusted
        BrokerClient(url, lambda: "tok").call("GET", "/healthz")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    assert BrokerClient(url, lambda: "tok").call("GET", "/healthz")["you"] == "ann@contoso.com"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LocalHost", True),
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_one_loopback_rule(host, loopback):
    assert is_loopback(host) is loopback


# --- what error lines and --debug hide: credentials, never words --------------------------


@pytest.mark.parametrize(
    "text",
    [
        "The bearer token is not a JWT.",
        "The bearer token is not a signed JWT.",
        "Send 'Authorization: Bearer <token>' (jitctl broker does).",
        "No session secret: give --session-secret or JITCTL_BROKER_SESSION_SECRET.",
        "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-prod/providers/"
        "Microsoft.Compute/virtualMachines/MyVeryLongVmName-Westeurope-001",
        "event 2: hash " + "ab12" * 16,
        "denied by rule MicrosoftDefenderForCloud-JITRule_-1804758302_4F9C2AE6A13D4F8C9A8E38E3C1A5"
        "B1F1 (priority 4096)",
        "VM MyVeryLongVirtualMachineName0001-WestEurope-Production is stopped",
        "request 6f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f is approved",
    ],
)
def test_redaction_leaves_ordinary_text_alone(text):
    from jitctl.cli.logs import redact

    assert redact(text) == text


JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlX2hlcmU"


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (f"token {JWT} refused", "token <redacted-jwt> refused"),
        ("Authorization: Bearer tok-ann", "Authorization: <redacted>"),
        ('{"access_token": "abc", "x": 1}', '{"access_token": "<redacted>", "x": 1}'),
        ("Bearer abcdefghijklmnopqrstuvwxyz012345", "Bearer <redacted>"),
        ("client_secret=Xk98Q~abcDEF", "client_secret=<redacted>"),
        ("key Xk98Q~aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z end", "key <redacted> end"),
    ],
)
def test_redaction_hides_what_looks_like_a_credential(text, redacted):
    from jitctl.cli.logs import redact

    assert redact(text) == redacted


def test_a_refused_token_reads_in_plain_words_and_debug_shows_no_token(
    tmp_path, backend, clock, monkeypatch
):
    """The real verifier's words reach the terminal intact; the token itself never does."""
    import httpx
    from click.testing import CliRunner

    from jitctl.app import App
    from jitctl.broker.api import create_app
    from jitctl.broker.identity import HttpsJson, TokenVerifier
    from jitctl.broker.inprocess import InProcess
    from jitctl.cli.commands import cli
    from jitctl.emulator.oidc import BROKER_APP_ID, IdentityProvider
    from jitctl.emulator.transport import emulator_session
    from tests.brokerapi import make_store, rules_in, settings

    idp = IdentityProvider(backend)
    store = make_store(tmp_path, clock)
    verifier = TokenVerifier(
        idp.issuer, BROKER_APP_ID, jwks=HttpsJson(emulator_session(idp)), clock=clock
    )
    ruleset = rules_in(tmp_path)
    http = httpx.Client(
        transport=InProcess(create_app(store, lambda: ruleset, verifier, settings())),
        base_url="http://127.0.0.1:8765",
    )
    monkeypatch.setenv("JITCTL_BROKER_URL", "http://127.0.0.1:8765")

    def run(token: str, *args: str) -> Any:
        monkeypatch.setenv("JITCTL_BROKER_TOKEN", token)
        return CliRunner().invoke(cli, list(args), obj=App(clock=clock, broker_http=http))

    try:
        plain = run("not-a-jwt", "broker", "list")
        assert plain.stderr.splitlines()[0] == (
            "jitctl: error: The bearer token is not a signed JWT."
        )
        token = idp.mint("alice@contoso.com", audience="another-app")
        debug = run(token, "--debug", "broker", "list")
        assert debug.exit_code == plain.exit_code != 0
        assert f"The token is not for this broker (audience {BROKER_APP_ID})." in debug.stderr
        assert not any(part in debug.stderr + debug.stdout for part in token.split("."))
    finally:
        http.close()
        store.engine.dispose()
