"""The web pages' sign-ins, kept in the broker's database so that every replica knows them.
The browser's cookie (signed by JITCTL_BROKER_SESSION_SECRET) holds a random id and the form
token, never the access token: Entra ID access tokens with a `groups` claim grow to about 8 KB
at 200 groups, past the 4 KB a browser keeps in a cookie, and a bearer token in a cookie
leaks with it. The table keeps a hash of the id (a copy of the table signs no one in), who
signed in as the token said, until the token's expiry, and the ID token for sign-out."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from jitctl.broker.models import web_sessions
from jitctl.broker.rules import Principal
from jitctl.broker.store import Store


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def _principal_json(who: Principal) -> str:
    data: dict[str, Any] = {}
    for f in dataclasses.fields(who):
        value = getattr(who, f.name)
        data[f.name] = sorted(value) if isinstance(value, frozenset) else value
    return json.dumps(data, sort_keys=True)


def _principal(text: str) -> Principal:
    data = json.loads(text)
    data["groups"] = frozenset(data.get("groups", ()))
    return Principal(**data)


class WebSessions:
    def __init__(self, store: Store) -> None:
        self.store = store

    def open(self, who: Principal, expires_at: datetime, id_token: str | None) -> str:
        """A new sign-in until `expires_at`; its id for the cookie. Sign-ins past their
        expiry are cleared on the way."""
        sid = secrets.token_urlsafe(32)
        now = self.store.clock.now()
        with self.store.connection() as conn:
            conn.execute(delete(web_sessions).where(web_sessions.c.expires_at <= now))
            conn.execute(
                web_sessions.insert().values(
                    id=_key(sid),
                    principal=_principal_json(who),
                    id_token=id_token,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
        return sid

    def find(self, sid: str) -> Principal | None:
        """Who is signed in with this id; None when unknown, signed out or expired."""
        query = select(web_sessions.c.principal).where(
            web_sessions.c.id == _key(sid),
            web_sessions.c.expires_at > self.store.clock.now(),
        )
        with self.store.reading() as conn:  # every page asks: a read, beside any writer
            found = conn.execute(query).scalar_one_or_none()
        return None if found is None else _principal(found)

    def close(self, sid: str) -> str | None:
        """Signs out: the sign-in is gone; its ID token, for the issuer's sign-out."""
        with self.store.connection() as conn:
            id_token = conn.execute(
                select(web_sessions.c.id_token).where(web_sessions.c.id == _key(sid))
            ).scalar_one_or_none()
            conn.execute(delete(web_sessions).where(web_sessions.c.id == _key(sid)))
        return id_token
