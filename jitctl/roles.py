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

# To verify access behind an Azure Firewall: find it by its public address (Resource Graph,
# across subscriptions) and read its DNAT rules. In a landing zone the firewall lives in the hub
# (connectivity) subscription, so the role is assigned there too. Without these reads jitctl
# trusts Azure's grant (status Initiated, with a mapped port) and says it did not verify it.
FIREWALL_READ = [
    "Microsoft.Network/azureFirewalls/read",
    "Microsoft.ResourceGraph/resources/read",
]

ROLES: dict[str, dict[str, Any]] = {
    "requester": {
        "Name": "JIT Access Requester (jitctl)",
        "Description": "Request Just-In-Time VM access and verify it: initiate on JIT policies, "
        "read VMs, NICs, NSGs, subnets and public IPs. Behind Azure Firewall, assign it also on "
        "the firewall's subscription (a landing zone's hub): jitctl reads the firewall and its "
        "public IP there to verify the DNAT rule, else it trusts Azure's grant unverified.",
        "Actions": [
            "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action",
            *READ,
            *FIREWALL_READ,
        ],
    },
    # The approval broker's own identity (a managed identity): it alone holds the initiate
    # right; requesters hold none. Revoking removes the JIT allow rule (Azure has no revoke
    # call), hence the one network write: deleting a security rule, nothing else.
    "broker": {
        "Name": "JIT Approval Broker (jitctl)",
        "Description": "The jitctl approval broker's identity: initiate JIT requests once they "
        "are approved, verify them live (VMs, NICs, NSGs, subnets, public IPs; Azure Firewall "
        "and Resource Graph behind a firewall), and on revoke delete the request's JIT allow "
        "rule from the NSGs. Requesters then need no Azure role at all.",
        "Actions": [
            "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action",
            *READ,
            *FIREWALL_READ,
            "Microsoft.Network/networkSecurityGroups/securityRules/read",
            "Microsoft.Network/networkSecurityGroups/securityRules/delete",
        ],
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


def role_definition(kind: str, scope: str | list[str]) -> dict[str, Any]:
    """A definition ready for `az role definition create --role-definition @file.json`; several
    scopes for a landing zone (the spokes' subscriptions and the hub's)."""
    role = ROLES[kind]
    scopes = [scope] if isinstance(scope, str) else list(scope)
    return {
        "Name": role["Name"],
        "IsCustom": True,
        "Description": role["Description"],
        "Actions": list(role["Actions"]),
        "NotActions": [],
        "DataActions": [],
        "NotDataActions": [],
        "AssignableScopes": scopes,
    }
