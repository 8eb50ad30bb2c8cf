"""Azure Firewall in front of a VM (classic rules): what JIT does there.

A policy VM with `publicIpAddress` is reached through the Azure Firewall that owns that address.
Each port of a request for it gets a `mappedPort` (in the initiate answer and the history), and
when the request is applied JIT writes a DNAT rule into the firewall's `MDC-JIT` NAT rule
collection: from the requested source, to the firewall's address and the mapped port, translated
to the VM's private address and the port (azure.microsoft.com/updates "Just-in-time access now
supports Azure Firewall", 2019: "the port mapping from the DNAT table"). Which port Azure picks,
and the collection's priority, are unpublished: the lowest free one from
`Settings.firewall_ports_from`, and `Settings.firewall_collection_priority`.
"""

from __future__ import annotations

from typing import Any

from jitctl.emulator.backend import Backend
from jitctl.ids import segments

COLLECTION = "MDC-JIT"  # formerly ASC-JIT
FIREWALL_PROTOCOLS = {"TCP": ["TCP"], "UDP": ["UDP"], "*": ["TCP", "UDP"]}


def firewall_of(b: Backend, sub: str, address: str | None) -> dict[str, Any] | None:
    """The Azure Firewall whose public IP has `address`, if any: of subscription `sub` first,
    else of any other (a landing zone keeps the firewall in a hub subscription and the VMs in
    spokes; JIT acts as itself there, whatever the caller may read)."""
    if not address:
        return None
    others = [
        s for s in b.state["subscriptions"].values() if s["subscriptionId"].lower() != sub.lower()
    ]
    for scope in [sub.lower(), *(s["subscriptionId"] for s in others)]:
        for fw in b.list_of(f"/subscriptions/{scope}", "azurefirewalls"):
            if address in public_addresses(b, fw):
                return fw
    return None


def public_addresses(b: Backend, fw: dict[str, Any]) -> list[str]:
    out = []
    for cfg in fw["properties"].get("ipConfigurations", []):
        pip = b.find(((cfg.get("properties") or {}).get("publicIPAddress") or {}).get("id"))
        address = (pip or {}).get("properties", {}).get("ipAddress")
        if address:
            out.append(address)
    return out


def _collection(fw: dict[str, Any], create: bool, priority: int) -> dict[str, Any] | None:
    collections = fw["properties"].setdefault("natRuleCollections", [])
    found = next((c for c in collections if c["name"].lower() == COLLECTION.lower()), None)
    if found is None and create:
        found = {
            "name": COLLECTION,
            "id": f"{fw['id']}/natRuleCollections/{COLLECTION}",
            "properties": {
                "priority": priority,
                "action": {"type": "Dnat"},
                "rules": [],
                "provisioningState": "Succeeded",
            },
        }
        collections.append(found)
    return found


def _used_ports(b: Backend, fw: dict[str, Any]) -> set[int]:
    used: set[int] = set()
    for coll in fw["properties"].get("natRuleCollections", []):
        for rule in coll["properties"].get("rules", []):
            used.update(int(p) for p in rule.get("destinationPorts", []) if str(p).isdigit())
    for grant in b.state["grants"]:  # requested but not applied yet: promised already
        if grant.get("firewall", "").lower() == fw["id"].lower() and grant["state"] != "done":
            used.add(int(grant["mapped"]))
    return used


def pick_mapped_port(b: Backend, fw: dict[str, Any], taken: set[int]) -> int:
    """The lowest port from `firewall_ports_from` that no DNAT rule and no pending grant uses
    (so a renewal, made while the older rule stands, gets another one)."""
    used = _used_ports(b, fw) | taken
    return next(p for p in range(b.settings.firewall_ports_from, 65536) if p not in used)


def add_dnat_rule(b: Backend, grant: dict[str, Any], private_ip: str | None) -> list[str] | None:
    """The DNAT rule of an applied grant; [firewall id, rule name], or None when the firewall
    is gone."""
    fw = b.find(grant.get("firewall"))
    if fw is None:
        return None
    coll = _collection(fw, True, b.settings.firewall_collection_priority)
    assert coll is not None
    name = f"MDC-JIT-{segments(grant['vm']).get('virtualmachines', 'vm')}-{grant['port']}-{grant['seq']}"
    coll["properties"]["rules"].append(
        {
            "name": name,
            "description": f"MDC JIT Network Access rule for policy "
            f"'{grant['policy'].rsplit('/', 1)[-1]}'.",
            "sourceAddresses": list(grant["sources"]),
            "destinationAddresses": [grant["address"]],
            "destinationPorts": [str(grant["mapped"])],
            "protocols": FIREWALL_PROTOCOLS.get(grant["protocol"], ["TCP", "UDP"]),
            "translatedAddress": private_ip or "",
            "translatedPort": str(grant["port"]),
        }
    )
    return [fw["id"], name]


def remove_dnat_rule(b: Backend, fw_id: str, name: str) -> None:
    fw = b.find(fw_id)
    if fw is None:
        return
    coll = _collection(fw, False, 0)
    if coll is None:
        return
    rules = coll["properties"]["rules"]
    coll["properties"]["rules"] = [r for r in rules if r["name"].lower() != name.lower()]
    if not coll["properties"]["rules"]:  # JIT leaves the firewall as it found it
        fw["properties"]["natRuleCollections"].remove(coll)
