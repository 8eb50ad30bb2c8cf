"""What guards a VM: its NIC, private address, subnet and the NSGs on the path."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from jitctl.errors import NotFound, Refused
from jitctl.gateway import Gateway
from jitctl.ids import name_of, same_id
from jitctl.model import Nic, Nsg, Subnet, Vm


@dataclass(frozen=True)
class Path:
    """The inbound path to one NIC: subnet NSG first, then NIC NSG (ids; None = no NSG)."""

    vm: Vm
    nic: Nic
    private_ip: str
    subnet: Subnet | None
    subnet_nsg_id: str | None
    nic_nsg_id: str | None

    @property
    def nsg_ids(self) -> tuple[str, ...]:
        return tuple(i for i in (self.subnet_nsg_id, self.nic_nsg_id) if i)


def pick_nic(vm: Vm, nic: str | None) -> str:
    """The NIC named by --nic (name or id), else the primary one."""
    if nic:
        found = next(
            (n for n in vm.nics if same_id(n.id, nic) or name_of(n.id).lower() == nic.lower()), None
        )
        if found is None:
            names = ", ".join(name_of(n.id) for n in vm.nics) or "none"
            raise NotFound(f"VM {vm.name} has no NIC '{nic}'.", f"Its NICs: {names}.")
        return found.id
    primary = vm.primary_nic
    if primary is None:
        raise Refused(f"VM {vm.name} has no network interface.", "JIT needs a VM with a NIC.")
    return primary.id


def read_path(gw: Gateway, vm: Vm, nic: str | None = None) -> Path:
    """Reads the NIC and its subnet (2 GETs); NSGs are read separately, as they change."""
    nic_obj = gw.get_nic(pick_nic(vm, nic))
    cfg = nic_obj.primary_ip_config
    if cfg is None or not cfg.private_ip:
        raise Refused(f"NIC {name_of(nic_obj.id)} of VM {vm.name} has no private IPv4 address.")
    subnet = gw.get_subnet(cfg.subnet_id) if cfg.subnet_id else None
    return Path(
        vm, nic_obj, cfg.private_ip, subnet, subnet.nsg_id if subnet else None, nic_obj.nsg_id
    )


def read_nsgs(gw: Gateway, path: Path) -> tuple[Nsg | None, Nsg | None]:
    """The subnet's and the NIC's NSG, read at once."""
    subnet_nsg, nic_nsg = gw.parallel(
        [partial(_nsg_or_none, gw, path.subnet_nsg_id), partial(_nsg_or_none, gw, path.nic_nsg_id)]
    )
    return subnet_nsg, nic_nsg


def _nsg_or_none(gw: Gateway, nsg_id: str | None) -> Nsg | None:
    return gw.get_nsg(nsg_id) if nsg_id else None
