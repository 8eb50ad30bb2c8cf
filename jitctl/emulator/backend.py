"""The emulator's state and Azure's rules for generic resources, NSG rules and subnets.

State is plain JSON (so it can persist in a file), keyed by lower-cased resource id because
ARM ids are case-insensitive. JIT behaviour lives in jitctl.emulator.jit, on the same state.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jitctl.clock import SystemClock
from jitctl.emulator.defaultrules import DEFAULT_RULES
from jitctl.emulator.rows import Listing, Rows
from jitctl.emulator.settings import Fault, LogEntry, Settings
from jitctl.ids import name_of, segments

DEFAULT_TENANT = "72f988bf-0000-4000-8000-00000000e001"

TYPES = {
    "virtualmachines": "Microsoft.Compute/virtualMachines",
    "networkinterfaces": "Microsoft.Network/networkInterfaces",
    "networksecuritygroups": "Microsoft.Network/networkSecurityGroups",
    "virtualnetworks": "Microsoft.Network/virtualNetworks",
    "publicipaddresses": "Microsoft.Network/publicIPAddresses",
    "azurefirewalls": "Microsoft.Network/azureFirewalls",
}


class ArmError(Exception):
    """An ARM error answer: HTTP status plus the {"error": {"code", "message"}} body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def not_found(resource_id: str) -> ArmError:
    seg = segments(resource_id)
    kind = next((TYPES[k] for k in reversed(list(seg)) if k in TYPES), "resource")
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{kind}/{name_of(resource_id)}' under resource group "
        f"'{seg.get('resourcegroups', '')}' was not found. For more details please go to "
        "https://aka.ms/ARMResourceNotFoundFix",
    )


@dataclass
class Backend:
    settings: Settings = field(default_factory=Settings)
    clock: Any = field(default_factory=SystemClock)
    state: dict[str, Any] = field(default_factory=dict)
    log: list[LogEntry] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        if not self.state:
            self.reset()
        for key in ("resources", "jit"):  # indexed rows, also for a state read from JSON
            if not isinstance(self.state.get(key), Rows):
                self.state[key] = Rows(self.state.get(key, {}))

    def reset(self) -> None:
        self.state = {
            "subscriptions": {},
            "groups": {},
            "resources": Rows(),
            "jit": Rows(),
            "grants": [],
            "operations": {},
            "counter": 0,
        }
        self.log.clear()
        self.faults.clear()

    # --- persistence -----------------------------------------------------------------------

    def dump(self) -> str:
        return json.dumps(
            {"settings": asdict(self.settings), "state": self.state},
            indent=1,
            default=lambda rows: dict(rows.items()),
        )

    def save(self, path: Path) -> None:
        from jitctl.files import write_private

        write_private(path, self.dump().encode("utf-8"))

    @classmethod
    def load(cls, path: Path, clock: Any = None) -> Backend:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            settings=Settings(**data["settings"]), clock=clock or SystemClock(), state=data["state"]
        )

    def next_id(self) -> int:
        self.state["counter"] += 1
        return int(self.state["counter"])

    # --- subscriptions and resource groups ------------------------------------------------

    def add_subscription(self, sub_id: str, name: str = "Emulated subscription") -> dict[str, Any]:
        sub = {
            "id": f"/subscriptions/{sub_id}",
            "subscriptionId": sub_id,
            "tenantId": DEFAULT_TENANT,
            "displayName": name,
            "state": "Enabled",
            "authorizationSource": "RoleBased",
            "subscriptionPolicies": {
                "locationPlacementId": "Public_2014-09-01",
                "quotaId": "PayAsYouGo_2014-09-01",
                "spendingLimit": "Off",
            },
        }
        self.state["subscriptions"][sub_id.lower()] = sub
        return sub

    def readable(self, sub_id: str) -> bool:
        """Whether the caller holds a role in the subscription (`unreadable_subscriptions`)."""
        return sub_id.lower() not in {s.lower() for s in self.settings.unreadable_subscriptions}

    def visible_subscriptions(self) -> list[dict[str, Any]]:
        """The subscriptions GET /subscriptions lists: those where the caller holds a role."""
        subs = self.state["subscriptions"].values()
        return [s for s in subs if self.readable(s["subscriptionId"])]

    def subscription(self, sub_id: str) -> dict[str, Any]:
        sub = self.state["subscriptions"].get(sub_id.lower())
        if sub is None:
            raise ArmError(
                404, "SubscriptionNotFound", f"The subscription '{sub_id}' could not be found."
            )
        return sub

    def put_group(self, sub_id: str, name: str, location: str) -> dict[str, Any]:
        self.subscription(sub_id)
        rid = f"/subscriptions/{sub_id}/resourceGroups/{name}"
        existing = self.state["groups"].get(rid.lower())
        group = existing or {
            "id": rid,
            "name": name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": location,
            "properties": {"provisioningState": "Succeeded"},
        }
        self.state["groups"][rid.lower()] = group
        return group

    def group(self, sub_id: str, name: str) -> dict[str, Any]:
        self.subscription(sub_id)
        group = self.state["groups"].get(f"/subscriptions/{sub_id}/resourcegroups/{name}".lower())
        if group is None:
            raise ArmError(
                404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found."
            )
        return group

    # --- generic resources ---------------------------------------------------------------

    def get(self, resource_id: str) -> dict[str, Any]:
        res = self.state["resources"].get(resource_id.lower().rstrip("/"))
        if res is None:
            seg = segments(resource_id)
            if "subscriptions" in seg and "resourcegroups" in seg:  # as ARM: the group first
                self.group(seg["subscriptions"], seg["resourcegroups"])
            raise not_found(resource_id)
        return res

    def find(self, resource_id: str | None) -> dict[str, Any] | None:
        if not resource_id:
            return None
        return self.state["resources"].get(resource_id.lower().rstrip("/"))

    def put(self, resource_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create or replace a resource; returns (resource, created)."""
        seg = segments(resource_id)
        group = self.group(seg["subscriptions"], seg["resourcegroups"])
        kind = next(k for k in reversed(list(seg)) if k in TYPES)
        res = copy.deepcopy(body)
        res.update(id=resource_id, name=name_of(resource_id), type=TYPES[kind])
        res.setdefault("location", group["location"])
        props = res.setdefault("properties", {})
        props["provisioningState"] = "Succeeded"
        if TYPES[kind].startswith("Microsoft.Network"):
            res["etag"] = f'W/"{self.next_id():08d}-0000-0000-0000-000000000000"'
        if kind == "networksecuritygroups":
            self._normalize_nsg(res)
        if kind == "virtualnetworks":
            for sub in props.get("subnets", []):
                sub["id"] = f"{resource_id}/subnets/{sub['name']}"
                sub.setdefault("properties", {})["provisioningState"] = "Succeeded"
        if kind == "azurefirewalls":
            for cfg in props.get("ipConfigurations", []):
                cfg["id"] = f"{resource_id}/azureFirewallIpConfigurations/{cfg['name']}"
                pip = self.find(
                    ((cfg.get("properties") or {}).get("publicIPAddress") or {}).get("id")
                )
                if pip is not None:  # read-only in Azure: who uses the address
                    pip["properties"]["ipConfiguration"] = {"id": cfg["id"]}
        if kind == "networkinterfaces":
            for cfg in props.get("ipConfigurations", []):
                cfg["id"] = f"{resource_id}/ipConfigurations/{cfg['name']}"
                cfg.setdefault("properties", {})["provisioningState"] = "Succeeded"
        if kind == "virtualmachines":
            self._attach_nics(res, resource_id)
        created = resource_id.lower() not in self.state["resources"]
        self.state["resources"][resource_id.lower()] = res
        return res, created

    def _attach_nics(self, vm: dict[str, Any] | None, vm_id: str | None) -> None:
        """Read-only in Azure, as in NetworkInterfaceGet.json: an attached NIC names its VM
        (`properties.virtualMachine`); a deleted VM's NICs name none."""
        profile = ((vm or {}).get("properties") or {}).get("networkProfile") or {}
        for ref in profile.get("networkInterfaces", []):
            nic = self.find(ref.get("id"))
            if nic is None:
                continue
            if vm_id is None:
                nic["properties"].pop("virtualMachine", None)
            else:
                nic["properties"]["virtualMachine"] = {"id": vm_id}

    def delete(self, resource_id: str) -> bool:
        gone = self.state["resources"].pop(resource_id.lower().rstrip("/"), None)
        if gone is not None and gone.get("type") == TYPES["virtualmachines"]:
            self._attach_nics(gone, None)
        if gone is not None and gone.get("type") == TYPES["azurefirewalls"]:
            for cfg in gone["properties"].get("ipConfigurations", []):  # the addresses are free
                pip = self.find(
                    ((cfg.get("properties") or {}).get("publicIPAddress") or {}).get("id")
                )
                if pip is not None:
                    pip["properties"].pop("ipConfiguration", None)
        return gone is not None

    def list_of(self, scope: str, kind: str) -> Listing:
        """Resources of a type (e.g. 'networksecuritygroups') under a subscription or resource
        group id, in the order they were made; items are read only as far as a page goes."""
        rows: Rows = self.state["resources"]
        return rows.listing(scope, kind)

    def _normalize_nsg(self, nsg: dict[str, Any]) -> None:
        props = nsg["properties"]
        props["securityRules"] = [
            self._normalize_rule(nsg["id"], r) for r in props.get("securityRules", [])
        ]
        props["defaultSecurityRules"] = [
            {
                "name": n,
                "id": f"{nsg['id']}/defaultSecurityRules/{n}",
                "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
                "properties": {
                    "provisioningState": "Succeeded",
                    "description": d,
                    "protocol": "*",
                    "sourcePortRange": "*",
                    "destinationPortRange": "*",
                    "sourceAddressPrefix": s,
                    "destinationAddressPrefix": t,
                    "access": a,
                    "priority": p,
                    "direction": dr,
                    "sourcePortRanges": [],
                    "destinationPortRanges": [],
                    "sourceAddressPrefixes": [],
                    "destinationAddressPrefixes": [],
                },
            }
            for n, d, s, t, a, p, dr in DEFAULT_RULES
        ]

    @staticmethod
    def _normalize_rule(nsg_id: str, rule: dict[str, Any]) -> dict[str, Any]:
        rule = copy.deepcopy(rule)
        props = rule.setdefault("properties", {})
        missing = [k for k in ("protocol", "access", "priority", "direction") if k not in props]
        if missing:
            raise ArmError(
                400,
                "InvalidRequestFormat",
                f"Security rule {rule.get('name')} has no {', '.join(missing)}.",
            )
        if not 100 <= int(props["priority"]) <= 4096:
            raise ArmError(
                400,
                "SecurityRuleInvalidPriority",
                f"Security rule {rule.get('name')} has invalid Priority "
                f"{props['priority']}. Value provided: {props['priority']} Allowed "
                "range 100-4096.",
            )
        rule["id"] = f"{nsg_id}/securityRules/{rule['name']}"
        rule["type"] = "Microsoft.Network/networkSecurityGroups/securityRules"
        props["provisioningState"] = "Succeeded"
        return rule

    # --- NSG child rules and VNet subnets --------------------------------------------------

    def rules(self, nsg_id: str) -> list[dict[str, Any]]:
        return list(self.get(nsg_id)["properties"].get("securityRules", []))

    def put_rule(self, nsg_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        nsg = self.get(nsg_id)
        rules = nsg["properties"].setdefault("securityRules", [])
        rule = self._normalize_rule(nsg["id"], body)
        for other in rules:
            same_slot = (
                other["properties"]["priority"] == rule["properties"]["priority"]
                and other["properties"]["direction"] == rule["properties"]["direction"]
            )
            if same_slot and other["name"].lower() != rule["name"].lower():
                raise ArmError(
                    400,
                    "SecurityRuleConflict",
                    f"Security rule {other['name']} conflicts with rule {rule['name']}. "
                    "Rules cannot have the same Priority and Direction.",
                )
        idx = next(
            (i for i, r in enumerate(rules) if r["name"].lower() == rule["name"].lower()), None
        )
        if idx is None:
            rules.append(rule)
        else:
            rules[idx] = rule
        return rule, idx is None

    def delete_rule(self, nsg_id: str, name: str) -> bool:
        props = self.get(nsg_id)["properties"]
        before = props.get("securityRules", [])
        props["securityRules"] = [r for r in before if r["name"].lower() != name.lower()]
        return len(props["securityRules"]) != len(before)

    def subnet(self, subnet_id: str) -> dict[str, Any]:
        vnet_id = subnet_id.rsplit("/subnets/", 1)[0]
        vnet = self.find(vnet_id)
        for sub in (vnet or {}).get("properties", {}).get("subnets", []):
            if sub["name"].lower() == name_of(subnet_id).lower():
                return sub
        raise not_found(subnet_id)

    def put_subnet(self, subnet_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        vnet = self.get(subnet_id.rsplit("/subnets/", 1)[0])
        subnets = vnet["properties"].setdefault("subnets", [])
        sub = copy.deepcopy(body)
        sub.update(
            id=subnet_id, name=name_of(subnet_id), type="Microsoft.Network/virtualNetworks/subnets"
        )
        sub.setdefault("properties", {})["provisioningState"] = "Succeeded"
        idx = next(
            (i for i, s in enumerate(subnets) if s["name"].lower() == sub["name"].lower()), None
        )
        if idx is None:
            subnets.append(sub)
        else:
            subnets[idx] = sub
        return sub, idx is None

    # --- what guards a VM --------------------------------------------------------------------

    def vm_paths(self, vm_id: str) -> list[tuple[str, str | None, list[str]]]:
        """For each NIC of a VM: (nic id, its primary private IP, the NSG ids that guard it)."""
        vm = self.get(vm_id)
        out = []
        for ref in vm["properties"].get("networkProfile", {}).get("networkInterfaces", []):
            nic = self.find(ref["id"])
            if nic is None:
                continue
            nsgs: list[str] = []
            ip = None
            configs = nic["properties"].get("ipConfigurations", [])
            for cfg in configs:
                cprops = cfg.get("properties", {})
                if ip is None and (cprops.get("primary") or len(configs) == 1):
                    ip = (cprops.get("privateIPAddress") or "").split("/")[0] or None
                subnet_id = (cprops.get("subnet") or {}).get("id")
                if subnet_id:
                    try:
                        sub_nsg = (
                            self.subnet(subnet_id)["properties"].get("networkSecurityGroup") or {}
                        ).get("id")
                    except ArmError:
                        sub_nsg = None
                    if (
                        sub_nsg
                        and self.find(sub_nsg)
                        and sub_nsg.lower() not in map(str.lower, nsgs)
                    ):
                        nsgs.append(sub_nsg)
            nic_nsg = (nic["properties"].get("networkSecurityGroup") or {}).get("id")
            if nic_nsg and self.find(nic_nsg):
                nsgs.append(nic_nsg)
            out.append((nic["id"], ip, nsgs))
        return out
