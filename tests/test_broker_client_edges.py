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
