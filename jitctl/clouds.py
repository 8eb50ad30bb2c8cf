"""Azure clouds: ARM endpoint, token scope, sign-in authority; and the default subscription."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from jitctl.errors import BadInput
from jitctl.textsafe import printable


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


def _config_dir() -> Path:
    return Path(os.environ.get("AZURE_CONFIG_DIR") or Path.home() / ".azure")


def _profile_subscriptions() -> list[dict]:
    """The subscriptions in the Azure CLI's profile file (no az process started)."""
    try:
        data = json.loads((_config_dir() / "azureProfile.json").read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return []
    subs = data.get("subscriptions", []) if isinstance(data, dict) else []
    return [s for s in subs if isinstance(s, dict)]


# What DefaultAzureCredential would sign in with, besides az's profile: a service principal or
# workload identity (AZURE_*), an App Service / Azure Arc managed identity (IDENTITY_*, MSI_*).
SIGN_IN_VARIABLES = (
    "AZURE_CLIENT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_USERNAME",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
)


def azure_sign_in_found() -> bool:
    """Whether this machine shows a way to sign in to Azure (az's profile lists a subscription,
    or the environment names a credential). A VM's own managed identity is not seen offline."""
    return bool(_profile_subscriptions()) or any(os.environ.get(v) for v in SIGN_IN_VARIABLES)


def cli_default_subscription() -> str | None:
    """The Azure CLI's default subscription, from its profile file."""
    for sub in _profile_subscriptions():
        if sub.get("isDefault"):
            return str(sub.get("id"))
    return None


_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_ID_LIKE = re.compile(r"[A-Za-z0-9-]{1,64}")  # what check_subscription lets through


def subscription_by_name(
    name: str, known: Iterable[tuple[str, str]] | None = None, complete: bool = False
) -> str:
    """A subscription named as in az (`-s "Contoso Prod"`, case-insensitive): its id, from
    `known` (id, name) pairs, by default the az profile file's.

    `complete`: `known` is every subscription the credential sees (listed through ARM), so a
    value that is neither one's name nor one's id is refused instead of being taken as an id.
    """
    value = name.strip()
    if _GUID.match(value):
        return value
    if known is None:
        known = ((str(s.get("id")), str(s.get("name", ""))) for s in _profile_subscriptions())
    pairs = list(known)
    wanted = value.lower()
    matches = sorted(
        {
            sid
            for sid, sname in pairs
            if sname.lower() == wanted or (complete and sid.lower() == wanted)
        }
    )
    if len(matches) > 1:
        raise BadInput(
            f"Several subscriptions are named '{printable(name)}': {', '.join(matches)}.",
            "Pass one of these ids instead.",
        )
    if matches:
        return matches[0]
    if complete or not _ID_LIKE.fullmatch(value):
        where = (
            f"the name of one of the {len(pairs)} enabled subscription(s) the credential sees"
            if complete
            else "a name that 'az account list -o table' shows (after 'az login')"
        )
        raise BadInput(
            f"No subscription is named '{printable(name)}'.", f"Pass its id, or {where}."
        )
    # Not a name we know: taken as an id (Azure answers SubscriptionNotFound if it is neither).
    return value


def in_profile(name: str) -> bool:
    """Whether az's profile file knows this subscription by name or id (case-insensitive)."""
    wanted = name.strip().lower()
    return any(
        wanted in (str(s.get("id", "")).lower(), str(s.get("name", "")).lower())
        for s in _profile_subscriptions()
    )


def resolve_subscription(
    explicit: str | None, seen: Callable[[], Iterable[tuple[str, str]]] | None = None
) -> str | None:
    """The subscription given (a name or id), else AZURE_SUBSCRIPTION_ID, else az's default.

    A name az's profile does not know (no `az login`, as in a runbook with a managed identity)
    is looked up among `seen()`: the (id, name) of every subscription the credential sees."""
    if explicit:
        if seen is not None and not _GUID.match(explicit.strip()) and not in_profile(explicit):
            return subscription_by_name(explicit, seen(), complete=True)
        return subscription_by_name(explicit)
    return os.environ.get("AZURE_SUBSCRIPTION_ID") or cli_default_subscription()


def default_resource_group() -> str | None:
    """az's configured default group: AZURE_DEFAULTS_GROUP, else `group` in the [defaults]
    section of the az config file (`az config set defaults.group=RG`)."""
    group = os.environ.get("AZURE_DEFAULTS_GROUP")
    if group:
        return group
    import configparser

    parser = configparser.ConfigParser()
    try:
        parser.read(_config_dir() / "config", encoding="utf-8")
    except (OSError, configparser.Error):
        return None
    return parser.get("defaults", "group", fallback=None) or None
