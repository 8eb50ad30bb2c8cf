"""The one interface services use to reach Azure; jitctl.arm implements it with the SDK clients."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from jitctl.ids import VmRef
from jitctl.model import (
    AccessRequest,
    DefenderPlan,
    Firewall,
    JitPolicy,
    Nic,
    Nsg,
    Permission,
    PublicIp,
    Subnet,
    Subscription,
    Vm,
)

T = TypeVar("T")


@dataclass(frozen=True)
class InitiatePort:
    number: int
    source: str
    end_time: datetime


class Gateway(Protocol):
    """What jitctl needs from Azure Resource Manager; one method is one ARM call (lists: per page)."""

    subscription_id: str

    def parallel(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Run independent calls side by side (bounded, throttled); results in order."""
        ...

    def get_vm(self, ref: VmRef) -> Vm: ...

    def get_nic(self, nic_id: str) -> Nic: ...

    def get_subnet(self, subnet_id: str) -> Subnet: ...

    def get_nsg(self, nsg_id: str) -> Nsg: ...

    def get_public_ip(self, public_ip_id: str) -> PublicIp: ...

    def delete_nsg_rule(self, nsg_id: str, rule_name: str) -> None:
        """Remove one security rule (a long-running delete, waited for). Azure has no call to
        end a JIT request early: the broker's revoke removes the allow rule JIT wrote, which
        needs Microsoft.Network/networkSecurityGroups/securityRules/delete. NotFound: gone."""
        ...

    def find_firewall(self, subscription_id: str, address: str) -> Firewall | None:
        """The Azure Firewall whose public IP has `address`, in any subscription the caller can
        read (one Resource Graph query; the public IPs of `subscription_id` when that fails),
        then one GET. None: no firewall the caller can see; Forbidden: it cannot be read."""
        ...

    def get_firewall(self, firewall_id: str) -> Firewall: ...

    def list_vms(self, subscription_id: str, resource_group: str | None = None) -> list[Vm]: ...

    def list_nics(self, subscription_id: str, resource_group: str | None = None) -> list[Nic]: ...

    def list_subnets(
        self, subscription_id: str, resource_group: str | None = None
    ) -> list[Subnet]: ...

    def list_subscriptions(self) -> list[Subscription]: ...

    def list_policies(
        self, subscription_id: str, resource_group: str | None = None
    ) -> list[JitPolicy]: ...

    def get_policy(
        self, subscription_id: str, resource_group: str, location: str, name: str
    ) -> JitPolicy | None: ...

    def put_policy(self, policy: JitPolicy) -> JitPolicy: ...

    def delete_policy(self, policy: JitPolicy) -> None: ...

    def initiate(
        self, policy: JitPolicy, vm_id: str, ports: list[InitiatePort], justification: str | None
    ) -> AccessRequest: ...

    def get_defender_plan(self, subscription_id: str) -> DefenderPlan: ...

    def list_permissions(self, subscription_id: str, resource_group: str) -> list[Permission]: ...
