"""jitctl's own view of Azure resources: frozen dataclasses the adapter translates SDK models into."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from jitctl.ids import policy_id, same_id


@dataclass(frozen=True)
class PortRule:
    """One port of a VM in a JIT policy. Exactly one of prefix / prefixes is set (Azure's XOR)."""

    number: int
    protocol: str = "*"
    max_duration: timedelta = timedelta(hours=3)
    allowed_source_address_prefix: str | None = "*"
    allowed_source_address_prefixes: tuple[str, ...] | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        if self.allowed_source_address_prefixes:
            return self.allowed_source_address_prefixes
        return (self.allowed_source_address_prefix or "*",)


@dataclass(frozen=True)
class PolicyVm:
    id: str
    ports: tuple[PortRule, ...]
    public_ip_address: str | None = None

    def port(self, number: int) -> PortRule | None:
        return next((p for p in self.ports if p.number == number), None)


@dataclass(frozen=True)
class GrantPort:
    number: int
    source: str
    end_time: datetime
    status: str
    status_reason: str | None = None
    mapped_port: int | None = None


@dataclass(frozen=True)
class GrantVm:
    id: str
    ports: tuple[GrantPort, ...]


@dataclass(frozen=True)
class AccessRequest:
    """One entry of a policy's request history (also what initiate answers)."""

    start_time: datetime | None
    requestor: str | None
    justification: str | None
    vms: tuple[GrantVm, ...]


@dataclass(frozen=True)
class JitPolicy:
    subscription_id: str
    resource_group: str
    location: str
    name: str
    vms: tuple[PolicyVm, ...] = ()
    requests: tuple[AccessRequest, ...] = ()
    kind: str | None = "Basic"
    provisioning_state: str | None = None

    @property
    def id(self) -> str:
        return policy_id(self.subscription_id, self.resource_group, self.location, self.name)

    def vm(self, vm_id: str) -> PolicyVm | None:
        return next((v for v in self.vms if same_id(v.id, vm_id)), None)


@dataclass(frozen=True)
class SecurityRule:
    name: str
    priority: int
    access: str  # Allow | Deny
    direction: str = "Inbound"
    protocol: str = "*"
    source_address_prefix: str | None = None
    source_address_prefixes: tuple[str, ...] = ()
    destination_address_prefix: str | None = None
    destination_address_prefixes: tuple[str, ...] = ()
    source_port_range: str | None = "*"
    source_port_ranges: tuple[str, ...] = ()
    destination_port_range: str | None = None
    destination_port_ranges: tuple[str, ...] = ()
    source_asgs: tuple[str, ...] = ()
    destination_asgs: tuple[str, ...] = ()
    description: str | None = None
    default: bool = False


@dataclass(frozen=True)
class Nsg:
    id: str
    rules: tuple[SecurityRule, ...]
    default_rules: tuple[SecurityRule, ...] = ()

    @property
    def name(self) -> str:
        return self.id.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class IpConfig:
    name: str
    private_ip: str | None
    subnet_id: str | None
    public_ip_id: str | None = None
    primary: bool = False
    asg_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Nic:
    id: str
    nsg_id: str | None
    ip_configs: tuple[IpConfig, ...]

    @property
    def primary_ip_config(self) -> IpConfig | None:
        return next((c for c in self.ip_configs if c.primary), None) or next(
            iter(self.ip_configs), None
        )


@dataclass(frozen=True)
class Subnet:
    id: str
    nsg_id: str | None
    address_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NicRef:
    id: str
    primary: bool | None = None


@dataclass(frozen=True)
class Vm:
    id: str
    name: str
    location: str
    nics: tuple[NicRef, ...] = field(default_factory=tuple)
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def primary_nic(self) -> NicRef | None:
        return next((n for n in self.nics if n.primary), None) or next(iter(self.nics), None)


@dataclass(frozen=True)
class PublicIp:
    id: str
    ip_address: str | None
    fqdn: str | None = None


@dataclass(frozen=True)
class Subscription:
    id: str  # the subscription id (a GUID), not the resource id
    name: str
    state: str = "Enabled"


@dataclass(frozen=True)
class DefenderPlan:
    """A subscription's Defender for Servers pricing (Microsoft.Security/pricings/VirtualMachines)."""

    tier: str  # Free | Standard
    sub_plan: str | None = None  # P1 | P2 (a Standard pricing without one is the older P2)

    @property
    def has_jit(self) -> bool:
        """JIT needs Defender for Servers Plan 2."""
        return self.tier.lower() == "standard" and (self.sub_plan or "P2").upper() == "P2"


@dataclass(frozen=True)
class Permission:
    """One entry of the caller's effective permissions at a scope."""

    actions: tuple[str, ...]
    not_actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class DnatRule:
    """A DNAT rule of an Azure Firewall's NAT rule collection (classic rules)."""

    collection: str
    name: str
    sources: tuple[str, ...]
    destination_addresses: tuple[str, ...]
    destination_ports: tuple[str, ...]
    protocols: tuple[str, ...]
    translated_address: str | None
    translated_port: str | None


@dataclass(frozen=True)
class Firewall:
    """An Azure Firewall in front of VMs: its private addresses and its DNAT rules."""

    id: str
    private_ips: tuple[str, ...]
    dnat_rules: tuple[DnatRule, ...]

    @property
    def name(self) -> str:
        return self.id.rstrip("/").rsplit("/", 1)[-1]
