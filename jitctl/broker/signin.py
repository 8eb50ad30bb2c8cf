"""Sign-in for the broker's pages: OpenID Connect authorization code with PKCE (S256) against
the broker's issuer (Entra ID in production, the emulator offline).

The issuer's discovery document names the endpoints (its `issuer` must be the configured one);
the browser goes to the authorization endpoint, comes back to the broker's `/auth/callback`
with a code, and the broker trades the code (and the PKCE verifier, which never left it) for
tokens. The access token is then checked by the API's TokenVerifier: one check of who
someone is, for the pages and the API alike. No cryptography here beyond the SHA-256 that
RFC 7636 defines the S256 challenge with.

A random `nonce` goes with each authorize request and must come back in the ID token (OIDC
Core 3.1.2.1, 3.1.3.7): PKCE binds the code to this broker, the nonce binds the ID token to
this browser's sign-in, so a token from another sign-in cannot be slipped in.

Sign-out ends the session at the issuer too when its discovery document names an
`end_session_endpoint` (RP-Initiated Logout 1.0; Entra ID has one), else only the broker's.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from jitctl.broker.client_auth import scope_for
from jitctl.broker.errors import IdentityUnavailable, Unauthenticated
from jitctl.textsafe import printable

TIMEOUT = 10.0  # seconds for the issuer's discovery and token answers


@dataclass(frozen=True)
class Started:
    """A sign-in under way: where to send the browser, and what the session keeps for the
    callback (the state, the PKCE verifier that only the broker holds, and the nonce the ID
    token must carry)."""

    url: str
    state: str
    verifier: str
    nonce: str


@dataclass(frozen=True)
class Tokens:
    """What the token endpoint gave for a code: the access token (for the API's verifier) and
    the ID token (its nonce checked against the sign-in's; kept as the sign-out's hint)."""

    access_token: str
    id_token: str


def challenge_of(verifier: str) -> str:
    """RFC 7636's S256: BASE64URL(SHA256(verifier)), unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def scopes_for(audience: str) -> str:
    """The ID token's scopes and the API's: the access token is for the broker's audience."""
    return f"openid profile email {scope_for(audience)}"


class OidcClient:
    """The broker as an OIDC client of its issuer. `http` is an httpx.Client (a test or the
    in-process emulator gives one with its own transport); `authorize_url` replaces the
    discovery document's authorization endpoint when browsers reach the issuer elsewhere than
    the broker does."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        audience: str,
        *,
        http: Any = None,
        client_secret: str | None = None,
        authorize_url: str | None = None,
        end_session_url: str | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.audience = audience
        self.client_secret = client_secret
        self.authorize_url = authorize_url
        self.end_session_url = end_session_url
        self._http = http
        self._lock = threading.Lock()
        self._endpoints: dict[str, str] | None = None

    def _client(self) -> Any:
        if self._http is None:
            import httpx

            from jitctl.cabundle import httpx_verify

            self._http = httpx.Client(timeout=TIMEOUT, verify=httpx_verify())
        return self._http

    def _json(self, method: str, url: str, **kw: Any) -> tuple[int, Any]:
        import httpx

        try:
            answer = self._client().request(method, url, **kw)
        except httpx.HTTPError as err:
            raise IdentityUnavailable(
                f"The identity provider did not answer at {printable(url)}: {type(err).__name__}.",
                "Check --issuer (JITCTL_BROKER_ISSUER) and the broker's network.",
            ) from None
        try:
            return answer.status_code, answer.json()
        except ValueError:
            raise IdentityUnavailable(
                f"The identity provider's answer at {printable(url)} is not JSON "
                f"(HTTP {answer.status_code}).",
                "Check --issuer (JITCTL_BROKER_ISSUER).",
            ) from None

    def endpoints(self) -> dict[str, str]:
        """The authorization and token endpoints, from discovery (read once)."""
        with self._lock:
            if self._endpoints is None:
                url = f"{self.issuer}/.well-known/openid-configuration"
                status, doc = self._json("GET", url)
                ok = status == 200 and isinstance(doc, dict)
                if not ok or str(doc.get("issuer", "")).rstrip("/") != self.issuer:
                    raise IdentityUnavailable(
                        f"The discovery document at {printable(url)} is not this issuer's.",
                        "Give --issuer (JITCTL_BROKER_ISSUER) exactly as the tokens' `iss`.",
                    )
                found = {k: doc.get(k) for k in ("authorization_endpoint", "token_endpoint")}
                if not all(isinstance(v, str) and v for v in found.values()):
                    raise IdentityUnavailable(
                        f"The discovery document at {printable(url)} names no authorization "
                        "or token endpoint.",
                        "Check --issuer (JITCTL_BROKER_ISSUER).",
                    )
                self._endpoints = {k: str(v) for k, v in found.items()}
                logout = doc.get("end_session_endpoint")  # optional: not every issuer has one
                if isinstance(logout, str) and logout.startswith(("https://", "http://")):
                    self._endpoints["end_session_endpoint"] = logout
            return self._endpoints

    def start(self, redirect_uri: str) -> Started:
        """Where the browser signs in: a fresh state, PKCE verifier and nonce each time."""
        state = secrets.token_urlsafe(24)
        nonce = secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)  # 64 characters: RFC 7636 asks 43 to 128
        target = self.authorize_url or self.endpoints()["authorization_endpoint"]
        query = urlencode(
            {
                "client_id": self.client_id,
                "response_type": "code",
                "redirect_uri": redirect_uri,
                "response_mode": "query",
                "scope": scopes_for(self.audience),
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge_of(verifier),
                "code_challenge_method": "S256",
            }
        )
        joiner = "&" if urlsplit(target).query else "?"
        return Started(f"{target}{joiner}{query}", state, verifier, nonce)

    def logout_url(self, post_logout_redirect_uri: str, id_token: str | None) -> str | None:
        """Where the browser ends its session at the issuer (RP-Initiated Logout 1.0), coming
        back to `post_logout_redirect_uri`; None when the issuer names no end_session_endpoint
        (then only the broker's session ends)."""
        target = self.end_session_url
        if target is None:
            target = self.endpoints().get("end_session_endpoint")
            if target is None:
                return None
        params = {"post_logout_redirect_uri": post_logout_redirect_uri, "client_id": self.client_id}
        if id_token:
            params["id_token_hint"] = id_token
        joiner = "&" if urlsplit(target).query else "?"
        return f"{target}{joiner}{urlencode(params)}"

    def exchange(self, code: str, verifier: str, redirect_uri: str) -> Tokens:
        """The tokens for a code (one use); the caller verifies them."""
        form = {
            "grant_type": "authorization_code",
            "client_id": self.client_id,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "scope": scopes_for(self.audience),
        }
        if self.client_secret:
            form["client_secret"] = self.client_secret
        status, body = self._json(
            "POST",
            self.endpoints()["token_endpoint"],
            data=form,
            headers={"Accept": "application/json"},
        )
        token = body.get("access_token") if isinstance(body, dict) else None
        id_token = body.get("id_token") if isinstance(body, dict) else None
        if status == 200 and isinstance(token, str) and not isinstance(id_token, str):
            # the scope asks `openid`: an answer without an ID token is no OIDC sign-in
            raise Unauthenticated(
                "The identity provider gave no ID token for the sign-in.",
                "Check that the broker's --issuer is an OpenID Connect provider.",
            )
        if status != 200 or not isinstance(token, str) or not isinstance(id_token, str):
            error = (
                body.get("error_description") or body.get("error")
                if isinstance(body, dict)
                else None
            )
            raise Unauthenticated(
                f"The identity provider refused the sign-in: {printable(str(error or status))}.",
                "Sign in again; if it keeps failing, check the broker's --client-id and its "
                "redirect URI (<broker>/auth/callback) in the app registration.",
            )
        return Tokens(token, id_token)
