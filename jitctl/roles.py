"""Least-privilege custom roles for JIT (Microsoft docs "just-in-time-access-usage"), plus the
reads jitctl itself needs to verify access."""

from __future__ import annotations

from typing import Any

READ = [
    "Microsoft.Security/locations/jitNetworkAccessPolicies/read",
    "Microsoft.Security/locations/jitNetworkAccessPolicies/*/read",
    "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Network/networkInterfaces/*/read",
    "Microsoft.Network/networkInterfaces/read",
    "Microsoft.Network/publicIPAddresses/read",
    "Microsoft.Network/networkSecurityGroups/read",
    "Microsoft.Network/virtualNetworks/read",
    "Microsoft.Network/virtualNetworks/subnets/read",
]

ROLES: dict[str, dict[str, Any]] = {
    "requester": {
        "Name": "JIT Access Requester (jitctl)",
        "Description": "Request Just-In-Time VM access and verify it: initiate on JIT policies, "
        "read VMs, NICs, NSGs, subnets and public IPs.",
        "Actions": ["Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action", *READ],
    },
    "admin": {
        "Name": "JIT Policy Administrator (jitctl)",
        "Description": "Configure Just-In-Time VM access policies (enable, disable, policies as "
        "code) and read what they protect.",
        "Actions": [
            "Microsoft.Security/locations/jitNetworkAccessPolicies/write",
            "Microsoft.Security/locations/jitNetworkAccessPolicies/delete",
            "Microsoft.Compute/virtualMachines/write",
            "Microsoft.Security/policies/read",
            "Microsoft.Security/pricings/read",
            *READ,
        ],
    },
}


def role_definition(kind: str, scope: str) -> dict[str, Any]:
    """A definition ready for `az role definition create --role-definition @file.json`."""
    role = ROLES[kind]
    return {
        "Name": role["Name"],
        "IsCustom": True,
        "Description": role["Description"],
        "Actions": list(role["Actions"]),
        "NotActions": [],
        "DataActions": [],
        "NotDataActions": [],
        "AssignableScopes": [scope],
    }
