"""JIT behaviour on the emulator's state (the REST reference of Microsoft.Security
jitNetworkAccessPolicies, api-version 2020-01-01, and what public reports show of the NSG rules).

A policy PUT replaces the VM list and reconciles one deny rule per VM per guarding NSG;
initiate checks the request is a subset of the policy, answers "Initiating", and after the
propagation delay adds a priority-100 allow rule; expiry and newer requests remove it.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from jitctl.emulator.backend import ArmError, Backend
from jitctl.emulator.bodies import (
    bad,
    caller_of,
    initiate_port,
    iso,
    not_subset,
    parse_time,
    validate_port,
)
from jitctl.emulator.checks import port_number
from jitctl.emulator.defender import lock_on, require_plan, require_unlocked
from jitctl.emulator.firewall import add_dnat_rule, firewall_of, pick_mapped_port, remove_dnat_rule
from jitctl.emulator.nsgrules import add_allow_rules, reconcile_deny_rules

__all__ = ["caller_of", "delete_policy", "initiate", "iso", "parse_time", "put_policy", "tick"]
from jitctl.ids import name_of, policy_id, same_id


def _entry(b: Backend, pid: str) -> dict[str, Any]:
    entry = b.state["jit"].get(pid.lower())
    if entry is None:
        raise ArmError(404, "PolicyNotFound", f"Policy with name '{name_of(pid)}' was not found.")
    return entry


def get_policy(b: Backend, sub: str, rg: str, loc: str, name: str) -> dict[str, Any]:
    return _entry(b, policy_id(sub, rg, loc, name))["policy"]


def list_policies(
    b: Backend, sub: str, rg: str | None = None, loc: str | None = None
) -> list[dict[str, Any]]:
    b.subscription(sub)
    out = []
    for entry in b.state["jit"].values():
        p = entry["policy"]
        parts = [x.lower() for x in p["id"].split("/")]
        if parts[2] != sub.lower():
            continue
        if rg and parts[4] != rg.lower():
            continue
        if loc and p["location"].lower() != loc.lower():
            continue
        out.append(p)
    return out


# --- policy PUT and DELETE ------------------------------------------------------------------


def put_policy(
    b: Backend, sub: str, rg: str, loc: str, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    b.group(sub, rg)
    require_plan(b, sub, name)
    require_unlocked(b, policy_id(sub, rg, loc, name))
    props = body.get("properties")
    if not isinstance(props, dict) or not isinstance(props.get("virtualMachines"), list):
        raise bad("The property 'properties.virtualMachines' is required.", "InvalidInputJson")
    vms = copy.deepcopy(props["virtualMachines"])
    for vm in vms:
        ports = vm.get("ports")
        if (
            not vm.get("id")
            or not isinstance(ports, list)
            or not all(isinstance(p, dict) for p in ports)
        ):
            raise bad("Each virtual machine needs 'id' and 'ports'.", "InvalidInputJson")
    # A deleted VM stays in its policy (MicrosoftDocs/azure-docs#11987), and the service then
    # refuses every write of the policy that still names it, with this message.
    gone = [vm["id"] for vm in vms if b.find(vm["id"]) is None]
    if gone:
        raise bad(
            f"Just-In-Time Network Access Policy: '{name}' contains non-existent virtual "
            f"machines: {', '.join(gone)}"
        )
    for vm in vms:
        vm_res = b.get(vm["id"])
        if vm_res["location"].replace(" ", "").lower() != loc.lower():
            raise bad(
                f"Virtual machine '{vm_res['name']}' is in {vm_res['location']}, not in "
                f"the policy's location {loc}."
            )
        behind_firewall = firewall_of(b, sub, vm.get("publicIpAddress")) is not None
        if not behind_firewall and not any(nsgs for _, _, nsgs in b.vm_paths(vm["id"])):
            raise bad(
                f"Virtual machine '{vm_res['name']}' is not supported for Just-In-Time "
                "access: no network security group is associated with its network "
                "interface or subnet, and no Azure Firewall is in front of it.",
                "UnsupportedVirtualMachine",
            )
        for port in vm["ports"]:
            validate_port(b, vm_res["name"], port)
        numbers = [port_number(p["number"]) for p in vm["ports"]]
        if len(numbers) != len(set(numbers)):
            raise bad(f"Virtual machine '{vm_res['name']}' lists a port twice.")
    pid = policy_id(sub, rg, loc, name)
    entry = b.state["jit"].get(pid.lower())
    requests = entry["policy"]["properties"]["requests"] if entry else props.get("requests", [])
    policy = {
        "id": pid,
        "name": name,
        "type": "Microsoft.Security/locations/jitNetworkAccessPolicies",
        "location": loc,
        "kind": body.get("kind", "Basic"),
        "properties": {
            "virtualMachines": vms,
            "requests": requests,
            "provisioningState": "Succeeded",
        },
    }
    if entry is None:
        entry = {"policy": policy, "deny": {}}
        b.state["jit"][pid.lower()] = entry
    entry["policy"] = policy
    reconcile_deny_rules(b, entry)
    return policy


def delete_policy(b: Backend, sub: str, rg: str, loc: str, name: str) -> bool:
    entry = b.state["jit"].get(policy_id(sub, rg, loc, name).lower())
    if entry is None:
        return False
    require_unlocked(b, entry["policy"]["id"])
    entry["policy"]["properties"]["virtualMachines"] = []
    reconcile_deny_rules(b, entry)
    for grant in b.state["grants"]:
        if grant["policy"].lower() == entry["policy"]["id"].lower() and grant["state"] != "done":
            _end_grant(b, grant, "Revoked", "UserRequested")
    del b.state["jit"][entry["policy"]["id"].lower()]
    return True


def initiate(
    b: Backend,
    sub: str,
    rg: str,
    loc: str,
    name: str,
    body: dict[str, Any],
    caller: str | None = None,
) -> dict[str, Any]:
    """`caller`: the client's address as ARM sees it, the source of a port that names none
    (default: `caller_of(b)`)."""
    entry = _entry(b, policy_id(sub, rg, loc, name))
    require_plan(b, sub, name)
    policy = entry["policy"]
    now = b.clock.now()
    vms_in = body.get("virtualMachines")
    if not isinstance(vms_in, list) or not vms_in:
        raise bad("The request must name at least one virtual machine.", "InvalidInitiateInput")
    out_vms = []
    new_grants = []
    for vm in vms_in:
        pvm = next(
            (v for v in policy["properties"]["virtualMachines"] if same_id(v["id"], vm.get("id"))),
            None,
        )
        if pvm is None or not vm.get("ports"):
            raise not_subset(policy["id"])
        fw = firewall_of(b, sub, pvm.get("publicIpAddress"))
        mapped: set[int] = set()
        out_ports = []
        for port in vm["ports"]:
            number, rule, sources, end = initiate_port(b, policy["id"], pvm, port, caller, now)
            src_field = (
                {"allowedSourceAddressPrefixes": sources}
                if len(sources) > 1
                else {"allowedSourceAddressPrefix": sources[0]}
            )
            dnat: dict[str, Any] = {}
            if fw is not None:  # the firewall's DNAT port for this one
                to = pick_mapped_port(b, fw, mapped)
                mapped.add(to)
                dnat = {"firewall": fw["id"], "address": pvm["publicIpAddress"], "mapped": to}
            out_ports.append(
                {
                    "number": port["number"] if b.settings.port_numbers_as_sent else number,
                    **src_field,
                    "endTimeUtc": iso(end),
                    "status": "Initiating",
                    "statusReason": "UserRequested",
                    **({"mappedPort": dnat["mapped"]} if dnat else {}),
                }
            )
            new_grants.append(
                {
                    **dnat,
                    "policy": policy["id"],
                    "vm": pvm["id"],
                    "port": number,
                    "sources": sources,
                    "protocol": rule["protocol"],
                    "end": iso(end),
                    "start": iso(now),
                    "seq": b.next_id(),
                    "state": "pending",
                    "apply_at": iso(now + timedelta(seconds=b.settings.propagation_delay)),
                    "rules": [],
                }
            )
        out_vms.append({"id": pvm["id"], "ports": out_ports})
    request = {
        "virtualMachines": out_vms,
        "startTimeUtc": iso(now),
        "requestor": b.settings.requestor,
    }
    if body.get("justification") is not None:
        request["justification"] = body["justification"]
    history = policy["properties"]["requests"]
    history.append(copy.deepcopy(request))
    for g in new_grants:
        g["request"] = len(history) - 1
    b.state["grants"].extend(new_grants)
    response = copy.deepcopy(request)
    tick(b)
    return response


def _history_port(b: Backend, grant: dict[str, Any]) -> dict[str, Any] | None:
    entry = b.state["jit"].get(grant["policy"].lower())
    if entry is None:
        return None
    req = entry["policy"]["properties"]["requests"][grant["request"]]
    for vm in req["virtualMachines"]:
        if same_id(vm["id"], grant["vm"]):
            for port in vm["ports"]:
                if port_number(port["number"]) == grant["port"]:
                    return port
    return None


def _end_grant(b: Backend, grant: dict[str, Any], status: str, reason: str) -> None:
    for nsg_id, rule_name in grant["rules"]:
        if b.find(nsg_id):
            b.delete_rule(nsg_id, rule_name)
    grant["rules"] = []
    if grant.get("dnat"):
        remove_dnat_rule(b, *grant.pop("dnat"))
    grant["state"] = "done"
    port = _history_port(b, grant)
    if port is not None:
        port["status"], port["statusReason"] = status, reason


def _failure(b: Backend, grant: dict[str, Any]) -> str | None:
    """Why the rule of an accepted request cannot be written, if it cannot. Initiate is
    asynchronous: the 202 promises nothing, and a Network RP refusal behind it (rule limit, a
    lock, an Azure Policy deny, a deallocated VM) shows nowhere but in the request's status.
    What Azure writes there is unconfirmed: "Failed" and a reason here."""
    if b.settings.initiate_fate == "fail":
        return b.settings.initiate_failure_reason
    vm = b.find(grant["vm"])
    nsgs = [n for _nic, _ip, ids in b.vm_paths(grant["vm"]) for n in ids] if vm else []
    return "ScopeLocked" if any(lock_on(b, n) for n in nsgs) else None


def _apply_grant(b: Backend, grant: dict[str, Any]) -> None:
    reason = _failure(b, grant)
    if reason is not None:
        grant["state"] = "done"
        port = _history_port(b, grant)
        if port is not None:
            port["status"], port["statusReason"] = "Failed", reason
        return
    for other in b.state["grants"]:
        if (
            other is not grant
            and other["state"] != "done"
            and other["port"] == grant["port"]
            and same_id(other["vm"], grant["vm"])
            and other["seq"] < grant["seq"]
        ):
            _end_grant(b, other, "Revoked", "NewerRequestInitiated")
    grant["rules"].extend(add_allow_rules(b, grant))
    if grant.get("firewall") and b.find(grant["vm"]):
        ip = next((ip for _nic, ip, _nsgs in b.vm_paths(grant["vm"])), None)
        grant["dnat"] = add_dnat_rule(b, grant, ip)
    grant["state"] = "active"
    port = _history_port(b, grant)
    if port is not None:
        port["status"] = "Initiated"


def tick(b: Backend) -> None:
    """Apply what is due by now: pending grants become rules, expired grants go."""
    now = b.clock.now()
    for grant in sorted(b.state["grants"], key=lambda g: g["apply_at"]):
        due = grant["state"] == "pending" and parse_time(grant["apply_at"]) <= now
        if due and b.settings.initiate_fate != "never":
            _apply_grant(b, grant)
        if grant["state"] != "done" and parse_time(grant["end"]) <= now:
            _end_grant(b, grant, "Revoked", "Expired")
    b.state["grants"] = [g for g in b.state["grants"] if g["state"] != "done"]
