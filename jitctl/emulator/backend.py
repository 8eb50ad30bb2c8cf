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
from jitctl.emulator.rows import Listing, Rows
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

DEFAULT_RULES = [
    (
        "AllowVnetInBound",
        "Allow inbound traffic from all VMs in VNET",
        "VirtualNetwork",
        "VirtualNetwork",
        "Allow",
        65000,
        "Inbound",
    ),
    (
        "AllowAzureLoadBalancerInBound",
        "Allow inbound traffic from azure load balancer",
        "AzureLoadBalancer",
        "*",
        "Allow",
        65001,
        "Inbound",
    ),
    ("DenyAllInBound", "Deny all inbound traffic", "*", "*", "Deny", 65500, "Inbound"),
    (
        "AllowVnetOutBound",
        "Allow outbound traffic from all VMs to all VMs in VNET",
        "VirtualNetwork",
        "VirtualNetwork",
        "Allow",
        65000,
        "Outbound",
    ),
    (
        "AllowInternetOutBound",
        "Allow outbound traffic from all VMs to Internet",
        "*",
        "Internet",
        "Allow",
        65001,
        "Outbound",
    ),
    ("DenyAllOutBound", "Deny all outbound traffic", "*", "*", "Deny", 65500, "Outbound"),
]


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
class Settings:
    """Behaviour Azure does not publish, or that tests want to control."""

    propagation_delay: float = 0.0  # seconds from initiate to the allow rule (Azure: ~1 minute)
    latency: float = 0.0  # seconds every ARM call takes, slept outside the lock (calls overlap)
    page_size: int = 100  # items per list page before a nextLink
    deny_priority: int = 4096  # preferred JIT deny priority
    # "below-free": 4096, or the next free number below it; "above-allow": one above the
    # highest-priority allow rule that covers the ports (as seen at 1000 above an allow at 1001).
    deny_priority_strategy: str = "below-free"
    allow_priority: int = 100  # JIT allow priority; the next free one above when taken
    # "next-free": the first free number from allow_priority up; "scatter": when allow_priority
    # is taken, a free number up to 40 above it, not the next (observed from 100 to 140).
    allow_priority_strategy: str = "next-free"
    # JIT renumbers existing rules (MicrosoftDocs/azure-docs#103634): when the number it wants
    # is taken by a rule that is not JIT's, that rule and the ones right after it move up one.
    renumber: bool = False
    requestor: str = "jitctl-emulator@contoso.com"
    lro_polls: int = 1  # how many times an async operation answers InProgress first
    graph_quota: int = 15  # Resource Graph queries per window per user (Azure's default); 0: none
    graph_quota_window: float = 5.0  # seconds
    # Defender for Servers plan of every subscription: "P2" (JIT needs it), "P1" or "off"
    defender_plan: str = "P2"
    locked_scopes: list[str] = field(default_factory=list)  # ids under a ReadOnly lock
    permissions: list[str] = field(default_factory=lambda: ["*"])  # the caller's actions
    not_permissions: list[str] = field(default_factory=list)
    # What happens behind an initiate's 202: "apply" (the allow rule appears), "never" (accepted,
    # never applied: the history keeps "Initiating"), "fail" (the history says "Failed" with
    # `initiate_failure_reason`). A locked NSG fails the request whatever this says.
    initiate_fate: str = "apply"
    initiate_failure_reason: str = "SecurityRulesLimitReached"
    # Azure Firewall (jitctl.emulator.firewall): the first mapped (DNAT) port JIT hands out, and
    # the priority of the MDC-JIT NAT rule collection it creates; both unpublished.
    firewall_ports_from: int = 50000
    firewall_collection_priority: int = 3000
    # How a requested source must match a policy port's allowed prefixes: "containment" (within
    # one, by CIDR) or "verbatim" (the same text, as one report suggests; unconfirmed).
    source_match: str = "containment"
    # The source of an initiate port that names none: the caller's address as ARM sees it.
    # "peer": the TCP client's address (`emulator serve`; 127.0.0.1 in-process).
    caller_address: str = "203.0.113.10"
    # A port number sent as a string ("22"): off, stored and answered as the number 22 (what
    # Azure answers is unconfirmed); on, kept as sent, so clients meet the string too.
    port_numbers_as_sent: bool = False


@dataclass
class Fault:
    """Answer `status` instead of the real response, `times` times (or with `rate`).

    Latency is slept outside the backend's lock, so parallel clients overlap as with ARM."""

    status: int
    match: str = ""  # substring of the path (case-insensitive); empty matches all
    method: str = ""  # empty matches all
    times: int = 1
    rate: float = 0.0  # when > 0, a probability for each matching request instead of times
    retry_after: int | None = None
    latency: float = 0.0  # seconds to wait before answering (with status 0: just latency)
    # True: do the request, then answer `status` instead of the real reply (an answer lost
    # after the fact: the write or initiate happened, the client does not know it).
    after: bool = False


def latency_and_faults(latency: float = 0.0, fault_rate: float = 0.0) -> list[Fault]:
    """`latency` seconds on every call; `fault_rate` of JIT policy writes and initiates answered
    503, half before doing them and half after (the answer lost), as `emulator serve` offers."""
    faults = [Fault(0, latency=latency, rate=1.0)] if latency > 0 else []
    if fault_rate > 0:
        faults += [
            Fault(503, match="/jitNetworkAccessPolicies/", method=m, rate=fault_rate / 2, after=a)
            for m in ("PUT", "DELETE", "POST")
            for a in (False, True)
        ]
    return faults


@dataclass
class LogEntry:
    method: str
    path: str
    api_version: str | None
    status: int


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
        created = resource_id.lower() not in self.state["resources"]
        self.state["resources"][resource_id.lower()] = res
        return res, created

    def delete(self, resource_id: str) -> bool:
        gone = self.state["resources"].pop(resource_id.lower().rstrip("/"), None)
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
