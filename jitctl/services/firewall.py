"""A VM behind Azure Firewall: is there a DNAT rule that lets the source in?

For such a VM the JIT policy names the firewall's public address (`publicIpAddress`), and a
request's ports get a `mappedPort`: JIT writes a DNAT rule in the firewall's `MDC-JIT` NAT rule
collection (formerly `ASC-JIT`) from the requested source to the firewall's address and the
mapped port, translated to the VM's private address and the port. The firewall also translates
the source to one of its own private addresses (Azure Firewall NAT behaviours, Microsoft's
network security blog, 2023), so the VM's NSGs never see the requester's address: an NSG
verdict for the requester proves nothing there, and jitctl judges by the DNAT rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from jitctl.gateway import Gateway
from jitctl.ids import VmRef
from jitctl.model import DnatRule, Firewall
from jitctl.nsgeval import source_within

JIT_COLLECTIONS = ("mdc-jit", "asc-jit")


@dataclass(frozen=True)
class FirewallVerdict:
    """The firewall's answer for one port: the DNAT rule that lets the source in, if any."""

    address: str  # the firewall's public address, as the policy names it
    firewall_id: str | None  # None: no Azure Firewall has that address
    rule: DnatRule | None

    @property
    def allowed(self) -> bool:
        return self.rule is not None

    @property
    def by_jit(self) -> bool:
        return self.rule is not None and self.rule.collection.lower() in JIT_COLLECTIONS

    @property
    def mapped_port(self) -> int | None:
        ports = self.rule.destination_ports if self.rule else ()
        return int(ports[0]) if ports and ports[0].isdigit() else None

    def problem(self, port: int, source: str, private_ip: str) -> str:
        if self.firewall_id is None:
            return (
                f"no Azure Firewall has the address {self.address} that the JIT policy names "
                f"for port {port}"
            )
        name = self.firewall_id.rstrip("/").rsplit("/", 1)[-1]
        return (
            f"no DNAT rule of Azure Firewall {name} ({self.address}) lets {source} in to "
            f"{private_ip}:{port}"
        )


def _port_in(port: str, wanted: int) -> bool:
    low, _, high = port.strip().partition("-")
    if port.strip() == "*":
        return True
    return low.isdigit() and int(low) <= wanted <= int(high if high.isdigit() else low)


def dnat_verdict(
    fw: Firewall | None, address: str, source: str, private_ip: str, port: int
) -> FirewallVerdict:
    """The first DNAT rule (JIT's collections first) from `source` to the firewall's `address`
    that translates to `private_ip`:`port` over TCP."""
    if fw is None:
        return FirewallVerdict(address, None, None)
    ordered = sorted(fw.dnat_rules, key=lambda r: r.collection.lower() not in JIT_COLLECTIONS)
    for rule in ordered:
        if (
            (rule.translated_address or "").strip() == private_ip
            and (rule.translated_port or "").strip() == str(port)
            and any(a.strip() in (address, "*") for a in rule.destination_addresses)
            and any(p.upper() in ("TCP", "ANY") for p in rule.protocols)
            and source_within(source, list(rule.sources))
        ):
            return FirewallVerdict(address, fw.id, rule)
    return FirewallVerdict(address, fw.id, None)


def firewall_address(gw: Gateway, ref: VmRef) -> str | None:
    """The Azure Firewall address a JIT policy names for the VM, if one does (one list call)."""
    from jitctl.services.reads import policies_of_vm

    return next(
        (
            v.public_ip_address
            for p in policies_of_vm(gw, ref)
            if (v := p.vm(ref.id)) and v.public_ip_address
        ),
        None,
    )
