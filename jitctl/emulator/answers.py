"""Answers: the Reply a route gives, ARM's error wording for the statuses the emulator injects,
and the cloud metadata document `az cloud register` reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    """What a route answers: status, JSON body, extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] | None = None


# What Azure answers for each injected status (codes and wording as ARM writes them).
FAULT_ANSWERS = {
    401: ("AuthenticationFailed", "Authentication failed. The access token is invalid or expired."),
    403: (
        "AuthorizationFailed",
        "The client 'jitctl-emulator@contoso.com' with object id "
        "'00000000-0000-4000-8000-0000000000e1' does not have authorization to perform action "
        "'{method}' over scope '{path}' or the scope is invalid. If access was recently granted, "
        "please refresh your credentials.",
    ),
    409: ("Conflict", "Another operation on this or a dependent resource is in progress."),
    429: (
        "TooManyRequests",
        "The request is being throttled. Retry after the time in Retry-After.",
    ),
    500: (
        "InternalServerError",
        "The server encountered an internal error. Please retry the request.",
    ),
    503: (
        "ServiceUnavailable",
        "The service is temporarily unavailable. Please retry the request.",
    ),
}


def cloud_metadata(endpoint: str) -> dict[str, Any]:
    """What `az cloud register --endpoint-resource-manager` reads to learn a cloud's endpoints."""
    return {
        "name": "JitctlEmulator",
        "resourceManager": f"{endpoint}/",
        "portal": f"{endpoint}/",
        "gallery": f"{endpoint}/",
        "graph": "https://graph.windows.net/",
        "graphAudience": "https://graph.windows.net/",
        "microsoftGraphResourceId": "https://graph.microsoft.com/",
        "authentication": {
            "loginEndpoint": "https://login.microsoftonline.com",
            "audiences": [f"{endpoint}/"],
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "suffixes": {
            "storage": "core.windows.net",
            "keyVaultDns": "vault.azure.net",
            "sqlServerHostname": "database.windows.net",
            "acrLoginServer": "azurecr.io",
        },
    }
