"""The NSG rules JIT writes: one deny rule per VM per guarding NSG, and the allow rules of grants
(as public reports show them: MicrosoftDocs/azure-docs#122814, #103634)."""

from __future__ import annotations

import hashlib
from typing import Any

from jitctl.emulator.backend import ArmError, Backend
from jitctl.emulator.checks import port_number
from jitctl.ids import name_of

PROTOCOLS = {"TCP": "Tcp", "UDP": "Udp", "*": "*"}
DENY_PREFIX = "MicrosoftDefenderForCloud-JITRule_"
ALLOW_PREFIX = "MicrosoftDefenderForCloud-JITRule-"


def jit_rule_name(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("|".join(parts).lower().encode()).hexdigest()
    number = int(digest[:8], 16) - 2**31
    sep = prefix[-1]
    return f"{prefix}{number}{sep}{digest[8:40]}"


def _deny_priority(b: Backend, nsg_id: str, ports: list[int]) -> int:
    rules = b.rules(nsg_id)
    taken = {
        r["properties"]["priority"] for r in rules if r["properties"]["direction"] == "Inbound"
    }
    start = b.settings.deny_priority
    if b.settings.deny_priority_strategy == "above-allow":
        covering = [
            r["properties"]["priority"]
            for r in rules
            if r["properties"]["access"] == "Allow"
            and r["properties"]["direction"] == "Inbound"
            and any(_port_in_rule(p, r) for p in ports)
        ]
        if covering:
            start = min(covering) - 1
    if start in taken and b.settings.renumber and _make_room(b, nsg_id, start):
        return start
    for prio in range(start, 99, -1):
        if prio not in taken:
            return prio
    raise ArmError(400, "SecurityRuleInvalidPriority", f"No free priority in {nsg_id}.")


def _is_jit(rule: dict[str, Any]) -> bool:
    return rule["name"].startswith((DENY_PREFIX, ALLOW_PREFIX))


def _make_room(b: Backend, nsg_id: str, prio: int) -> bool:
    """Free `prio` by moving the rule there, and the ones right after it, up one number (JIT's
    renumbering, MicrosoftDocs/azure-docs#103634); False when a JIT rule or 4096 is in the way."""
    inbound = {
        r["properties"]["priority"]: r
        for r in b.rules(nsg_id)
        if r["properties"]["direction"] == "Inbound"
    }
    run: list[dict[str, Any]] = []
    while prio + len(run) in inbound:
        run.append(inbound[prio + len(run)])
    if prio + len(run) > 4096 or any(_is_jit(r) for r in run):
        return False
    for rule in reversed(run):  # from the top, so no two rules ever share a number
        moved = {**rule, "properties": {**rule["properties"]}}
        moved["properties"]["priority"] += 1
        b.put_rule(nsg_id, moved)
    return True


def _allow_priority(b: Backend, nsg_id: str, seed: str) -> int:
    taken = {
        r["properties"]["priority"]
        for r in b.rules(nsg_id)
        if r["properties"]["direction"] == "Inbound"
    }
    start = b.settings.allow_priority
    if start in taken and b.settings.renumber and _make_room(b, nsg_id, start):
        return start
    if start in taken and b.settings.allow_priority_strategy == "scatter":
        free = [p for p in range(start + 1, min(start + 40, 4096) + 1) if p not in taken]
        if free:
            return free[int(hashlib.sha256(seed.encode()).hexdigest(), 16) % len(free)]
    return next(p for p in range(start, 4097) if p not in taken)


def _port_in_rule(port: int, rule: dict[str, Any]) -> bool:
    props = rule["properties"]
    ranges = props.get("destinationPortRanges") or [props.get("destinationPortRange") or ""]
    for r in ranges:
        low, _, high = r.partition("-")
        if r == "*" or (low.isdigit() and int(low) <= port <= int(high or low)):
            return True
    return False


def reconcile_deny_rules(b: Backend, entry: dict[str, Any]) -> None:
    policy = entry["policy"]
    wanted = {vm["id"].lower(): vm for vm in policy["properties"]["virtualMachines"]}
    for vm_key in list(entry["deny"]):
        for nsg_id, rule_name in entry["deny"][vm_key]:
            if b.find(nsg_id):
                b.delete_rule(nsg_id, rule_name)
        if vm_key not in wanted:
            del entry["deny"][vm_key]
    for vm_key, vm in wanted.items():
        ports = sorted(int(port_number(p["number"]) or 0) for p in vm["ports"])
        vm_name = name_of(vm["id"])
        placed = []
        for _nic, ip, nsgs in b.vm_paths(vm["id"]):
            for nsg_id in nsgs:
                name = jit_rule_name(DENY_PREFIX, policy["id"], vm["id"], nsg_id)
                body: dict[str, Any] = {
                    "name": name,
                    "properties": {
                        "description": f"MDC JIT Network Access rule for policy '{policy['name']}' "
                        f"of VM '{vm_name}'.",
                        "protocol": "*",
                        "sourcePortRange": "*",
                        "sourceAddressPrefix": "*",
                        "destinationAddressPrefix": ip or "*",
                        "access": "Deny",
                        "priority": _deny_priority(b, nsg_id, ports),
                        "direction": "Inbound",
                    },
                }
                if len(ports) == 1:
                    body["properties"]["destinationPortRange"] = str(ports[0])
                else:
                    body["properties"]["destinationPortRanges"] = [str(p) for p in ports]
                b.put_rule(nsg_id, body)
                placed.append([nsg_id, name])
        entry["deny"][vm_key] = placed


# --- initiate, propagation, expiry -----------------------------------------------------------


def add_allow_rules(b: Backend, grant: dict[str, Any]) -> list[list[str]]:
    """The allow rule of a grant on each NSG that guards the VM: priority 100, or the next free."""
    placed: list[list[str]] = []
    vm = b.find(grant["vm"])
    vm_name = name_of(grant["vm"])
    policy_name = name_of(grant["policy"])
    for _nic, ip, nsgs in b.vm_paths(grant["vm"]) if vm else []:
        for nsg_id in nsgs:
            prio = _allow_priority(b, nsg_id, f"{grant['start']}|{grant['port']}|{nsg_id}")
            name = jit_rule_name(
                ALLOW_PREFIX,
                grant["policy"],
                grant["vm"],
                nsg_id,
                grant["start"],
                str(grant["port"]),
            )
            src = grant["sources"]
            b.put_rule(
                nsg_id,
                {
                    "name": name,
                    "properties": {
                        "description": f"MDC JIT Network Access rule created by an initiation request for "
                        f"policy '{policy_name}' of VM '{vm_name}'.",
                        "protocol": PROTOCOLS.get(grant["protocol"], "*"),
                        "sourcePortRange": "*",
                        **(
                            {"sourceAddressPrefix": src[0]}
                            if len(src) == 1
                            else {"sourceAddressPrefixes": src}
                        ),
                        "destinationAddressPrefix": ip or "*",
                        "destinationPortRange": str(grant["port"]),
                        "access": "Allow",
                        "priority": prio,
                        "direction": "Inbound",
                    },
                },
            )
            placed.append([nsg_id, name])
    return placed
