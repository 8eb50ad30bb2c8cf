"""A thin client of the broker's JSON API (httpx), for the CLI: each answer is the API's
JSON, each error the jitctl error its code names (so the exit code is the broker's verdict),
and a token never crosses the network in clear.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from jitctl.broker.views import CODES
from jitctl.errors import AzureError, BadInput, JitctlError
from jitctl.loopback import is_loopback
from jitctl.textsafe import printable

TIMEOUT = 30.0  # seconds; the API answers in milliseconds, a wait polls


def check_url(url: str) -> str:
    """https anywhere; plain http only to this machine (a loopback address): a bearer token
    sent in clear over a network can be replayed by whoever sees it."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise BadInput(
            f"'{printable(url)}' is not a broker URL.",
            "Give --broker https://broker.example.com (or set JITCTL_BROKER_URL).",
        )
    if parts.scheme == "http" and not is_loopback(host):
        raise BadInput(
            f"The broker URL {printable(url)} is plain HTTP to another machine: the token "
            "would cross the network in clear.",
            "Use https://, or http:// to a loopback address (127.0.0.1, ::1, localhost).",
        )
    return url.strip().rstrip("/")


class BrokerClient:
    def __init__(self, url: str, token: Callable[[], str], http: Any = None) -> None:
        """`token` is called only once the URL is known to be safe to send it to; `http` is an
        httpx.Client (tests pass one on an in-process transport)."""
        self.url = check_url(url)
        self._token = token
        self._http = http

    def _client(self) -> Any:
        if self._http is None:
            import httpx

            from jitctl.cabundle import httpx_verify

            # httpx reads SSL_CERT_FILE alone: a private CA named by REQUESTS_CA_BUNDLE (as
            # the Azure SDK's requests honours it) would otherwise fail here only
            self._http = httpx.Client(
                timeout=TIMEOUT, follow_redirects=False, verify=httpx_verify()
            )
        return self._http

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        text: bool = False,
    ) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
        where = f"{self.url}/api/v1{path}"
        try:
            answer = self._client().request(
                method, where, json=body, params=params, headers=headers
            )
        except httpx.HTTPError as err:
            raise JitctlError(
                f"The broker at {printable(self.url)} did not answer ({type(err).__name__}).",
                "Check --broker (or JITCTL_BROKER_URL) and that `jitctl broker serve` runs there.",
            ) from err
        if answer.status_code >= 400:
            raise error_of(answer.status_code, answer.text)
        return answer.text if text else answer.json()


def error_of(status: int, text: str) -> JitctlError:
    """The API's error as the jitctl error its code names; anything else by its status."""
    import json

    try:
        error = json.loads(text)["error"]
        code, message, hint = error["code"], str(error["message"]), str(error.get("hint", ""))
    except (ValueError, KeyError, TypeError):
        return AzureError(
            f"The broker answered HTTP {status} without an error document.",
            "Check that --broker names a jitctl broker.",
        )
    cls = CODES.get(code, JitctlError)
    return cls(message, hint)
