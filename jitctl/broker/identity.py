"""Who calls the broker: a bearer JWT checked against the issuer's keys, turned into a Principal.

Any OpenID Connect issuer works (Entra ID in production, the emulator in tests and demos) and
each is checked by this one code path: the signing keys come from the issuer's discovery
document (`<issuer>/.well-known/openid-configuration` -> `jwks_uri`), cached; the signature is
PyJWT's, with an allowlist of algorithms (RS256, ES256: never `none`, never HS*, which would let
a public key serve as an HMAC secret); `iss` and `aud` must be this broker's; `exp`, `nbf` and
`iat` are read on the broker's clock with a small leeway for clock skew.

The user is named by the token's `upn`, else `preferred_username`, else `email` (Entra v1
tokens carry `upn`, v2 tokens `preferred_username`); an app-only token (a pipeline's service
principal) by its application id. Names are for display and `user:` rules: who is who goes by
the immutable object id (`oid`, kept with the tenant's `tid`), as Microsoft advises. Groups
are the `groups` claim and the app `roles` together.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from jitctl.broker.errors import IdentityUnavailable, Unauthenticated
from jitctl.broker.rules import Principal
from jitctl.cabundle import ca_bundle
from jitctl.clock import Clock, SystemClock
from jitctl.errors import BadInput
from jitctl.loopback import is_loopback
from jitctl.textsafe import printable

ALGORITHMS = ("RS256", "ES256")
KEY_TYPES = {"RS256": ("RSA", None), "ES256": ("EC", "P-256")}
LEEWAY = 120  # seconds of clock skew forgiven on exp, nbf and iat
KEYS_TTL = 3600.0  # seconds a JWKS is trusted before it is read again
REFRESH_GAP = 60.0  # an unknown key id reads the JWKS again at most this often
MAX_TOKEN = 16_384  # bytes; Entra's tokens are a few KB
HTTP_TIMEOUT = (5.0, 10.0)  # connect, read (seconds)
WHERE_TOKENS_COME_FROM = (
    "Sign in again (az login), or set JITCTL_BROKER_TOKEN to a token for this broker."
)


class JwksSource(Protocol):
    """Where the verifier reads the issuer's JSON documents (discovery, JWKS) from: HTTPS in
    production; a test or the in-process emulator passes a session with its own transport."""

    def fetch(self, url: str) -> Any: ...


class HttpsJson:
    """A JwksSource over requests: short timeouts, the CA bundle from the environment (passed
    with each call: requests would otherwise let REQUESTS_CA_BUNDLE override a session's)."""

    def __init__(self, session: Any = None) -> None:
        self.verify: str | bool = True
        if session is None:
            import requests

            session = requests.Session()
            self.verify = ca_bundle() or True
        self.session = session

    def fetch(self, url: str) -> Any:
        import requests

        try:
            response = self.session.get(
                url, timeout=HTTP_TIMEOUT, allow_redirects=False, verify=self.verify
            )
        except requests.RequestException as err:
            raise IdentityUnavailable(
                f"The identity provider did not answer at {printable(url)}: {_reason(err)}.",
                "Check --issuer (JITCTL_BROKER_ISSUER), the network, and for a private CA "
                "REQUESTS_CA_BUNDLE or SSL_CERT_FILE.",
            ) from None
        if response.status_code != 200:
            raise IdentityUnavailable(
                f"The identity provider answered {response.status_code} for {printable(url)}.",
                "Check --issuer (JITCTL_BROKER_ISSUER): it is the token's `iss`, without "
                "/.well-known/openid-configuration.",
            )
        try:
            return response.json()
        except ValueError:
            raise IdentityUnavailable(
                f"The identity provider's answer at {printable(url)} is not JSON.",
                "Check --issuer (JITCTL_BROKER_ISSUER).",
            ) from None


def _reason(err: Exception) -> str:
    text = str(err)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "its TLS certificate is not trusted"
    return type(err).__name__


def check_issuer_url(issuer: str) -> str:
    """An issuer is an https URL (plain http only on a loopback address, for tests)."""
    parts = urlsplit(issuer.strip())
    loopback = is_loopback(parts.hostname or "")
    if not parts.netloc or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise BadInput(
            f"The issuer {printable(issuer)!r} is not an https URL.",
            "Give --issuer (or JITCTL_BROKER_ISSUER) as the tokens' `iss`, e.g. "
            "https://login.microsoftonline.com/<tenant id>/v2.0.",
        )
    return issuer.strip().rstrip("/")


class TokenVerifier:
    """Checks bearer tokens for one issuer and audience. Thread-safe: the API's workers share it."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        jwks: JwksSource | None = None,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        leeway: int = LEEWAY,
    ) -> None:
        self.issuer = check_issuer_url(issuer)
        if not audience.strip():
            raise BadInput(
                "No audience given.",
                "Give --audience (or JITCTL_BROKER_AUDIENCE): the broker's application (client) id.",
            )
        self.audience = audience.strip()
        self.source: JwksSource = jwks or HttpsJson()
        self.clock = clock or SystemClock()
        self.leeway = leeway
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._jwks_uri: str | None = None
        self._keys: dict[str, dict[str, Any]] = {}
        self._read_at: float | None = None

    def audiences(self) -> list[str]:
        """Entra names an API by its client id in v2 tokens and by its App ID URI
        (`api://<client id>`) in v1 tokens: both are this broker."""
        if "://" in self.audience:
            return [self.audience]
        return [self.audience, f"api://{self.audience}"]

    # --- keys ---------------------------------------------------------------------------------

    def _discover(self) -> str:
        url = f"{self.issuer}/.well-known/openid-configuration"
        doc = self.source.fetch(url)
        if not isinstance(doc, dict) or not isinstance(doc.get("jwks_uri"), str):
            raise IdentityUnavailable(
                f"The discovery document at {printable(url)} names no jwks_uri.",
                "Check --issuer (JITCTL_BROKER_ISSUER).",
            )
        if str(doc.get("issuer", "")).rstrip("/") != self.issuer:
            raise IdentityUnavailable(
                f"The issuer's discovery document names the issuer {printable(doc.get('issuer'))}"
                f", not {printable(self.issuer)}.",
                "Give --issuer (JITCTL_BROKER_ISSUER) exactly as the discovery document names "
                "it (Entra ID: with the tenant id, not its domain name).",
            )
        return str(doc["jwks_uri"])

    def _read_keys(self) -> None:
        if self._jwks_uri is None:
            self._jwks_uri = self._discover()
        doc = self.source.fetch(self._jwks_uri)
        keys = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(keys, list):
            raise IdentityUnavailable(
                f"The issuer's JWKS at {printable(self._jwks_uri)} holds no keys.",
                "Check --issuer (JITCTL_BROKER_ISSUER).",
            )
        self._keys = {str(k.get("kid", "")): k for k in keys if isinstance(k, dict)}
        self._read_at = self._monotonic()

    def _key(self, kid: str | None) -> dict[str, Any]:
        with self._lock:
            now = self._monotonic()
            if self._read_at is None or now - self._read_at > KEYS_TTL:
                self._read_keys()
            elif kid not in self._keys and now - (self._read_at or 0) > REFRESH_GAP:
                self._read_keys()  # the issuer may have rolled its keys
            if kid is None and len(self._keys) == 1:
                return next(iter(self._keys.values()))
            found = self._keys.get(kid or "")
        if found is None:
            raise Unauthenticated(
                "The token is signed with a key the issuer does not publish.",
                WHERE_TOKENS_COME_FROM,
            )
        return found

    # --- the check ----------------------------------------------------------------------------

    def verify(self, token: str) -> Principal:
        """The Principal a bearer token speaks for, or Unauthenticated (IdentityUnavailable
        when the issuer cannot be read: the token could not be checked at all)."""
        return principal_of(self.claims(token, self.audiences()))

    def check_id_token(self, token: str, client_id: str, nonce: str) -> dict[str, Any]:
        """The claims of a sign-in's ID token (OIDC Core 3.1.3.7): signed by the issuer, for
        this client, in date, and carrying the nonce this sign-in sent. A token issued for
        another sign-in (replayed, or injected with a stolen code) has another nonce."""
        claims = self.claims(token, [client_id])
        got = claims.get("nonce")
        if not isinstance(got, str) or not secrets.compare_digest(
            got.encode("utf-8"), nonce.encode("utf-8")
        ):
            raise Unauthenticated(
                "The sign-in's ID token was not issued for this sign-in (its nonce differs): "
                "it is replayed or was slipped in.",
                "Sign in again from the broker's page.",
            )
        return claims

    def claims(self, token: str, audiences: list[str]) -> dict[str, Any]:
        """The claims of a JWT signed by the issuer's key, for one of `audiences`, in date."""
        import jwt

        token = (token or "").strip()
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        if not token:
            raise Unauthenticated("No bearer token.", WHERE_TOKENS_COME_FROM)
        if len(token) > MAX_TOKEN or token.count(".") != 2:
            raise Unauthenticated("The bearer token is not a signed JWT.", WHERE_TOKENS_COME_FROM)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated(
                "The bearer token is not a JWT.", WHERE_TOKENS_COME_FROM
            ) from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise Unauthenticated(
                f"The token is signed with {printable(str(alg))!r}; the broker accepts "
                f"{' and '.join(ALGORITHMS)} only.",
                WHERE_TOKENS_COME_FROM,
            )
        kid = header.get("kid")
        jwk = self._key(kid if isinstance(kid, str) else None)
        kty, crv = KEY_TYPES[alg]
        if jwk.get("kty") != kty or (crv and jwk.get("crv") != crv) or jwk.get("alg", alg) != alg:
            raise Unauthenticated(
                f"The token's algorithm {alg} does not fit the issuer's key {printable(str(kid))}.",
                WHERE_TOKENS_COME_FROM,
            )
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=audiences,
                issuer=self.issuer,
                options={
                    "require": ["exp", "iat", "iss", "aud"],
                    "verify_exp": False,  # on our clock, below
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise Unauthenticated(
                "The token's signature does not verify.", WHERE_TOKENS_COME_FROM
            ) from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(
                f"The token is not for this broker (audience {self.audience}).",
                "Get a token for api://<the broker's client id>/.default, or set "
                "JITCTL_BROKER_TOKEN to one.",
            ) from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(
                f"The token's issuer is not {self.issuer}.", _issuer_hint(token)
            ) from None
        except jwt.MissingRequiredClaimError as err:
            raise Unauthenticated(
                f"The token has no {err.claim!r} claim.", WHERE_TOKENS_COME_FROM
            ) from None
        except jwt.PyJWTError as err:
            raise Unauthenticated(
                f"The token was refused: {printable(str(err))}.", WHERE_TOKENS_COME_FROM
            ) from None
        self._check_times(claims)
        return dict(claims)

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = self.clock.now().timestamp()
        times = {}
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if value is None and name == "nbf":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise Unauthenticated(
                    f"The token's {name!r} is not a time.", WHERE_TOKENS_COME_FROM
                )
            times[name] = float(value)
        if now >= times["exp"] + self.leeway:
            raise Unauthenticated("The token has expired.", WHERE_TOKENS_COME_FROM)
        if times.get("nbf", 0) > now + self.leeway:
            raise Unauthenticated("The token is not valid yet (nbf).", _CLOCK_HINT)
        if times["iat"] > now + self.leeway:
            raise Unauthenticated("The token was issued in the future (iat).", _CLOCK_HINT)


_CLOCK_HINT = "Check the clocks of this machine and the broker's (NTP)."


def _issuer_hint(token: str) -> str:
    import jwt

    try:
        iss = str(jwt.decode(token, options={"verify_signature": False}).get("iss", ""))
    except jwt.PyJWTError:
        iss = ""
    if iss.startswith("https://sts.windows.net/"):
        return (
            "This is an Entra ID v1 token: set requestedAccessTokenVersion to 2 in the broker "
            "app registration's manifest, or give the v1 issuer as --issuer."
        )
    return WHERE_TOKENS_COME_FROM


def principal_of(claims: dict[str, Any]) -> Principal:
    """The Principal of verified claims."""
    name = next(
        (claims[c] for c in ("upn", "preferred_username", "email") if _text(claims.get(c))),
        None,
    )
    if name is None and (claims.get("idtyp") == "app" or "scp" not in claims):
        name = next((claims[c] for c in ("azp", "appid") if _text(claims.get(c))), None)
    if name is None:
        raise Unauthenticated(
            "The token names no user (upn, preferred_username or email).",
            "Use a token issued to a user, or to an application (with azp or appid).",
        )
    names = claims.get("_claim_names")
    if claims.get("hasgroups") or (isinstance(names, dict) and "groups" in names):
        # Entra leaves groups out past 200 (150 in SAML); deciding without them could miss a
        # deny rule, so the token is refused rather than read as a member of no group.
        raise Unauthenticated(
            "The token's groups were left out (the user is in too many groups).",
            "In the broker's app registration, emit only the groups assigned to the "
            "application, or use app roles, and name those in the rules.",
        )
    groups: set[str] = set()
    for claim in ("groups", "roles"):
        value = claims.get(claim, [])
        if not isinstance(value, list) or not all(_text(v) for v in value):
            raise Unauthenticated(f"The token's {claim!r} claim is not a list of names.", "")
        groups.update(value)
    ids = {c: str(claims[c]).strip() for c in ("oid", "tid") if _text(claims.get(c))}
    return Principal(
        upn=str(name).strip(), groups=frozenset(groups), oid=ids.get("oid"), tid=ids.get("tid")
    )


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())
