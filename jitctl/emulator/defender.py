"""What JIT depends on outside its policies: the Defender for Servers plan, resource locks, and
the caller's permissions (`Microsoft.Authorization/permissions`), each a setting of the emulator.
"""

from __future__ import annotations

import copy
from typing import Any

from jitctl.emulator.answers import Reply
from jitctl.emulator.backend import ArmError, Backend

PLAN = "VirtualMachines"  # Defender for Servers' pricing name


def pricing(b: Backend, sub: str, name: str) -> dict[str, Any]:
    """A subscription's pricing; VirtualMachines follows `Settings.defender_plan` until a PUT."""
    b.subscription(sub)
    stored = b.state.setdefault("pricings", {}).get(f"{sub}/{name}".lower())
    if stored is not None:
        return copy.deepcopy(stored)
    plan = b.settings.defender_plan if name.lower() == PLAN.lower() else "off"
    props: dict[str, Any] = {"pricingTier": "Free" if plan == "off" else "Standard"}
    if plan != "off":
        props["subPlan"] = plan
    return _pricing_body(sub, name, props)


def _pricing_body(sub: str, name: str, props: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{sub}/providers/Microsoft.Security/pricings/{name}",
        "name": name,
        "type": "Microsoft.Security/pricings",
        "properties": {"freeTrialRemainingTime": "PT0S", "deprecated": False, **props},
    }


def put_pricing(b: Backend, sub: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """`az security pricing create -n VirtualMachines --tier standard --subplan P2` lands here."""
    b.subscription(sub)
    props = (body or {}).get("properties") or {}
    tier = str(props.get("pricingTier", ""))
    if tier.lower() not in ("free", "standard"):
        raise ArmError(400, "InvalidInputJson", "pricingTier must be 'Free' or 'Standard'.")
    out: dict[str, Any] = {"pricingTier": tier.capitalize()}
    if tier.lower() == "standard":
        out["subPlan"] = props.get("subPlan") or "P2"
    stored = _pricing_body(sub, name, out)
    b.state.setdefault("pricings", {})[f"{sub}/{name}".lower()] = stored
    return copy.deepcopy(stored)


def require_plan(b: Backend, sub: str, policy_name: str) -> None:
    """JIT needs Defender for Servers Plan 2. Azure's words when it is off (seen in public
    Terraform samples: "'LinuxJITPolicy' is not onboarded to Defender For Servers offering.");
    the status and code of that answer are unconfirmed: 400 BadRequest here."""
    props = pricing(b, sub, PLAN)["properties"]
    if props.get("pricingTier") != "Standard" or props.get("subPlan", "P2") != "P2":
        raise ArmError(
            400,
            "BadRequest",
            f"'{policy_name}' is not onboarded to Defender For Servers offering.",
        )


def lock_on(b: Backend, resource_id: str) -> str | None:
    """The locked scope (`Settings.locked_scopes`: ReadOnly locks) that covers a resource."""
    rid = resource_id.lower().rstrip("/")
    for scope in b.settings.locked_scopes:
        s = scope.lower().rstrip("/")
        if rid == s or rid.startswith(s + "/"):
            return scope
    return None


def require_unlocked(b: Backend, resource_id: str) -> None:
    """ARM's answer to a write under a ReadOnly or Delete lock."""
    scope = lock_on(b, resource_id)
    if scope is not None:
        raise ArmError(
            409,
            "ScopeLocked",
            f"The scope '{resource_id}' cannot perform write operation because following "
            f"scope(s) are locked: '{scope}'. Please remove the lock and try again.",
        )


def permissions(b: Backend, sub: str) -> list[dict[str, Any]]:
    """The caller's effective permissions at a scope (`Settings.permissions`, `not_permissions`):
    the same for every scope of the subscription."""
    b.subscription(sub)
    return [
        {
            "actions": list(b.settings.permissions),
            "notActions": list(b.settings.not_permissions),
            "dataActions": [],
            "notDataActions": [],
        }
    ]


def add_routes(router: Any, sub: str, rg: str) -> None:
    """Pricings (subscription scope) and permissions (resource group and resource scopes)."""
    b = router.backend
    item = sub + r"/providers/microsoft\.security/pricings/(?P<name>[^/]+)"
    router.route("GET", item, lambda q: Reply(200, pricing(b, q.params["sub"], q.params["name"])))
    router.route(
        "PUT",
        item,
        lambda q: Reply(200, put_pricing(b, q.params["sub"], q.params["name"], q.body or {})),
    )
    perms = r"(?:/providers/[^/]+(?:/[^/]+/[^/]+)+)?/providers/microsoft\.authorization/permissions"
    router.route(
        "GET", rg + perms, lambda q: Reply(200, {"value": permissions(b, q.params["sub"])})
    )
