"""Reading a fleet: many subscriptions at once, from Azure Resource Graph (seconds old) plus the
JIT policies (read from Microsoft.Security, which Resource Graph does not index).

Resource Graph lags the resources by seconds to minutes: use it for inventories and audits,
never where freshness matters (waiting for a rule, verifying right after a request).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from jitctl.model import JitPolicy, Nic, Nsg, Subnet, Subscription, Vm


@dataclass(frozen=True)
class Inventory:
    """Every VM of some subscriptions with what guards it; maps are keyed by lower-cased id."""

    subscriptions: tuple[str, ...]
    vms: tuple[Vm, ...]
    nics: Mapping[str, Nic] = field(default_factory=dict)
    subnets: Mapping[str, Subnet] = field(default_factory=dict)
    nsgs: Mapping[str, Nsg] = field(default_factory=dict)
    policies: tuple[JitPolicy, ...] = ()
    public_ips: Mapping[str, str] = field(default_factory=dict)  # id -> address (allocated)

    def nic(self, nic_id: str | None) -> Nic | None:
        return self.nics.get(nic_id.lower()) if nic_id else None

    def subnet(self, subnet_id: str | None) -> Subnet | None:
        return self.subnets.get(subnet_id.lower()) if subnet_id else None

    def nsg(self, nsg_id: str | None) -> Nsg | None:
        return self.nsgs.get(nsg_id.lower()) if nsg_id else None


class FleetGateway(Protocol):
    """Fleet reads; a method makes a bounded number of ARM calls, whatever the VM count."""

    def subscriptions(self) -> list[Subscription]:
        """The enabled subscriptions the credential sees."""
        ...

    def inventory(self, subscription_ids: Sequence[str]) -> Inventory:
        """VMs, NICs, subnets and NSGs from Resource Graph, with the JIT policies."""
        ...

    def policies(self, subscription_ids: Sequence[str]) -> list[JitPolicy]:
        """Every JIT policy of the subscriptions: one list per subscription, in parallel."""
        ...
