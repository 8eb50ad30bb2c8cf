"""The emulator as an OpenID Connect provider, shaped like Entra ID's v2.0 endpoints: discovery,
JWKS, authorize (authorization code + PKCE S256, a plain HTML picker of the test users, or
`login_hint`; the `nonce` echoed into the ID token), token, and logout (RP-Initiated Logout
1.0's end_session_endpoint), signing real RS256 JWTs for named test users and groups.

The signing key lives in the emulator state (`state["identity"]`), so the HTTPS server, the
in-process transport and every `jitctl --emulator` process sign with one key, and `emulator
reset` rotates it. The JWS is assembled here with `cryptography`'s RSA signature and nothing of
the broker's verifier (PyJWT), so that a mistake on one side cannot hide one on the other.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jitctl.clock import Clock
from jitctl.emulator.backend import DEFAULT_TENANT, Backend
from jitctl.emulator.oidcpages import error_page, json_answer, redirect, signed_out, user_picker
from jitctl.emulator.oidcusers import USERS, TestUser

IN_PROCESS_BASE = "https://login.emulator.invalid"  # the issuer's host when there is no socket
BROKER_APP_ID = "6a697463-b0c3-4000-8000-00000000b0c3"  # the emulated broker's app registration
CLI_APP_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"  # az's public client id, as Entra knows it
DEFAULT_USER = "alice@contoso.com"
TOKEN_LIFETIME = timedelta(hours=1)  # Entra's access tokens live 60-90 minutes
CODE_LIFETIME = timedelta(minutes=10)  # Entra: authorization codes last 10 minutes


class OidcError(Exception):
    """An OAuth error answer: `error` and `error_description`, as Entra writes them."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status, self.error, self.description = status, error, description


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _int_b64(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class IdentityProvider:
    """The OIDC provider on one Backend. `transaction` wraps each call (the state file's
    `request()` when there is one; the backend's lock otherwise)."""

    def __init__(
        self,
        backend: Backend,
        base_url: str = IN_PROCESS_BASE,
        transaction: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.backend = backend
        self.base_url = base_url.rstrip("/")
        self._transaction = transaction
        self._keys: dict[str, Any] = {}  # kid -> the loaded private key
        self._lock = threading.Lock()

    @property
    def clock(self) -> Clock:
        clock: Clock = self.backend.clock
        return clock

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/{DEFAULT_TENANT}/v2.0"

    @contextmanager
    def _tx(self) -> Iterator[None]:
        if self._transaction is not None:
            with self._transaction():
                yield
        else:
            with self.backend.lock:
                yield

    # --- keys and tokens ---------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.backend.state.setdefault("identity", {})
        if not state.get("keys"):
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa

            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode("ascii")
            state["keys"] = [{"kid": secrets.token_hex(8), "pem": pem}]
            state.setdefault("codes", {})
        return state

    def _private_key(self, entry: dict[str, str]) -> Any:
        """The RSA key of a state entry (parsing the PEM costs ~1 ms: kept per key id)."""
        with self._lock:
            if entry["kid"] not in self._keys:
                from cryptography.hazmat.primitives import serialization
                from cryptography.hazmat.primitives.asymmetric import rsa

                key = serialization.load_pem_private_key(entry["pem"].encode("ascii"), None)
                assert isinstance(key, rsa.RSAPrivateKey)
                self._keys[entry["kid"]] = key
            return self._keys[entry["kid"]]

    def _sign(self, claims: dict[str, Any]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        entry = self._state()["keys"][0]
        key = self._private_key(entry)
        header = {"typ": "JWT", "alg": "RS256", "kid": entry["kid"]}
        head = b64url(json.dumps(header, separators=(",", ":")).encode())
        body = b64url(json.dumps(claims, separators=(",", ":")).encode())
        signed = f"{head}.{body}".encode("ascii")
        return f"{head}.{body}.{b64url(key.sign(signed, padding.PKCS1v15(), hashes.SHA256()))}"

    def _claims(self, user: TestUser, audience: str, lifetime: timedelta) -> dict[str, Any]:
        now = int(self.clock.now().timestamp())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + int(lifetime.total_seconds()),
            "name": user.name,
            "oid": user.oid,
            "preferred_username": user.upn,
            "sub": b64url(hashlib.sha256(f"{user.oid}:{audience}".encode()).digest()[:24]),
            "tid": DEFAULT_TENANT,
            "ver": "2.0",
            "groups": list(user.groups),
        }
        if user.roles:
            claims["roles"] = list(user.roles)
        return claims

    def mint(
        self,
        upn: str,
        *,
        audience: str = BROKER_APP_ID,
        lifetime: timedelta = TOKEN_LIFETIME,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """An access token for a test user, as the token endpoint would give it (tests, and
        `jitctl --emulator --as UPN`). `extra` adds or replaces claims, or drops those it maps to None (a test's odd token)."""
        user = self.user(upn)
        with self._tx():
            claims = self._claims(user, audience, lifetime)
            claims.update({"scp": "access_as_user", "azp": CLI_APP_ID, **(extra or {})})
            claims = {k: v for k, v in claims.items() if v is not None}
            return self._sign(claims)

    @staticmethod
    def user(upn: str) -> TestUser:
        found = USERS.get(upn.strip().lower())
        if found is None:
            raise KeyError(upn)
        return found

    def jwks(self) -> dict[str, Any]:
        """The public keys, as the JWKS endpoint answers them."""
        with self._tx():
            return self._jwks()

    def _jwks(self) -> dict[str, Any]:
        keys = []
        for entry in self._state()["keys"]:
            numbers = self._private_key(entry).public_key().public_numbers()
            keys.append(
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": entry["kid"],
                    "n": _int_b64(numbers.n),
                    "e": _int_b64(numbers.e),
                }
            )
        return {"keys": keys}

    def discovery(self) -> dict[str, Any]:
        tenant = f"{self.base_url}/{DEFAULT_TENANT}"
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{tenant}/oauth2/v2.0/token",
            "jwks_uri": f"{tenant}/discovery/v2.0/keys",
            "end_session_endpoint": f"{tenant}/oauth2/v2.0/logout",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": [
                *("sub", "iss", "aud", "exp", "iat", "nbf", "name", "preferred_username"),
                *("oid", "tid", "groups", "roles", "nonce"),
            ],
        }

    # --- HTTP ----------------------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        return path.lower().startswith(f"/{DEFAULT_TENANT}/")

    def handle(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        raw: bytes | None,
        peer: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request (the Answers protocol of jitctl.emulator.transport)."""
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        form: dict[str, str] = {}
        ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        if raw and "application/x-www-form-urlencoded" in ctype:
            form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        tail = parts.path[len(DEFAULT_TENANT) + 1 :].lower().rstrip("/")
        method = method.upper()
        with self._tx():
            if method == "GET" and tail in ("/v2.0/.well-known/openid-configuration",):
                return json_answer(200, self.discovery())
            if method == "GET" and tail == "/discovery/v2.0/keys":
                return json_answer(200, self._jwks())
            if tail == "/oauth2/v2.0/logout" and method in ("GET", "POST"):
                return self._logout({**query, **form})
            if tail == "/oauth2/v2.0/authorize" and method in ("GET", "POST"):
                return self._authorize({**query, **form})
            if tail == "/oauth2/v2.0/token" and method == "POST":
                try:
                    return json_answer(200, self._token(form))
                except OidcError as err:
                    return json_answer(
                        err.status, {"error": err.error, "error_description": err.description}
                    )
        return json_answer(
            404, {"error": "not_found", "error_description": f"No such endpoint: {parts.path}"}
        )

    def _authorize(self, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        target_url = params.get("redirect_uri", "")
        if not params.get("client_id"):
            return error_page(400, "The request names no client_id.")
        target = urlsplit(target_url)
        if target.scheme not in ("http", "https") or not target.netloc:
            return error_page(400, "The request's redirect_uri is not an http(s) address.")

        def fail(error: str, description: str) -> tuple[int, dict[str, str], bytes]:
            answer = {"error": error, "error_description": description}
            if "state" in params:
                answer["state"] = params["state"]
            return redirect(target_url, answer)

        if params.get("response_type") != "code":
            return fail("unsupported_response_type", "Only response_type=code is supported.")
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            return fail(
                "invalid_request",
                "PKCE is required: code_challenge with code_challenge_method=S256.",
            )
        hint = params.get("login_hint", "").strip()
        if hint.lower() not in USERS:
            note = f"There is no test user {hint}." if hint else ""
            return user_picker(params, note, USERS.values())
        code = secrets.token_urlsafe(32)
        expires = self.clock.now() + CODE_LIFETIME
        self._state()["codes"][code] = {
            "upn": hint.lower(),
            "client_id": params["client_id"],
            "redirect_uri": target_url,
            "challenge": params["code_challenge"],
            "scope": params.get("scope", ""),
            "nonce": params.get("nonce"),
            "expires": expires.timestamp(),
        }
        answer = {"code": code}
        if "state" in params:
            answer["state"] = params["state"]
        return redirect(target_url, answer)

    def _logout(self, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """RP-Initiated Logout 1.0: the emulator keeps no sign-in session of its own, so this
        checks what a real provider checks (the hint is its own token, for the client named)
        and sends the browser back to `post_logout_redirect_uri`, with `state`."""
        back = params.get("post_logout_redirect_uri", "")
        client = params.get("client_id", "")
        hint = params.get("id_token_hint", "")
        if hint:
            try:
                claims = self._hint_claims(hint)
            except ValueError:
                return error_page(400, "The id_token_hint is not a token this provider issued.")
            if client and claims.get("aud") != client:
                return error_page(400, "The id_token_hint was issued to another client_id.")
            client = client or str(claims.get("aud", ""))
        if not back:
            return signed_out()
        if not client:  # the spec: a redirect needs the client named by client_id or the hint
            return error_page(400, "post_logout_redirect_uri needs client_id or id_token_hint.")
        parts = urlsplit(back)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return error_page(400, "The post_logout_redirect_uri is not an http(s) address.")
        return redirect(back, {"state": params["state"]} if "state" in params else {})

    def _hint_claims(self, token: str) -> dict[str, Any]:
        """The claims of a token signed with one of this provider's keys (expiry not checked:
        a hint may be an expired ID token, as the spec allows). ValueError otherwise."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            head, body, sig = token.split(".")
            header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            entry = next(k for k in self._state()["keys"] if k["kid"] == header.get("kid"))
            signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
            self._private_key(entry).public_key().verify(
                signature, f"{head}.{body}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
            )
        except (ValueError, StopIteration, InvalidSignature, UnicodeError) as err:
            raise ValueError("not this provider's token") from err
        if not isinstance(claims, dict) or claims.get("iss") != self.issuer:
            raise ValueError("not this provider's token")
        return claims

    def _token(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("grant_type") != "authorization_code":
            raise OidcError(400, "unsupported_grant_type", "Only authorization_code is supported.")
        codes = self._state()["codes"]
        now = self.clock.now().timestamp()
        for stale in [c for c, v in codes.items() if v["expires"] <= now]:
            del codes[stale]
        grant = codes.pop(form.get("code", ""), None)  # used once, whatever happens next
        if grant is None:
            raise OidcError(400, "invalid_grant", "The code is unknown, used or expired.")
        if form.get("client_id") != grant["client_id"]:
            raise OidcError(400, "invalid_grant", "The code was issued to another client_id.")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            raise OidcError(
                400, "invalid_grant", "The redirect_uri differs from the authorize one."
            )
        verifier = form.get("code_verifier", "")
        if (
            b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
            != grant["challenge"]
        ):
            raise OidcError(
                400, "invalid_grant", "The code_verifier does not match the code_challenge."
            )
        user = USERS[grant["upn"]]
        audience = grant["client_id"]
        for scope in grant["scope"].split():
            if "://" in scope:  # api://<app>/.default or api://<app>/access_as_user
                audience = scope.split("://", 1)[1].split("/", 1)[0]
        access = self._claims(user, audience, TOKEN_LIFETIME)
        access.update({"scp": "access_as_user", "azp": grant["client_id"]})
        id_claims = self._claims(user, grant["client_id"], TOKEN_LIFETIME)
        if grant.get("nonce"):
            id_claims["nonce"] = grant["nonce"]
        return {
            "token_type": "Bearer",
            "scope": grant["scope"],
            "expires_in": int(TOKEN_LIFETIME.total_seconds()),
            "access_token": self._sign(access),
            "id_token": self._sign(id_claims),
        }
