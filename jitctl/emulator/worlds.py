"""A few named worlds for the demo, tests and benchmarks, seeded with jitctl.emulator.seeder."""

from __future__ import annotations

from collections.abc import Callable

from jitctl.emulator.backend import Backend
from jitctl.emulator.seeder import (
    Seeder,
    inbound_allow,
    subnet_id,
)


def demo(b: Backend) -> None:
    """A Windows VM with a NIC NSG and a Linux VM behind a subnet NSG."""
    s = Seeder(b)
    nic_nsg = s.nsg("vm-win01-nsg")
    subnet_nsg = s.nsg(
        "snet-linux-nsg",
        [inbound_allow("Allow-HTTPS", 300, "443", source="Internet")],
    )
    vnet = s.vnet(
        "vnet-demo",
        "10.10.0.0/16",
        {"snet-windows": ("10.10.1.0/24", None), "snet-linux": ("10.10.2.0/24", subnet_nsg)},
    )
    win_pip = s.public_ip("vm-win01-pip", "20.61.15.10")
    lnx_pip = s.public_ip("vm-lnx01-pip", "20.61.15.11", dns="vm-lnx01-demo")
    s.vm(
        "vm-win01",
        [
            s.nic(
                "vm-win01-nic",
                subnet_id(vnet, "snet-windows"),
                "10.10.1.4",
                nsg=nic_nsg,
                public_ip=win_pip,
            )
        ],
    )
    s.vm(
        "vm-lnx01",
        [s.nic("vm-lnx01-nic", subnet_id(vnet, "snet-linux"), "10.10.2.4", public_ip=lnx_pip)],
        os_type="Linux",
    )


def busy(b: Backend) -> None:
    """The demo world plus a busy NSG whose 'RDP from Any' rule bypasses JIT, and an unprotected VM."""
    demo(b)
    s = Seeder(b)
    nsg = s.nsg(
        "vm-legacy-nsg",
        [
            inbound_allow("Allow-RDP-Any", 1001, "3389"),
            {
                "name": "Allow-Mgmt-Range",
                "priority": 900,
                "direction": "Inbound",
                "access": "Allow",
                "protocol": "Tcp",
                "sourceAddressPrefixes": ["198.51.100.0/24", "192.0.2.0/24"],
                "sourcePortRange": "*",
                "destinationAddressPrefix": "VirtualNetwork",
                "destinationPortRanges": ["5985-5986", "22"],
            },
            {
                "name": "Deny-SMB",
                "priority": 200,
                "direction": "Inbound",
                "access": "Deny",
                "protocol": "*",
                "sourceAddressPrefix": "Internet",
                "sourcePortRange": "*",
                "destinationAddressPrefix": "*",
                "destinationPortRange": "445",
            },
        ],
    )
    vnet = s.vnet("vnet-legacy", "10.20.0.0/16", {"snet-legacy": ("10.20.1.0/24", None)})
    s.vm(
        "vm-legacy",
        [
            s.nic(
                "vm-legacy-nic",
                subnet_id(vnet, "snet-legacy"),
                "10.20.1.4",
                nsg=nsg,
                public_ip=s.public_ip("vm-legacy-pip", "20.61.15.20"),
            )
        ],
    )
    s.vm("vm-nonsg", [s.nic("vm-nonsg-nic", subnet_id(vnet, "snet-legacy"), "10.20.1.5")])


def multinic(b: Backend) -> None:
    """The demo world plus a VM with two NICs, each with its own NSG; the second is primary."""
    demo(b)
    s = Seeder(b)
    vnet = s.vnet(
        "vnet-multi",
        "10.30.0.0/16",
        {"snet-front": ("10.30.1.0/24", None), "snet-back": ("10.30.2.0/24", None)},
    )
    front = s.nic(
        "vm-multi-nic0", subnet_id(vnet, "snet-front"), "10.30.1.4", nsg=s.nsg("vm-multi-nsg0")
    )
    back = s.nic(
        "vm-multi-nic1",
        subnet_id(vnet, "snet-back"),
        "10.30.2.4",
        nsg=s.nsg("vm-multi-nsg1"),
        public_ip=s.public_ip("vm-multi-pip", "20.61.15.30"),
    )
    s.vm("vm-multi", [front, back], primary=1)


DOCS_GROUP = "rg-prod"


def docs(b: Backend) -> None:
    """The demo world plus the README's names: rg-prod with vm-win01, vm-win02 and vm-lnx01.

    The README and every --help example run against it (tests/test_docs.py), in order.
    """
    demo(b)
    s = Seeder(b, group=DOCS_GROUP)
    windows_nsg = s.nsg("nsg-windows")
    linux_nsg = s.nsg("nsg-linux")
    vnet = s.vnet(
        "vnet-prod",
        "10.50.0.0/16",
        {"snet-windows": ("10.50.1.0/24", None), "snet-linux": ("10.50.2.0/24", linux_nsg)},
    )
    for i, name in enumerate(("vm-win01", "vm-win02"), start=4):
        nic = s.nic(
            f"{name}-nic",
            subnet_id(vnet, "snet-windows"),
            f"10.50.1.{i}",
            nsg=windows_nsg,
            public_ip=s.public_ip(f"{name}-pip", f"20.61.16.{i}"),
        )
        s.vm(name, [nic])
    pip = s.public_ip("vm-lnx01-pip", "20.61.16.20", dns="vm-lnx01-prod")
    nic = s.nic("vm-lnx01-nic", subnet_id(vnet, "snet-linux"), "10.50.2.4", public_ip=pip)
    s.vm("vm-lnx01", [nic], os_type="Linux")


def empty(b: Backend) -> None:
    Seeder(b)


def crowd(b: Backend, count: int = 20, group: str = "rg-crowd") -> list[str]:
    """`count` VMs (vm-00, vm-01...) in one resource group, each with a NIC NSG: many admins
    enabling JIT on them at once all write the group's one policy. Returns the VM names."""
    s = Seeder(b, group=group)
    vnet = s.vnet("vnet-crowd", "10.60.0.0/16", {"snet": ("10.60.0.0/24", None)})
    names = [f"vm-{i:02d}" for i in range(count)]
    for i, name in enumerate(names):
        nic = s.nic(
            f"{name}-nic", subnet_id(vnet, "snet"), f"10.60.0.{10 + i}", s.nsg(f"{name}-nsg")
        )
        s.vm(name, [nic])
    return names


LOOPBACK_GROUP = "rg-loopback"


def loopback(b: Backend) -> None:
    """The demo world plus vm-local, whose public and private address is 127.0.0.1: a local
    server stands in for it (the relay and tunnel tests; `ssh-proxy` on one machine)."""
    demo(b)
    s = Seeder(b, group=LOOPBACK_GROUP)
    vnet = s.vnet("vnet-loopback", "127.0.0.0/24", {"snet-local": ("127.0.0.0/24", None)})
    nic = s.nic(
        "vm-local-nic",
        subnet_id(vnet, "snet-local"),
        "127.0.0.1",
        nsg=s.nsg("vm-local-nsg"),
        public_ip=s.public_ip("vm-local-pip", "127.0.0.1"),
    )
    s.vm("vm-local", [nic], os_type="Linux")


def fleet(b: Backend) -> None:
    """1,000 VMs over resource groups and regions (jitctl.emulator.fleet; sizes from the CLI)."""
    from jitctl.emulator.fleet import fleet as seed

    seed(b)


def per_vm(b: Backend) -> None:
    """The demo world with one JIT policy per VM named after it, as Microsoft's own scripts and
    the PowerShell docs make them, and vm-win01 also in the portal's 'default' (seen in the
    field: a VM in several policies)."""
    demo(b)
    s = Seeder(b)
    s.jit_policy("vm-win01", {"vm-win01": [3389, 5985]})
    s.jit_policy("vm-lnx01", {"vm-lnx01": [22]})
    s.jit_policy("default", {"vm-win01": [3389]}, hours=1)


FIREWALL_ADDRESS = "20.61.17.4"


def firewall(b: Backend) -> None:
    """The demo world plus an Azure Firewall (fw-hub, 20.61.17.4) in front of two VMs without
    public IPs, in a JIT policy 'fw-jit' that names the firewall's address: vm-app01 (Windows,
    a NIC NSG) and vm-app02 (Linux, no NSG: the firewall is its only gate)."""
    demo(b)
    s = Seeder(b)
    vnet = s.vnet(
        "vnet-hub",
        "10.40.0.0/16",
        {"AzureFirewallSubnet": ("10.40.0.0/26", None), "snet-app": ("10.40.1.0/24", None)},
    )
    s.firewall(
        "fw-hub",
        subnet_id(vnet, "AzureFirewallSubnet"),
        "10.40.0.4",
        s.public_ip("fw-hub-pip", FIREWALL_ADDRESS),
    )
    app = subnet_id(vnet, "snet-app")
    s.vm("vm-app01", [s.nic("vm-app01-nic", app, "10.40.1.4", nsg=s.nsg("vm-app01-nsg"))])
    s.vm("vm-app02", [s.nic("vm-app02-nic", app, "10.40.1.5")], os_type="Linux")
    s.jit_policy("fw-jit", {"vm-app01": [3389], "vm-app02": [22]}, firewall_ip=FIREWALL_ADDRESS)


HUB_SUBSCRIPTION = "7c1a9e42-3b8d-4f06-a5e1-2d9b0c4e8f13"
HUB_FIREWALL_ADDRESS = "20.61.18.4"


def hub_spoke(b: Backend) -> None:
    """A landing zone: the demo world (the spoke subscription) plus, in a hub (connectivity)
    subscription, an Azure Firewall (fw-hub, 20.61.18.4) with its public IP; in the spoke,
    vm-spoke01 (Windows, a NIC NSG, no public IP) in a JIT policy 'fw-spoke' that names the
    firewall's address. A caller without a role in the hub: `unreadable_subscriptions`."""
    demo(b)
    hub = Seeder(b, subscription=HUB_SUBSCRIPTION, group="rg-connectivity")
    b.subscription(HUB_SUBSCRIPTION)["displayName"] = "Connectivity (hub)"
    hub_vnet = hub.vnet("vnet-hub", "10.70.0.0/16", {"AzureFirewallSubnet": ("10.70.0.0/26", None)})
    hub.firewall(
        "fw-hub",
        subnet_id(hub_vnet, "AzureFirewallSubnet"),
        "10.70.0.4",
        hub.public_ip("fw-hub-pip", HUB_FIREWALL_ADDRESS),
    )
    s = Seeder(b)
    vnet = s.vnet("vnet-spoke", "10.71.0.0/16", {"snet-app": ("10.71.1.0/24", None)})
    nic = s.nic(
        "vm-spoke01-nic", subnet_id(vnet, "snet-app"), "10.71.1.4", nsg=s.nsg("vm-spoke01-nsg")
    )
    s.vm("vm-spoke01", [nic])
    s.jit_policy("fw-spoke", {"vm-spoke01": [3389]}, firewall_ip=HUB_FIREWALL_ADDRESS)


WORLDS: dict[str, Callable[[Backend], None]] = {
    "demo": demo,
    "busy": busy,
    "multinic": multinic,
    "docs": docs,
    "empty": empty,
    "loopback": loopback,
    "fleet": fleet,
    "per-vm": per_vm,
    "firewall": firewall,
    "hub-spoke": hub_spoke,
}
