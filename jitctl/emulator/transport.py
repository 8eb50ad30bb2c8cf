"""In-process transport: the real azure-core pipeline (and so the real SDK clients) talks to the
emulator through a requests adapter, with no socket."""

from __future__ import annotations

import io
from typing import Any, Protocol

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict


class Answers(Protocol):
    """What answers requests: a Router, or a StoredRouter (one store transaction per request)."""

    def handle(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        raw: bytes | None,
        peer: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]: ...


class EmulatorAdapter(BaseAdapter):
    def __init__(self, router: Answers) -> None:
        super().__init__()
        self.router = router

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        raw = request.body
        if hasattr(raw, "read"):
            raw = raw.read()  # type: ignore[union-attr]
        if isinstance(raw, str):
            raw = raw.encode()
        status, headers, body = self.router.handle(
            request.method or "GET",
            request.url or "",
            {k: str(v) for k, v in request.headers.items()},
            raw,  # type: ignore[arg-type]
        )
        resp = requests.Response()
        resp.status_code = status
        resp.headers = CaseInsensitiveDict(headers)
        resp.raw = io.BytesIO(body)
        resp.url = request.url or ""
        resp.request = request
        resp.reason = "OK" if status < 400 else "Error"
        resp.encoding = "utf-8"
        return resp

    def close(self) -> None:
        pass


def emulator_session(router: Answers) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    adapter = EmulatorAdapter(router)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def emulator_transport(router: Answers) -> Any:
    """An azure-core RequestsTransport whose every request is answered by `router`."""
    from azure.core.pipeline.transport import RequestsTransport

    return RequestsTransport(session=emulator_session(router), session_owner=False)


class StaticCredential:
    """A TokenCredential for the emulator; the token is a placeholder, never a secret."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("emulator-token", 4102444800)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo("emulator-token", 4102444800)
