"""What guards a VM: its NIC, private address, subnet and the NSGs on the path."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

from jitctl.errors import NotFound, Refused
from jitctl.gateway import Gateway
from jitctl.ids import VmRef, name_of, same_id, segments
from jitctl.model import Nic, Nsg, Subnet, Vm

BATCH = 3  # more than this many wanted in one resource group: one list instead of a GET each


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


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_HasId)


def _group_of(resource_id: str) -> tuple[str, str]:
    seg = segments(resource_id)
    return seg.get("subscriptions", ""), seg.get("resourcegroups", "")


def _by_id(
    gw: Gateway,
    ids: Iterable[str],
    get: Callable[[str], R],
    list_group: Callable[[str, str], list[R]],
) -> dict[str, R]:
    """Resources by lower-cased id, read at once: one list of a resource group that holds more
    than BATCH of them, else a GET each. One missing from its list is read by GET (which
    raises Azure's own error for it)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for rid in dict.fromkeys(ids):
        sub, rg = _group_of(rid)
        groups.setdefault((sub.lower(), rg.lower()), []).append(rid)
    calls: list[Callable[[], list[R]]] = []
    for members in groups.values():
        if len(members) > BATCH:
            calls.append(partial(list_group, *_group_of(members[0])))
        else:
            calls.extend(partial(_one, get, rid) for rid in members)
    found = {r.id.lower(): r for batch in gw.parallel(calls) for r in batch}
    missing = [rid for members in groups.values() for rid in members if rid.lower() not in found]
    for r in (r for batch in gw.parallel([partial(_one, get, m) for m in missing]) for r in batch):
        found[r.id.lower()] = r
    return found


def _one(get: Callable[[str], R], rid: str) -> list[R]:
    return [get(rid)]


def read_vms(gw: Gateway, refs: Sequence[VmRef]) -> list[Vm]:
    """The VMs, in order: a GET each, or one list of a resource group that holds more than
    BATCH of them."""

    def get(rid: str) -> Vm:
        return gw.get_vm(next(r for r in refs if r.id == rid))

    found = _by_id(gw, (r.id for r in refs), get, gw.list_vms)
    return [found[r.id.lower()] for r in refs]


def guarded(gw: Gateway, vms: Sequence[Vm]) -> dict[str, bool]:
    """VM id (lower case) -> whether a NIC of it, or a subnet of one, has an NSG (JIT can
    protect it). Reads the NICs, then the subnets only of the NICs without an NSG, each
    step at once and by the list where a resource group holds many."""
    nics = _by_id(gw, (n.id for vm in vms for n in vm.nics), gw.get_nic, gw.list_nics)
    out = {vm.id.lower(): any(nics[n.id.lower()].nsg_id for n in vm.nics) for vm in vms}
    subnet_ids = [
        cfg.subnet_id
        for vm in vms
        if not out[vm.id.lower()]
        for n in vm.nics
        for cfg in nics[n.id.lower()].ip_configs
        if cfg.subnet_id
    ]
    subnets = _by_id(gw, subnet_ids, gw.get_subnet, gw.list_subnets)
    for vm in vms:
        if not out[vm.id.lower()]:
            out[vm.id.lower()] = any(
                subnets[cfg.subnet_id.lower()].nsg_id
                for n in vm.nics
                for cfg in nics[n.id.lower()].ip_configs
                if cfg.subnet_id
            )
    return out
