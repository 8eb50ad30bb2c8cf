"""Azure SDK exceptions -> jitctl errors, in one place."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from jitctl.errors import (
    ENABLE_DEFENDER,
    AzureError,
    BadInput,
    Forbidden,
    GroupNotFound,
    JitctlError,
    NotFound,
    NotSignedIn,
    PolicyNamesDeletedVms,
    Refused,
    Unavailable,
)

SIGN_IN_HINT = (
    "Sign in with 'az login', or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, "
    "or run where a managed identity is available."
)

DEFENDER_HINT = f"Enable it on the subscription, then retry: {ENABLE_DEFENDER}"
LOCK_HINT = (
    "List the locks with 'az lock list -g RG'; remove the lock (or ask its owner), then retry."
)


def _azure_message(exc: BaseException) -> tuple[str, str]:
    err = getattr(exc, "error", None)
    code = getattr(err, "code", None) or ""
    message = getattr(err, "message", None) or getattr(exc, "message", None) or str(exc)
    return str(code), " ".join(str(message).split())


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        return float(headers.get("Retry-After") or "")
    except (TypeError, ValueError):
        return None


def _sign_in_reason(message: str) -> str:
    """azure-identity's message in a few words; its whole text goes to --debug only."""
    logging.getLogger("jitctl").debug("azure-identity: %s", message)
    if not message or "failed to retrieve a token from the included credentials" in message:
        return "no credential was found"  # DefaultAzureCredential tried each, none is set up
    first = message.splitlines()[0].split(". ")[0].rstrip(".")
    return first if len(first) <= 160 else first[:159] + "…"


def translate(exc: BaseException) -> JitctlError:
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(exc, JitctlError):
        return exc
    code, message = _azure_message(exc)
    status = getattr(getattr(exc, "response", None), "status_code", None) or getattr(
        exc, "status_code", None
    )
    if isinstance(exc, ClientAuthenticationError) and status != 403:
        return NotSignedIn(f"Not signed in to Azure: {_sign_in_reason(message)}.", SIGN_IN_HINT)
    if "not onboarded to defender for servers" in message.lower():
        # JIT needs Defender for Servers Plan 2; Azure's answer when it is off (public Terraform
        # samples show the words; its status and code are unconfirmed, so the words decide).
        return Refused(f"Defender for Servers Plan 2 is off: {message}", DEFENDER_HINT)
    if code == "ScopeLocked":
        return Refused(f"A resource lock blocks this write: {message}", LOCK_HINT)
    if status == 403:
        return Forbidden(
            f"Azure refused access ({code or 'Forbidden'}): {message}",
            "Ask for the JIT role this needs (see 'Permissions' in the README).",
        )
    if code == "ResourceGroupNotFound":
        return GroupNotFound(
            message or "The resource group was not found.",
            "Check -g: 'az group list -o table' lists the groups of the subscription.",
        )
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        return NotFound(
            f"Not found ({code or 'NotFound'}): {message}",
            "Check the name, group and subscription.",
        )
    if status == 400 and "non-existent virtual machine" in message.lower():
        # A deleted VM stays in its JIT policy and blocks every write (azure-docs#11987)
        return PolicyNamesDeletedVms(f"Azure refused the policy write ({code}): {message}")
    if status == 400:
        return Refused(f"Azure refused the request ({code or 'BadRequest'}): {message}")
    if status == 409:
        return Refused(
            f"Azure reports a conflict ({code or 'Conflict'}): {message}", "Try again shortly."
        )
    if status == 429 or (status and status >= 500):
        return Unavailable(
            f"Azure is unavailable ({status} {code}): {message}",
            "Try again later.",
            status,
            _retry_after(exc),
        )
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return Unavailable(
            f"Cannot reach Azure: {message}", "Check the network and --cloud/--arm-endpoint."
        )
    if isinstance(exc, HttpResponseError):
        return AzureError(f"Azure error ({status} {code}): {message}")
    if isinstance(exc, ValueError):
        return BadInput(str(exc))
    return AzureError(f"{type(exc).__name__}: {exc}")


@contextmanager
def azure_errors() -> Iterator[None]:
    """Translate SDK exceptions raised inside the block."""
    try:
        yield
    except JitctlError:
        raise
    except Exception as exc:
        from azure.core.exceptions import AzureError as SdkError
        from azure.identity import CredentialUnavailableError

        if isinstance(exc, CredentialUnavailableError):
            raise NotSignedIn("No Azure credential is available.", SIGN_IN_HINT) from exc
        if isinstance(exc, SdkError):
            raise translate(exc) from exc
        raise
