"""Test worlds for fleet reads: many VMs over several subscriptions, and one with every kind of
problem `jitctl audit` reports."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from jitctl.emulator import Backend
from jitctl.emulator.seeder import Seeder, inbound_allow, subnet_id

SUBS = tuple(f"00000000-0000-4000-8000-0000000000{i:02d}" for i in range(1, 21))


def many(b: Backend, subscriptions: int, vms: int, group: str = "rg-fleet") -> list[str]:
    """`vms` VMs spread over `subscriptions` subscriptions, each with a NIC; one NSG per
    subscription guards the subnet. Returns the VM ids."""
    ids = []
    for s_index in range(subscriptions):
        s = Seeder(b, subscription=SUBS[s_index], group=group, location="westeurope")
        b.state["subscriptions"][SUBS[s_index]]["displayName"] = f"fleet-{s_index:02d}"
        nsg = s.nsg("nsg-fleet")
        vnet = s.vnet("vnet-fleet", "10.0.0.0/8", {"snet": ("10.0.0.0/8", nsg)})
        for i in range(s_index, vms, subscriptions):
            name = f"vm-{i:05d}"
            nic = s.nic(
                f"{name}-nic",
                subnet_id(vnet, "snet"),
                f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            )
            ids.append(s.vm(name, [nic]))
    return ids


AUDIT_GROUP = "rg-audit"
RDP_ANY = inbound_allow("Allow-RDP-Any", 1001, "3389")


def port(number: int, source: str = "198.51.100.0/24", hours: int = 3) -> dict[str, Any]:
    return {
        "number": number,
        "protocol": "TCP",
        "allowedSourceAddressPrefix": source,
        "maxRequestAccessDuration": f"PT{hours}H",
    }


def problems(b: Backend) -> dict[str, str]:
    """Two subscriptions, one VM for each kind of audit finding (and vm-ok, with none).

    Returns name -> VM id: vm-ok (protected, with a grant open now), vm-nonsg (no NSG),
    vm-nopolicy (in no policy), vm-bypass (RDP from any address by a plain rule), vm-wide (a
    policy port open to '*' for 24 h), vm-gone (listed by the policy, deleted), vm-other (the
    second subscription, in no policy)."""
    from jitctl.emulator import jit

    s = Seeder(b, subscription=SUBS[0], group=AUDIT_GROUP, location="westeurope")
    nsg = s.nsg("nsg-audit")
    vnet = s.vnet(
        "vnet-audit",
        "10.70.0.0/16",
        {"snet-guarded": ("10.70.1.0/24", nsg), "snet-open": ("10.70.2.0/24", None)},
    )
    guarded = subnet_id(vnet, "snet-guarded")
    ids = {}
    for i, name in enumerate(("vm-ok", "vm-nopolicy", "vm-wide", "vm-gone"), start=4):
        ids[name] = s.vm(name, [s.nic(f"{name}-nic", guarded, f"10.70.1.{i}")])
    ids["vm-bypass"] = s.vm(
        "vm-bypass",
        [
            s.nic(
                "vm-bypass-nic",
                subnet_id(vnet, "snet-open"),
                "10.70.2.4",
                nsg=s.nsg("nsg-legacy", [RDP_ANY]),
                public_ip=s.public_ip("vm-bypass-pip", "20.61.17.4"),
            )
        ],
    )
    ids["vm-nonsg"] = s.vm(
        "vm-nonsg", [s.nic("vm-nonsg-nic", subnet_id(vnet, "snet-open"), "10.70.2.5")]
    )
    entries = [
        {"id": ids["vm-ok"], "ports": [port(22)]},
        {"id": ids["vm-bypass"], "ports": [port(3389)]},
        {"id": ids["vm-wide"], "ports": [port(3389, "*", 24)]},
        {"id": ids["vm-gone"], "ports": [port(22)]},
    ]
    body = {"kind": "Basic", "properties": {"virtualMachines": entries}}
    jit.put_policy(b, SUBS[0], AUDIT_GROUP, "westeurope", "default", body)
    b.delete(ids["vm-gone"])
    b.delete(s.rid("Microsoft.Network/networkInterfaces", "vm-gone-nic"))
    end = jit.iso(b.clock.now() + timedelta(hours=1))
    request = {
        "virtualMachines": [
            {
                "id": ids["vm-ok"],
                "ports": [
                    {"number": 22, "allowedSourceAddressPrefix": "198.51.100.9", "endTimeUtc": end}
                ],
            }
        ],
        "justification": "INC-1",
    }
    jit.initiate(b, SUBS[0], AUDIT_GROUP, "westeurope", "default", request)
    other = Seeder(b, subscription=SUBS[1], group=AUDIT_GROUP, location="westeurope")
    other_vnet = other.vnet(
        "vnet-other", "10.80.0.0/16", {"snet": ("10.80.1.0/24", other.nsg("nsg-other"))}
    )
    ids["vm-other"] = other.vm(
        "vm-other", [other.nic("vm-other-nic", subnet_id(other_vnet, "snet"), "10.80.1.4")]
    )
    return ids
