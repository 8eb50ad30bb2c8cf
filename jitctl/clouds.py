"""Azure clouds: ARM endpoint, token scope, sign-in authority; and the default subscription."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from jitctl.errors import BadInput


@dataclass(frozen=True)
class Cloud:
    name: str
    arm_endpoint: str
    scope: str
    authority: str | None


CLOUDS = {
    "azurecloud": Cloud(
        "AzureCloud",
        "https://management.azure.com",
        "https://management.azure.com/.default",
        "login.microsoftonline.com",
    ),
    "azureusgovernment": Cloud(
        "AzureUSGovernment",
        "https://management.usgovcloudapi.net",
        "https://management.core.usgovcloudapi.net/.default",
        "login.microsoftonline.us",
    ),
    "azurechinacloud": Cloud(
        "AzureChinaCloud",
        "https://management.chinacloudapi.cn",
        "https://management.core.chinacloudapi.cn/.default",
        "login.chinacloudapi.cn",
    ),
}


def resolve_cloud(name: str | None, arm_endpoint: str | None) -> Cloud:
    """A named cloud, or a custom one by its ARM endpoint (as 'az cloud register' does)."""
    if arm_endpoint:
        endpoint = arm_endpoint.rstrip("/")
        if not endpoint.startswith("https://"):
            raise BadInput(
                f"ARM endpoint '{arm_endpoint}' is not an https URL.",
                "Use a form such as https://management.example.local.",
            )
        scope = os.environ.get("JITCTL_ARM_AUDIENCE", endpoint).rstrip("/") + "/.default"
        return Cloud("Custom", endpoint, scope, None)
    key = (name or "AzureCloud").lower()
    if key not in CLOUDS:
        raise BadInput(
            f"Unknown cloud '{name}'.",
            "Use AzureCloud, AzureUSGovernment, AzureChinaCloud, or --arm-endpoint URL.",
        )
    return CLOUDS[key]


def cli_default_subscription() -> str | None:
    """The Azure CLI's default subscription, from its profile file (no az process started)."""
    config_dir = Path(os.environ.get("AZURE_CONFIG_DIR") or Path.home() / ".azure")
    try:
        data = json.loads((config_dir / "azureProfile.json").read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    for sub in data.get("subscriptions", []):
        if sub.get("isDefault"):
            return str(sub.get("id"))
    return None


def resolve_subscription(explicit: str | None) -> str | None:
    return explicit or os.environ.get("AZURE_SUBSCRIPTION_ID") or cli_default_subscription()
