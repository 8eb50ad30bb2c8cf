"""The emulator over HTTPS on 127.0.0.1, with a managed-identity token endpoint, so that any
client (azure-identity, the azure-mgmt clients, jitctl, the Azure CLI) works unchanged."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jitctl.emulator.backend import DEFAULT_TENANT, Backend
from jitctl.emulator.oidc import BROKER_APP_ID, IdentityProvider
from jitctl.emulator.responses import Router
from jitctl.emulator.store import StateStore, StoredRouter, open_store
from jitctl.files import write_private

TOKEN_PATH = "/msi/token"
HANDSHAKE_TIMEOUT = 30.0  # seconds


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, made at start; returns (cert, key) paths."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jitctl emulator")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "emulator-cert.pem", directory / "emulator-key.pem"
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return cert_path, key_path


def fake_jwt(resource: str, subscription: str | None) -> tuple[str, int]:
    """An unsigned JWT-shaped token with the claims clients read (tid, oid, exp); never a secret."""
    exp = int(time.time()) + 3600

    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    claims = {
        "aud": resource,
        "iss": f"https://sts.windows.net/{DEFAULT_TENANT}/",
        "tid": DEFAULT_TENANT,
        "oid": "00000000-0000-4000-8000-0000000000e1",
        "appid": "00000000-0000-4000-8000-0000000000e2",
        "xms_mirid": f"/subscriptions/{subscription}/emulator",
        "exp": exp,
        "iat": exp - 3600,
    }
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.", exp


class PortUnavailable(Exception):
    """The port asked for is in use, out of range or not ours to take."""


class _HTTPServer(ThreadingHTTPServer):
    """Many clients at once: a real listen backlog, Nagle off (a small answer would otherwise
    wait for the client's delayed ACK, ~40 ms), and each TLS handshake in its client's thread
    rather than in the accept loop."""

    request_queue_size = 128

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            return  # a client that hung up or spoke no TLS: nothing to report
        super().handle_error(request, client_address)


@dataclass
class EmulatorServer:
    """With `state_file`, every request is one transaction on that store (jitctl.emulator.store),
    which `jitctl --emulator` processes may share; `backend` seeds a new file."""

    backend: Backend
    host: str = "127.0.0.1"
    port: int = 0
    state_file: Path | None = None
    cert_dir: Path | None = None

    def __post_init__(self) -> None:
        self.router: Router | StoredRouter = Router(self.backend)
        self.store: StateStore | None = None
        self.identity = IdentityProvider(self.backend)  # its base URL is set on start
        self.identity_header = secrets.token_hex(16)
        self._httpd: ThreadingHTTPServer | None = None
        self._own_dir: Path | None = None  # the temporary folder with the key, ours to remove

    @property
    def endpoint(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self) -> None:
        """Listen; a port that cannot be had raises PortUnavailable, leaving nothing behind."""
        import tempfile

        try:
            httpd = _HTTPServer((self.host, self.port), _make_handler(self))
        except OverflowError as err:  # the socket module's word for a port out of 0-65535
            raise PortUnavailable(f"Port {self.port} is not a TCP port (0 to 65535).") from err
        except OSError as err:
            raise PortUnavailable(
                f"Port {self.port} on {self.host} cannot be used: {err.strerror or err}."
            ) from err
        try:
            if self.state_file is not None and self.store is None:
                self.store = open_store(self.state_file, self.backend)
                self.router = StoredRouter(Router(self.backend), self.store)
                self.identity = IdentityProvider(self.backend, transaction=self.store.request)
            directory = self.cert_dir
            if directory is None:
                directory = self._own_dir = Path(tempfile.mkdtemp(prefix="jitctl-emulator-"))
            self.cert_path, key_path = self_signed_cert(directory)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.cert_path, key_path)
            httpd.socket = ctx.wrap_socket(
                httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        except BaseException:
            httpd.server_close()
            self.stop()
            raise
        self.port = httpd.server_address[1]
        self.identity.base_url = self.endpoint
        # a short poll so that stop() returns at once (serve_forever checks shutdown per poll)
        threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self._httpd = httpd  # now serving: stop() may shut it down

    def change_settings(self, changes: dict[str, Any]) -> None:
        """Change emulator settings, in the state file too when there is one."""
        if self.store is None:
            self.backend.settings = replace(self.backend.settings, **changes)
            return
        with self.store.request():
            self.backend.settings = replace(self.backend.settings, **changes)

    def stop(self) -> None:
        """Stop serving; the temporary folder with the private key goes too."""
        import shutil

        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self.store is not None:
            self.store.close()
            self.store = None
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None

    def _subscription(self) -> str:
        subs: list[dict[str, Any]] = list(self.backend.state["subscriptions"].values())
        return str(subs[0]["subscriptionId"]) if subs else ""

    def shell_lines(self) -> list[str]:
        sub = self._subscription()
        return [
            f"export JITCTL_ARM_ENDPOINT={self.endpoint}",
            f"export IDENTITY_ENDPOINT={self.endpoint}{TOKEN_PATH}",
            f"export IDENTITY_HEADER={self.identity_header}",
            f"export REQUESTS_CA_BUNDLE={self.cert_path}",
            f"export AZURE_SUBSCRIPTION_ID={sub}",
            f"export JITCTL_BROKER_ISSUER={self.identity.issuer}",
            f"export JITCTL_BROKER_AUDIENCE={BROKER_APP_ID}",
        ]

    def token(self, query: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if headers.get("x-identity-header") != self.identity_header:
            return 401, {
                "error": "invalid_request",
                "error_description": "X-IDENTITY-HEADER is missing or wrong.",
            }
        resource = query.get("resource", "")
        sub = self._subscription()
        token, exp = fake_jwt(resource, sub)
        return 200, {
            "access_token": token,
            "expires_on": str(exp),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": "00000000-0000-4000-8000-0000000000e2",
        }


def _make_handler(server: EmulatorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = 1 << 16  # headers and body leave in one write (flushed after each request)

        def setup(self) -> None:
            self.request.settimeout(HANDSHAKE_TIMEOUT)  # a silent client holds only its thread
            self.request.do_handshake()
            self.request.settimeout(None)
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:  # quiet; the backend keeps a log
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            parts = urlsplit(self.path)
            if server.identity.handles(parts.path):
                status, out_headers, payload = server.identity.handle(
                    self.command, f"{server.endpoint}{self.path}", headers, raw
                )
            elif parts.path == TOKEN_PATH:
                status, body = server.token(
                    {k: v[-1] for k, v in parse_qs(parts.query).items()}, headers
                )
                payload = json.dumps(body).encode()
                out_headers = {"Content-Type": "application/json"}
            else:
                status, out_headers, payload = server.router.handle(
                    self.command,
                    f"{server.endpoint}{self.path}",
                    headers,
                    raw,
                    str(self.client_address[0]),
                )
            self.send_response(status)
            for k, v in out_headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

    return Handler
