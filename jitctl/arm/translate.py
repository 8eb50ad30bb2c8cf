"""SDK models <-> jitctl dataclasses. Enums are read as open strings (Azure adds values)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from jitctl.arm import rows
from jitctl.model import (
    AccessRequest,
    DefenderPlan,
    DnatRule,
    Firewall,
    IpConfig,
    JitPolicy,
    Nic,
    NicRef,
    Nsg,
    Permission,
    PublicIp,
    SecurityRule,
    Subnet,
    Vm,
)


def _s(value: Any) -> Any:
    return getattr(value, "value", value)


def _id(ref: Any) -> str | None:
    return getattr(ref, "id", None) if ref is not None else None


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def vm_from_sdk(vm: Any) -> Vm:
    profile = getattr(vm, "network_profile", None)
    nics = tuple(
        NicRef(n.id, getattr(n, "primary", None))
        for n in (getattr(profile, "network_interfaces", None) or [])
    )
    tags = tuple(sorted((getattr(vm, "tags", None) or {}).items()))
    return Vm(id=vm.id, name=vm.name, location=vm.location, nics=nics, tags=tags)


def nic_from_sdk(nic: Any) -> Nic:
    configs = []
    for c in nic.ip_configurations or []:
        ip = c.private_ip_address
        configs.append(
            IpConfig(
                name=c.name,
                # One official example writes "172.20.2.16/28" here.
                private_ip=ip.split("/")[0] if ip else None,
                subnet_id=_id(c.subnet),
                public_ip_id=_id(c.public_ip_address),
                primary=bool(c.primary),
                asg_ids=tuple(a.id for a in (c.application_security_groups or [])),
            )
        )
    return Nic(id=nic.id, nsg_id=_id(nic.network_security_group), ip_configs=tuple(configs))


def subnet_from_sdk(subnet: Any) -> Subnet:
    prefixes = tuple(subnet.address_prefixes or ()) or (
        (subnet.address_prefix,) if subnet.address_prefix else ()
    )
    return Subnet(
        id=subnet.id, nsg_id=_id(subnet.network_security_group), address_prefixes=prefixes
    )


def rule_from_sdk(r: Any, default: bool = False) -> SecurityRule:
    return SecurityRule(
        name=r.name,
        priority=int(r.priority),
        access=_s(r.access),
        direction=_s(r.direction) or "Inbound",
        protocol=_s(r.protocol) or "*",
        source_address_prefix=r.source_address_prefix,
        source_address_prefixes=tuple(r.source_address_prefixes or ()),
        destination_address_prefix=r.destination_address_prefix,
        destination_address_prefixes=tuple(r.destination_address_prefixes or ()),
        source_port_range=r.source_port_range,
        source_port_ranges=tuple(r.source_port_ranges or ()),
        destination_port_range=r.destination_port_range,
        destination_port_ranges=tuple(r.destination_port_ranges or ()),
        source_asgs=tuple(a.id for a in (r.source_application_security_groups or [])),
        destination_asgs=tuple(a.id for a in (r.destination_application_security_groups or [])),
        description=r.description,
        default=default,
    )


def nsg_from_sdk(nsg: Any) -> Nsg:
    return Nsg(
        id=nsg.id,
        rules=tuple(rule_from_sdk(r) for r in (nsg.security_rules or [])),
        default_rules=tuple(rule_from_sdk(r, True) for r in (nsg.default_security_rules or [])),
    )


def public_ip_from_sdk(pip: Any) -> PublicIp:
    dns = getattr(pip, "dns_settings", None)
    return PublicIp(id=pip.id, ip_address=pip.ip_address, fqdn=getattr(dns, "fqdn", None))


def firewall_from_sdk(fw: Any) -> Firewall:
    rules = tuple(
        DnatRule(
            collection=c.name,
            name=r.name,
            sources=tuple(r.source_addresses or ()),
            destination_addresses=tuple(r.destination_addresses or ()),
            destination_ports=tuple(r.destination_ports or ()),
            protocols=tuple(str(_s(x)) for x in r.protocols or ()),
            translated_address=r.translated_address,
            translated_port=r.translated_port,
        )
        for c in fw.nat_rule_collections or []
        for r in c.rules or []
    )
    ips = tuple(c.private_ip_address for c in fw.ip_configurations or [] if c.private_ip_address)
    return Firewall(id=fw.id, private_ips=ips, dnat_rules=rules)


# Policies and requests have one reader, of their REST JSON (jitctl.arm.rows, which the big
# lists use): an SDK model is serialised back to that JSON first (one model: microseconds).
def request_from_sdk(r: Any) -> AccessRequest:
    return rows.request_from_json(r.serialize(keep_readonly=True))


def policy_from_sdk(p: Any) -> JitPolicy:
    return rows.policy_from_json(p.serialize(keep_readonly=True))


def defender_plan_from_sdk(pricing: Any) -> DefenderPlan:
    return DefenderPlan(str(_s(pricing.pricing_tier) or "Free"), pricing.sub_plan)


def permission_from_sdk(p: Any) -> Permission:
    return Permission(tuple(p.actions or ()), tuple(p.not_actions or ()))
