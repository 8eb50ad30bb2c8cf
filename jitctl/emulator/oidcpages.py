"""The emulator's sign-in pages (plain HTML, no JavaScript, every value escaped) and its JSON
and redirect answers."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode, urlsplit

_STYLE = "body{font-family:sans-serif;margin:2em}button{display:block;margin:.4em 0;padding:.5em}"


def _html(status: int, title: str, body: str) -> tuple[int, dict[str, str], bytes]:
    doc = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1>{body}</body></html>"
    )
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        "X-Frame-Options": "DENY",
    }
    return status, headers, doc.encode("utf-8")


def error_page(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return _html(status, "Sign-in error", f"<p>{html.escape(message)}</p>")


def user_picker(
    params: dict[str, str], note: str, users: Iterable[Any]
) -> tuple[int, dict[str, str], bytes]:
    """The test users as buttons of one form that posts back to authorize (no JavaScript)."""
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in params.items()
        if k != "login_hint"
    )
    buttons = "".join(
        f'<button type="submit" name="login_hint" value="{html.escape(u.upn)}">'
        f"{html.escape(u.name)} &lt;{html.escape(u.upn)}&gt; "
        f"({html.escape(', '.join(u.groups + u.roles))})</button>"
        for u in users
    )
    warn = f"<p><strong>{html.escape(note)}</strong></p>" if note else ""
    body = f'{warn}<p>Sign in to the jitctl emulator as:</p><form method="post">{hidden}{buttons}</form>'
    return _html(200, "jitctl emulator: sign in", body)


def signed_out() -> tuple[int, dict[str, str], bytes]:
    return _html(200, "jitctl emulator: signed out", "<p>You are signed out.</p>")


def json_answer(status: int, body: Any) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"}
    return status, headers, json.dumps(body).encode()


def redirect(target: str, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    if params:
        target += ("&" if urlsplit(target).query else "?") + urlencode(params)
    return 302, {"Location": target, "Cache-Control": "no-store"}, b""
