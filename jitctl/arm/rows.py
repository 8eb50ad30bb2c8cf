"""ARM's JSON <-> jitctl's dataclasses, without SDK models.

One reader per resource, for the rows of Resource Graph (jitctl.arm.graph: projected columns,
nested values as JSON text) and for the items of ARM lists (jitctl.arm.listing: the resource's
own JSON, wrapped into the same row shape by the `*_from_arm` functions). JIT policies are read
from their REST JSON (`policy_from_json`), leniently where the service is: a port number may
come as a string, and a null list beside a single prefix means the single prefix; and
written (`policy_to_json`, the PUT body).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from jitctl.ids import name_of, segments
from jitctl.model import (
    AccessRequest,
    GrantPort,
    GrantVm,
    IpConfig,
    JitPolicy,
    Nic,
    NicRef,
    Nsg,
    PolicyVm,
    PortRule,
    SecurityRule,
    Subnet,
    Vm,
)
from jitctl.parsing import format_iso_duration, parse_iso_duration


def _ref(value: Any) -> str | None:
    return value.get("id") if isinstance(value, dict) else None


def _nested(row: dict[str, Any], column: str) -> Any:
    """A projected value: JSON text (tostring) or already an object."""
    value = row.get(column)
    if isinstance(value, str):
        return json.loads(value) if value else None
    return value


def vm_from_row(row: dict[str, Any]) -> Vm:
    nics = tuple(
        NicRef(n["id"], (n.get("properties") or {}).get("primary"))
        for n in _nested(row, "nics") or []
    )
    tags = tuple(sorted((row.get("tags") or {}).items()))
    return Vm(id=row["id"], name=row["name"], location=row["location"], nics=nics, tags=tags)


def nic_from_row(row: dict[str, Any]) -> Nic:
    configs = []
    for c in _nested(row, "ipConfigurations") or []:
        cp = c.get("properties") or {}
        ip = cp.get("privateIPAddress")
        configs.append(
            IpConfig(
                name=c.get("name", ""),
                private_ip=ip.split("/")[0] if ip else None,
                subnet_id=_ref(cp.get("subnet")),
                public_ip_id=_ref(cp.get("publicIPAddress")),
                primary=bool(cp.get("primary")),
                asg_ids=tuple(a["id"] for a in cp.get("applicationSecurityGroups") or []),
            )
        )
    return Nic(id=row["id"], nsg_id=row.get("nsg") or None, ip_configs=tuple(configs))


def subnets_from_row(row: dict[str, Any]) -> list[Subnet]:
    out = []
    for s in _nested(row, "subnets") or []:
        sp = s.get("properties") or {}
        prefixes = tuple(sp.get("addressPrefixes") or ()) or (
            (sp["addressPrefix"],) if sp.get("addressPrefix") else ()
        )
        subnet_id = s.get("id") or f"{row['id']}/subnets/{s.get('name')}"
        out.append(Subnet(subnet_id, _ref(sp.get("networkSecurityGroup")), prefixes))
    return out


def _rule(r: dict[str, Any], default: bool) -> SecurityRule:
    p = r.get("properties") or {}
    return SecurityRule(
        name=r.get("name", ""),
        priority=int(p.get("priority", 0)),
        access=p.get("access", ""),
        direction=p.get("direction") or "Inbound",
        protocol=p.get("protocol") or "*",
        source_address_prefix=p.get("sourceAddressPrefix"),
        source_address_prefixes=tuple(p.get("sourceAddressPrefixes") or ()),
        destination_address_prefix=p.get("destinationAddressPrefix"),
        destination_address_prefixes=tuple(p.get("destinationAddressPrefixes") or ()),
        source_port_range=p.get("sourcePortRange"),
        source_port_ranges=tuple(p.get("sourcePortRanges") or ()),
        destination_port_range=p.get("destinationPortRange"),
        destination_port_ranges=tuple(p.get("destinationPortRanges") or ()),
        source_asgs=tuple(a["id"] for a in p.get("sourceApplicationSecurityGroups") or []),
        destination_asgs=tuple(
            a["id"] for a in p.get("destinationApplicationSecurityGroups") or []
        ),
        description=p.get("description"),
        default=default,
    )


def nsg_from_row(row: dict[str, Any]) -> Nsg:
    return Nsg(
        id=row["id"], rules=tuple(_rule(r, False) for r in _nested(row, "securityRules") or [])
    )


# --- ARM list items (a resource's own JSON) in the row shape --------------------------------


def _props(item: dict[str, Any]) -> dict[str, Any]:
    return item.get("properties") or {}


def vm_from_arm(item: dict[str, Any]) -> Vm:
    profile = _props(item).get("networkProfile") or {}
    return vm_from_row({**item, "nics": profile.get("networkInterfaces") or []})


def nic_from_arm(item: dict[str, Any]) -> Nic:
    p = _props(item)
    return nic_from_row(
        {
            "id": item["id"],
            "nsg": _ref(p.get("networkSecurityGroup")),
            "ipConfigurations": p.get("ipConfigurations") or [],
        }
    )


def subnets_from_arm(vnet: dict[str, Any]) -> list[Subnet]:
    return subnets_from_row({"id": vnet["id"], "subnets": _props(vnet).get("subnets") or []})


# --- JIT policies (REST JSON, 2020-01-01) ------------------------------------------------------

_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d)?)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$", re.I)


def iso_time(text: Any) -> datetime | None:
    """An ISO 8601 time as ARM writes it (up to 7 fraction digits, 'Z'), in UTC when no offset."""
    if isinstance(text, datetime) or text is None:
        return text
    match = _ISO.match(str(text).strip())
    if not match:
        raise ValueError(f"not an ISO 8601 time: {text!r}")
    base, fraction, zone = match.groups()
    value = datetime.fromisoformat(base + (f".{(fraction + '000000')[:6]}" if fraction else ""))
    if zone and zone.upper() != "Z":
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[-2:])
        offset = timezone(sign * timedelta(hours=hours, minutes=minutes))
        return value.replace(tzinfo=offset).astimezone(timezone.utc)
    return value.replace(tzinfo=timezone.utc)


def _number(value: Any) -> int:
    return int(str(value).strip()) if isinstance(value, str) else int(value)


def _port_rule(p: dict[str, Any]) -> PortRule:
    prefixes = p.get("allowedSourceAddressPrefixes")
    return PortRule(
        number=_number(p["number"]),
        protocol=p.get("protocol") or "*",
        max_duration=parse_iso_duration(p.get("maxRequestAccessDuration") or "PT3H"),
        allowed_source_address_prefix=p.get("allowedSourceAddressPrefix"),
        allowed_source_address_prefixes=tuple(prefixes) if prefixes else None,
    )


def request_from_json(r: dict[str, Any]) -> AccessRequest:
    vms = []
    for v in r.get("virtualMachines") or []:
        ports = tuple(
            GrantPort(
                number=_number(p["number"]),
                source=p.get("allowedSourceAddressPrefix")
                or ",".join(p.get("allowedSourceAddressPrefixes") or []),
                end_time=iso_time(p.get("endTimeUtc")),  # type: ignore[arg-type]
                status=p.get("status"),
                status_reason=p.get("statusReason"),
                mapped_port=_number(p["mappedPort"]) if p.get("mappedPort") else None,
            )
            for p in v.get("ports") or []
        )
        vms.append(GrantVm(id=v["id"], ports=ports))
    return AccessRequest(
        start_time=iso_time(r.get("startTimeUtc")),
        requestor=r.get("requestor"),
        justification=r.get("justification"),
        vms=tuple(vms),
    )


def policy_from_json(p: dict[str, Any]) -> JitPolicy:
    seg = segments(p["id"])
    props = _props(p)
    return JitPolicy(
        subscription_id=seg.get("subscriptions", ""),
        resource_group=seg.get("resourcegroups", ""),
        location=seg.get("locations") or p.get("location") or "",
        name=name_of(p["id"]),
        vms=tuple(
            PolicyVm(
                id=v["id"],
                ports=tuple(_port_rule(x) for x in v.get("ports") or []),
                public_ip_address=v.get("publicIpAddress"),
            )
            for v in props.get("virtualMachines") or []
        ),
        requests=tuple(request_from_json(r) for r in props.get("requests") or []),
        kind=p.get("kind"),
        provisioning_state=props.get("provisioningState"),
    )


def policy_to_json(policy: JitPolicy) -> dict[str, Any]:
    """The PUT body. The request history is not sent: it is the service's record, and echoing
    a stale copy could only lose entries added since our read. Azure takes one of the single
    prefix and the list per port (XOR)."""

    def port(p: PortRule) -> dict[str, Any]:
        out: dict[str, Any] = {"number": p.number, "protocol": p.protocol}
        if p.allowed_source_address_prefixes:
            out["allowedSourceAddressPrefixes"] = list(p.allowed_source_address_prefixes)
        elif p.allowed_source_address_prefix is not None:
            out["allowedSourceAddressPrefix"] = p.allowed_source_address_prefix
        out["maxRequestAccessDuration"] = format_iso_duration(p.max_duration)
        return out

    def vm(v: PolicyVm) -> dict[str, Any]:
        out: dict[str, Any] = {"id": v.id, "ports": [port(p) for p in v.ports]}
        if v.public_ip_address is not None:
            out["publicIpAddress"] = v.public_ip_address
        return out

    body: dict[str, Any] = {"properties": {"virtualMachines": [vm(v) for v in policy.vms]}}
    if policy.kind is not None:
        body["kind"] = policy.kind
    return body
