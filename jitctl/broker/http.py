"""The API's HTTP edge: the bearer token taken from the request, the JSON body read, one hop
off the event loop for the verifier and the handler together, and every error answered in
one shape (views.error_answer); the load balancer's probe."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jitctl.broker.errors import Unauthenticated
from jitctl.broker.rules import Principal
from jitctl.broker.views import error_answer, error_body
from jitctl.errors import BadInput, JitctlError

if TYPE_CHECKING:
    from jitctl.broker.store import Store

log = logging.getLogger("jitctl.broker.api")

MAX_BODY = 64 * 1024  # a request is a few hundred bytes; more is not one


class Verifier(Protocol):
    """What checks a bearer token (jitctl.broker.identity.TokenVerifier)."""

    def verify(self, token: str) -> Principal: ...


@dataclass(frozen=True)
class Call:
    """One authenticated API call, as a handler sees it."""

    who: Principal
    body: dict[str, Any]
    params: dict[str, str]
    path: dict[str, str]


Handler = Callable[[Call], Any]


def probe(store: Store) -> Callable[[Request], Awaitable[Response]]:
    """A liveness probe for a load balancer: no token (a probe has none), says nothing but
    whether the database answers."""

    async def probe(request: Request) -> Response:
        try:
            await run_in_threadpool(store.ping)
        except JitctlError as err:
            status, body = error_answer(err)
            return JSONResponse(body, status)
        return JSONResponse({"status": "ok"})

    return probe


def _token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "No bearer token.", "Send 'Authorization: Bearer <token>' (jitctl broker does)."
        )
    return token.strip()


def _body(method: str, raw: bytes) -> dict[str, Any]:
    if method != "POST":
        return {}
    if len(raw) > MAX_BODY:
        raise BadInput("The request body is too large.", f"Send at most {MAX_BODY} bytes.")
    if not raw.strip():
        return {}
    import json

    try:
        data = json.loads(raw)
    except ValueError:
        raise BadInput("The request body is not JSON.", "Send a JSON object.") from None
    if not isinstance(data, dict):
        raise BadInput("The request body is not a JSON object.", "Send a JSON object.")
    return data


def endpoint(
    verifier: Verifier, handler: Handler, status: int
) -> Callable[[Request], Awaitable[Response]]:
    async def answer_call(request: Request) -> Response:
        def answer(token: str, raw: bytes) -> Any:
            # the token first (nothing of an unknown caller's body is read), then the call
            who = verifier.verify(token)
            body = _body(request.method, raw)
            return handler(Call(who, body, dict(request.query_params), request.path_params))

        try:
            token = _token(request)
            raw = await request.body() if request.method == "POST" else b""
            # one hop off the event loop for both: the verifier may fetch the issuer's keys,
            # the handler reads and writes the database (a hop costs as much as a small query)
            result = await run_in_threadpool(answer, token, raw)
        except JitctlError as err:
            code, body = error_answer(err)
            headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
            return JSONResponse(body, code, headers=headers)
        except Exception:  # unexpected: logged here, a plain 500 out (no internals leak)
            log.exception("unexpected error in %s %s", request.method, request.url.path)
            return JSONResponse(
                error_body("internal", "The broker failed unexpectedly.", "See its log."), 500
            )
        if isinstance(result, Response):
            return result
        return JSONResponse(result, status)

    return answer_call
