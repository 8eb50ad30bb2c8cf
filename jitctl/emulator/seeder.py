"""The seeding API of the emulator's worlds: resources put through the backend as ARM would
store them (jitctl.emulator.worlds builds the named worlds with it)."""

from __future__ import annotations

import hashlib
from typing import Any

from jitctl.emulator.backend import Backend

DEMO_SUBSCRIPTION = "0e1f5a7c-5e1e-4a1b-9c3d-7e3ab1e5d3e0"
DEMO_GROUP = "rg-jit-demo"
DEMO_LOCATION = "westeurope"


def inbound_allow(
    name: str, priority: int, ports: str | list[str], source: str = "*"
) -> dict[str, Any]:
    """An inbound TCP allow rule to any destination, as `Seeder.nsg` takes it: one port (or
    range) or several."""
    rule: dict[str, Any] = {
        "name": name,
        "priority": priority,
        "direction": "Inbound",
        "access": "Allow",
        "protocol": "Tcp",
        "sourceAddressPrefix": source,
        "sourcePortRange": "*",
        "destinationAddressPrefix": "*",
    }
    if isinstance(ports, str):
        rule["destinationPortRange"] = ports
    else:
        rule["destinationPortRanges"] = list(ports)
    return rule


class Seeder:
    """Builds resources straight into a backend, as Azure would return them."""

    def __init__(
        self,
        backend: Backend,
        subscription: str = DEMO_SUBSCRIPTION,
        group: str = DEMO_GROUP,
        location: str = DEMO_LOCATION,
    ) -> None:
        self.b = backend
        self.sub = subscription
        self.group = group
        self.location = location
        if subscription.lower() not in backend.state["subscriptions"]:
            backend.add_subscription(subscription, "Emulated subscription")
        backend.put_group(subscription, group, location)

    def rid(self, provider_type: str, name: str) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{self.group}/providers/{provider_type}/{name}"

    def nsg(self, name: str, rules: list[dict[str, Any]] | None = None) -> str:
        rid = self.rid("Microsoft.Network/networkSecurityGroups", name)
        self.b.put(
            rid,
            {
                "location": self.location,
                "properties": {
                    "securityRules": [
                        {
                            "name": r["name"],
                            "properties": {k: v for k, v in r.items() if k != "name"},
                        }
                        for r in rules or []
                    ]
                },
            },
        )
        return rid

    def vnet(self, name: str, space: str, subnets: dict[str, tuple[str, str | None]]) -> str:
        """subnets: name -> (prefix, nsg id or None)."""
        rid = self.rid("Microsoft.Network/virtualNetworks", name)
        self.b.put(
            rid,
            {
                "location": self.location,
                "properties": {
                    "addressSpace": {"addressPrefixes": [space]},
                    "subnets": [
                        {
                            "name": sn,
                            "properties": {
                                "addressPrefix": prefix,
                                **({"networkSecurityGroup": {"id": nsg}} if nsg else {}),
                            },
                        }
                        for sn, (prefix, nsg) in subnets.items()
                    ],
                },
            },
        )
        return rid

    def public_ip(self, name: str, address: str, dns: str | None = None) -> str:
        rid = self.rid("Microsoft.Network/publicIPAddresses", name)
        props: dict[str, Any] = {
            "publicIPAddressVersion": "IPv4",
            "publicIPAllocationMethod": "Static",
            "ipAddress": address,
            "idleTimeoutInMinutes": 4,
        }
        if dns:
            props["dnsSettings"] = {
                "domainNameLabel": dns,
                "fqdn": f"{dns}.{self.location}.cloudapp.azure.com",
            }
        self.b.put(
            rid, {"location": self.location, "sku": {"name": "Standard"}, "properties": props}
        )
        return rid

    def nic(
        self,
        name: str,
        subnet_id: str,
        private_ip: str,
        nsg: str | None = None,
        public_ip: str | None = None,
    ) -> str:
        rid = self.rid("Microsoft.Network/networkInterfaces", name)
        cfg: dict[str, Any] = {
            "privateIPAddress": private_ip,
            "privateIPAllocationMethod": "Dynamic",
            "subnet": {"id": subnet_id},
            "primary": True,
            "privateIPAddressVersion": "IPv4",
        }
        if public_ip:
            cfg["publicIPAddress"] = {"id": public_ip}
        props: dict[str, Any] = {"ipConfigurations": [{"name": "ipconfig1", "properties": cfg}]}
        if nsg:
            props["networkSecurityGroup"] = {"id": nsg}
        self.b.put(rid, {"location": self.location, "properties": props})
        return rid

    def vm(
        self,
        name: str,
        nics: list[str],
        os_type: str = "Windows",
        primary: int = 0,
        tags: dict[str, str] | None = None,
    ) -> str:
        rid = self.rid("Microsoft.Compute/virtualMachines", name)
        digest = hashlib.sha256(rid.lower().encode()).hexdigest()
        self.b.put(
            rid,
            {
                "location": self.location,
                "tags": tags if tags is not None else {"os": os_type.lower()},
                "properties": {
                    "vmId": f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-8{digest[17:20]}-{digest[20:32]}",
                    "hardwareProfile": {"vmSize": "Standard_B2s"},
                    "storageProfile": {
                        "osDisk": {
                            "osType": os_type,
                            "name": f"{name}-osdisk",
                            "createOption": "FromImage",
                        }
                    },
                    "osProfile": {"computerName": name, "adminUsername": "azureuser"},
                    "networkProfile": {
                        "networkInterfaces": [
                            {
                                "id": n,
                                **(
                                    {"properties": {"primary": i == primary}}
                                    if len(nics) > 1
                                    else {}
                                ),
                            }
                            for i, n in enumerate(nics)
                        ]
                    },
                },
            },
        )
        return rid

    def firewall(self, name: str, subnet: str, private_ip: str, public_ip: str) -> str:
        """An Azure Firewall (classic rules) with one public IP, in AzureFirewallSubnet."""
        rid = self.rid("Microsoft.Network/azureFirewalls", name)
        cfg = {"subnet": {"id": subnet}, "publicIPAddress": {"id": public_ip}}
        self.b.put(
            rid,
            {
                "location": self.location,
                "properties": {
                    "sku": {"name": "AZFW_VNet", "tier": "Standard"},
                    "threatIntelMode": "Alert",
                    "ipConfigurations": [
                        {"name": "ipconfig1", "properties": {**cfg, "privateIPAddress": private_ip}}
                    ],
                    "natRuleCollections": [],
                    "networkRuleCollections": [],
                    "applicationRuleCollections": [],
                },
            },
        )
        return rid

    def jit_policy(
        self, name: str, vms: dict[str, list[int]], hours: int = 3, firewall_ip: str | None = None
    ) -> None:
        """A JIT policy of this group and region: VM name -> ports (any source, TCP); with
        `firewall_ip`, every VM is reached through the Azure Firewall of that address."""
        from jitctl.emulator.jit import put_policy

        body = {
            "kind": "Basic",
            "properties": {
                "virtualMachines": [
                    {
                        "id": self.rid("Microsoft.Compute/virtualMachines", vm),
                        **({"publicIpAddress": firewall_ip} if firewall_ip else {}),
                        "ports": [
                            {
                                "number": n,
                                "protocol": "TCP",
                                "allowedSourceAddressPrefix": "*",
                                "maxRequestAccessDuration": f"PT{hours}H",
                            }
                            for n in numbers
                        ],
                    }
                    for vm, numbers in vms.items()
                ]
            },
        }
        put_policy(self.b, self.sub, self.group, self.location, name, body)


def subnet_id(vnet_id: str, name: str) -> str:
    return f"{vnet_id}/subnets/{name}"
