"""Public IP detection through an injected HTTP layer."""

from __future__ import annotations

import pytest

from jitctl.publicip import (
    DOCUMENTATION_ADDRESS,
    PublicIpError,
    detect_public_ip,
    emulated_public_ip,
)

URLS = ["https://a.example", "https://b.example", "https://c.example"]


def fetcher(answers):
    asked = []

    def fetch(url, timeout):
        asked.append(url)
        value = answers[url]
        if isinstance(value, Exception):
            raise value
        return value

    fetch.asked = asked
    return fetch


def test_two_agree_third_not_asked():
    f = fetcher({URLS[0]: "198.51.100.7\n", URLS[1]: "198.51.100.7", URLS[2]: "9.9.9.9"})
    assert detect_public_ip(f, URLS) == "198.51.100.7"
    assert sorted(f.asked) == URLS[:2]


def test_disagreement_third_decides():
    f = fetcher({URLS[0]: "198.51.100.7", URLS[1]: "198.51.100.8", URLS[2]: "198.51.100.8"})
    assert detect_public_ip(f, URLS) == "198.51.100.8"


def test_timeout_and_garbage_third_decides():
    f = fetcher(
        {URLS[0]: TimeoutError("slow"), URLS[1]: "<html>nope</html>", URLS[2]: "198.51.100.9"}
    )
    with pytest.raises(PublicIpError, match="Only one IP echo service answered"):
        detect_public_ip(f, URLS)  # one answer only: not trusted


def test_all_disagree():
    f = fetcher({URLS[0]: "198.51.100.1", URLS[1]: "198.51.100.2", URLS[2]: "198.51.100.3"})
    with pytest.raises(PublicIpError, match="disagree on this machine's address"):
        detect_public_ip(f, URLS)


def test_offline():
    f = fetcher(dict.fromkeys(URLS, OSError("no network")))
    with pytest.raises(PublicIpError, match="no echo service answered"):
        detect_public_ip(f, URLS)


def test_private_or_ipv6_answers_are_not_trusted():
    f = fetcher({URLS[0]: "10.0.0.1", URLS[1]: "2001:db8::1", URLS[2]: "198.51.100.9"})
    with pytest.raises(PublicIpError):
        detect_public_ip(f, URLS)


def test_needs_two_services():
    with pytest.raises(PublicIpError, match="At least two"):
        detect_public_ip(fetcher({}), URLS[:1])


def test_against_the_emulator_the_documentation_address_is_used_and_nothing_asked():
    """Online or offline the same: an echo service's answer would be outside every range the
    emulator's worlds allow (the README's examples failed online)."""
    from jitctl.app import App

    asked: list[str] = []

    def online(url: str, timeout: float) -> str:
        asked.append(url)
        return "198.51.100.7"

    said: list[str] = []
    app = App(emulator=True, ip_fetch=online)
    assert app.public_ip(said.append) == DOCUMENTATION_ADDRESS == "203.0.113.7"
    assert asked == []
    assert said == [emulated_public_ip()[1]]
    assert said[0].startswith("Emulator: ") and "--source-ip" in said[0]
    assert App(emulator=False, ip_fetch=online).public_ip() == "198.51.100.7"  # Azure: asked


def test_http_fetch_asks_with_httpx_as_jitctl_and_refuses_an_error_answer():
    """The real fetch, on a server at 127.0.0.1: the answer's text, jitctl's User-Agent, and
    an HTTP error raised (so detect_public_ip counts that service as silent)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    from jitctl.publicip import http_fetch

    seen: list[str] = []

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("User-Agent", ""))
            status, body = (200, b"198.51.100.7\n") if self.path == "/ip" else (503, b"busy")
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert http_fetch(f"{base}/ip", 2.0) == "198.51.100.7\n"
        with pytest.raises(httpx.HTTPStatusError):
            http_fetch(f"{base}/busy", 2.0)
        assert detect_public_ip(http_fetch, [f"{base}/ip", f"{base}/ip"]) == "198.51.100.7"
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["jitctl"] * 4


def test_httpx_clients_trust_the_ca_file_as_azure_cores_requests_does(monkeypatch, tmp_path):
    """REQUESTS_CA_BUNDLE, else SSL_CERT_FILE (httpx alone reads only the latter)."""
    import ssl

    from jitctl.cabundle import httpx_verify

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    assert httpx_verify() is True
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "none.pem"))
    with pytest.raises(FileNotFoundError):  # that file, not the system's store
        httpx_verify()
    import certifi

    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    with pytest.raises(FileNotFoundError):  # REQUESTS_CA_BUNDLE first: still the missing file
        httpx_verify()
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    assert isinstance(httpx_verify(), ssl.SSLContext)
