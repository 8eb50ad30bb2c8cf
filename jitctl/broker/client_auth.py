"""The bearer token the CLI's `broker` commands send: one place decides where it comes from.

1. `JITCTL_BROKER_TOKEN`, when set (a pipeline that already holds a token);
2. with `--emulator`, a token the emulator's identity provider signs for the test user named
   by `--as UPN` (default alice@contoso.com; EMULATOR.md lists the users);
3. else the App's Azure credential (az login, a managed identity, environment credentials)
   for `api://<audience>/.default`: the audience (`--broker-audience`) is then required, since
   Entra ID issues no token for `api:///.default`.
"""

from __future__ import annotations

import os
from typing import Protocol

from jitctl.errors import BadInput, NotSignedIn

TOKEN_ENV = "JITCTL_BROKER_TOKEN"


class TokenApp(Protocol):
    """What broker_token needs of the App (jitctl.app.App)."""

    emulator: bool
    as_user: str | None

    def emulator_token(self, upn: str | None, audience: str) -> str: ...

    def access_token(self, scope: str) -> str: ...


def scope_for(audience: str) -> str:
    """The scope that asks Entra ID for a token to the broker's API: its App ID URI (by default
    `api://<client id>`) followed by /.default (one definition: the CLI's token and the pages'
    sign-in)."""
    audience = audience.strip().rstrip("/")
    return f"{audience}/.default" if "://" in audience else f"api://{audience}/.default"


def broker_token(app: TokenApp, audience: str) -> str:
    """The bearer token for the broker whose audience (application id) is `audience`."""
    given = os.environ.get(TOKEN_ENV, "").strip()
    if given and app.as_user:
        raise BadInput(
            f"Both --as and {TOKEN_ENV} are given: the token already says who you are.",
            f"Drop --as, or unset {TOKEN_ENV} to act as an emulator test user.",
        )
    if given:
        return given.removeprefix("Bearer ").strip()
    if app.emulator:
        return app.emulator_token(app.as_user, audience)
    if app.as_user:
        raise BadInput(
            "--as picks a test user of the emulator; against Entra ID your sign-in says who you are.",
            "Add --emulator, or drop --as (sign in as the other user with az login instead).",
        )
    if not audience.strip():
        raise BadInput(
            "No broker audience: jitctl cannot ask Entra ID for a token to the broker.",
            "Pass --broker-audience (or JITCTL_BROKER_AUDIENCE, or broker-audience in the config "
            "file): the broker's application (client) id, as `broker serve --audience`; or set "
            f"{TOKEN_ENV} to a token for the broker.",
        )
    try:
        return app.access_token(scope_for(audience))
    except NotSignedIn as err:
        raise NotSignedIn(
            f"No token for the broker: {err.message[:1].lower()}{err.message[1:]}",
            f"Sign in to Entra ID ({err.hint.rstrip('.')}), set {TOKEN_ENV} to a bearer token "
            "for the broker, or use the emulator (--emulator --as UPN).",
        ) from err
