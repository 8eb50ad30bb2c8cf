"""The `fleet` world: many VMs over subscriptions, resource groups and regions, as an estate
that has used JIT for a while looks (the benchmarks, `emulator serve --world fleet`).

Deterministic for a given (vms, subscriptions, seed). Each resource group holds 50-500 VMs in
one region, with one VNet; most VMs sit in a subnet guarded by a shared NSG, some have their own
NIC NSG (a few of those with a rule that lets RDP/SSH in from the Internet past JIT), a few have
no NSG at all. Each group has one JIT policy, `default`, listing most of its guarded VMs; some
policies allow any source or PT24H; a few requests are open; the first policy still lists a VM
that was deleted (Azure keeps such stale entries).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from jitctl.emulator import jit
from jitctl.emulator.backend import Backend
from jitctl.emulator.seeder import DEMO_SUBSCRIPTION, Seeder, inbound_allow, subnet_id

REGIONS = ("westeurope", "northeurope", "eastus", "westus2")
GROUP_SIZE = 200  # VMs per resource group on average (each group holds 50-500)
SUBNET_SIZE = 250  # VMs per /24 subnet
CORPORATE = "203.0.113.0/24"  # the usual source of JIT requests

BYPASS_RULE = inbound_allow("Allow-Admin-Internet", 310, ["3389", "22"], source="Internet")


def fleet_subscription(index: int, seed: int = 0) -> str:
    """The id of the fleet's subscription number `index` (0 is the demo subscription)."""
    if index == 0:
        return DEMO_SUBSCRIPTION
    h = hashlib.sha256(f"fleet-{seed}-{index}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def fleet(b: Backend, vms: int = 1000, subscriptions: int = 1, seed: int = 0) -> None:
    """Seed `vms` VMs spread evenly over `subscriptions` subscriptions."""
    if vms < 0 or subscriptions < 1:
        raise ValueError("fleet needs vms >= 0 and subscriptions >= 1")
    rng = random.Random(seed)
    delay = b.settings.propagation_delay
    b.settings.propagation_delay = 0.0  # the open requests' rules are in place at once
    try:
        for s, count in enumerate(_split(vms, subscriptions)):
            sub = fleet_subscription(s, seed)
            b.add_subscription(sub, f"Fleet {s:02d}")
            groups = max(1, round(count / GROUP_SIZE))
            for g, size in enumerate(_split(count, groups)):
                _group(b, rng, sub, f"rg-fleet-{s:02d}-{g:02d}", f"{s:02d}-{g:02d}", size, s + g)
    finally:
        b.settings.propagation_delay = delay


def _group(
    b: Backend, rng: random.Random, sub: str, group: str, tag: str, size: int, index: int
) -> None:
    location = REGIONS[index % len(REGIONS)]
    s = Seeder(b, subscription=sub, group=group, location=location)
    guarded = -(-size // SUBNET_SIZE)  # subnets with a shared NSG
    subnets: dict[str, tuple[str, str | None]] = {
        f"snet-{i}": (f"10.{index % 256}.{i}.0/24", s.nsg(f"nsg-snet-{i}")) for i in range(guarded)
    }
    subnets["snet-open"] = (f"10.{index % 256}.250.0/24", None)
    vnet = s.vnet(f"vnet-{tag}", f"10.{index % 256}.0.0/16", subnets)
    any_source = rng.random() < 0.15
    day_long = rng.random() < 0.15
    members: list[dict[str, Any]] = []
    open_ips = 0
    for i in range(size):
        name = f"vm-{tag}-{i:04d}"
        linux = rng.random() < 0.4
        roll = rng.random()
        nic_nsg = None
        if roll < 0.04:  # no NSG at all: JIT cannot protect it
            snet, ip = "snet-open", f"10.{index % 256}.250.{4 + open_ips % 250}"
            open_ips += 1
        else:
            snet = f"snet-{i // SUBNET_SIZE}"
            ip = f"10.{index % 256}.{i // SUBNET_SIZE}.{4 + i % SUBNET_SIZE}"
            if roll < 0.2:
                nic_nsg = s.nsg(f"{name}-nsg", [BYPASS_RULE] if roll < 0.07 else [])
        pip = s.public_ip(f"{name}-pip", _public_ip(index, i)) if rng.random() < 0.2 else None
        nic = s.nic(f"{name}-nic", subnet_id(vnet, snet), ip, nsg=nic_nsg, public_ip=pip)
        tags = {
            "os": "linux" if linux else "windows",
            "env": "prod" if rng.random() < 0.6 else "dev",
            "team": f"team-{rng.randrange(8)}",
        }
        vm_id = s.vm(name, [nic], os_type="Linux" if linux else "Windows", tags=tags)
        if snet != "snet-open" and rng.random() < 0.85:
            members.append(_member(vm_id, linux, any_source, day_long))
    if not members:
        return
    stale = retired = None
    if index == 0:  # a VM deleted after it was put in the policy
        retired = s.nic(f"vm-{tag}-retired-nic", subnet_id(vnet, "snet-0"), f"10.{index % 256}.0.3")
        stale = s.vm(f"vm-{tag}-retired", [retired])
        members.append(_member(stale, False, any_source, day_long))
    policy = {"kind": "Basic", "properties": {"virtualMachines": members}}
    jit.put_policy(b, sub, group, location, "default", policy)
    if stale is not None and retired is not None:
        b.delete(stale)
        b.delete(retired)
    if rng.random() < 0.3:  # an open request on the policy's first VM
        vm = members[0]
        jit.initiate(
            b,
            sub,
            group,
            location,
            "default",
            {
                "virtualMachines": [
                    {
                        "id": vm["id"],
                        "ports": [
                            {
                                "number": vm["ports"][0]["number"],
                                "allowedSourceAddressPrefix": "203.0.113.7",
                                "duration": "PT1H",
                            }
                        ],
                    }
                ],
                "justification": "fleet: on call",
            },
        )


def _member(vm_id: str, linux: bool, any_source: bool, day_long: bool) -> dict[str, Any]:
    source = "*" if any_source else CORPORATE
    return {
        "id": vm_id,
        "ports": [
            {
                "number": 22 if linux else 3389,
                "protocol": "*",
                "allowedSourceAddressPrefix": source,
                "maxRequestAccessDuration": "PT24H" if day_long else "PT3H",
            }
        ],
    }


def _public_ip(group: int, vm: int) -> str:
    n = group * 1000 + vm
    return f"20.{64 + (n >> 16) % 64}.{(n >> 8) % 256}.{n % 256}"
