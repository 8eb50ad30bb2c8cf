"""The broker's API in this process, for a client that would otherwise speak HTTP to it: the
demo (`jitctl demo --broker`) and tests. Nothing listens on a port."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class InProcess(httpx.BaseTransport):
    """httpx's ASGI transport for a synchronous client: each request runs the app in a fresh
    event loop, as the CLI's client sends one request at a time."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def once() -> httpx.Response:
            answer = await self.inner.handle_async_request(request)
            body = await answer.aread()
            return httpx.Response(answer.status_code, headers=answer.headers, content=body)

        return asyncio.run(once())


def client_for(app: Any, base_url: str = "http://127.0.0.1:8080") -> httpx.Client:
    """An httpx client whose requests the ASGI `app` answers in-process."""
    return httpx.Client(transport=InProcess(app), base_url=base_url)
