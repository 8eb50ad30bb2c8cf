"""Test worlds for fleet reads: many VMs over several subscriptions, and one with every kind of
problem `jitctl audit` reports."""

from __future__ import annotations

from jitctl.emulator import Backend
from jitctl.emulator.worlds import Seeder, subnet_id

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
