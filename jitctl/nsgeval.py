"""Evaluate inbound NSG rules the way Azure does (pure logic, no I/O).

Inbound traffic meets the subnet NSG first, then the NIC NSG; both must allow. Within an NSG the
rules are taken by ascending priority and the first that matches decides; the default rules
(65000 AllowVNetInBound, 65001 AllowAzureLoadBalancerInBound, 65500 DenyAllInBound) come last.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from jitctl.model import Nsg, SecurityRule
from jitctl.nsgtags import (
    AZURE_LOAD_BALANCER,
    NOT_INTERNET,
    IPAddress,
    Network,
    in_internet,
    in_virtual_network,
    network,
    virtual_network,
)
from jitctl.parsing import EVERY_ADDRESS, INTERNET, wide_open

# Since May 2023 "MicrosoftDefenderForCloud-JITRule"; before, "SecurityCenter-JITRule".
# Deny rules use '_' separators, allow rules '-'; the integer can be negative.
JIT_RULE_NAME = re.compile(
    r"^(?:MicrosoftDefenderForCloud|SecurityCenter)-JITRule[_-]-?\d+[_-][0-9a-f]{32}$",
    re.IGNORECASE,
)
JIT_DESCRIPTION = re.compile(r"^(?:MDC|ASC) JIT Network Access rule", re.IGNORECASE)

_IPV4_END = 2**32

DEFAULT_INBOUND_RULES = (
    SecurityRule(
        "AllowVnetInBound",
        65000,
        "Allow",
        source_address_prefix="VirtualNetwork",
        destination_address_prefix="VirtualNetwork",
        destination_port_range="*",
        default=True,
    ),
    SecurityRule(
        "AllowAzureLoadBalancerInBound",
        65001,
        "Allow",
        source_address_prefix="AzureLoadBalancer",
        destination_address_prefix="*",
        destination_port_range="*",
        default=True,
    ),
    SecurityRule(
        "DenyAllInBound",
        65500,
        "Deny",
        source_address_prefix="*",
        destination_address_prefix="*",
        destination_port_range="*",
        default=True,
    ),
)


@functools.lru_cache(maxsize=16384)
def _address(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def is_jit_rule(rule: SecurityRule) -> bool:
    return bool(JIT_RULE_NAME.match(rule.name)) or bool(
        rule.description and JIT_DESCRIPTION.match(rule.description)
    )


@dataclass(frozen=True)
class Flow:
    """Inbound traffic to evaluate. vnet_prefixes stand for the VirtualNetwork service tag."""

    source_ip: str
    destination_ip: str
    port: int
    protocol: str = "Tcp"
    destination_asgs: tuple[str, ...] = ()
    vnet_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LevelVerdict:
    level: str  # "subnet" | "nic"
    nsg_id: str | None
    allowed: bool
    rule: SecurityRule | None  # the rule that decided; None when there is no NSG
    is_jit: bool = False
    preempted_jit_deny: SecurityRule | None = None  # the JIT deny the deciding rule precedes
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Evaluation:
    allowed: bool
    levels: tuple[LevelVerdict, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def protected(self) -> bool:
        """At least one NSG guards the path."""
        return any(v.nsg_id for v in self.levels)

    @property
    def by_jit(self) -> bool:
        """Access comes from a JIT allow rule on at least one level (so JIT gates it)."""
        return self.allowed and any(v.is_jit and v.allowed for v in self.levels if v.nsg_id)

    @property
    def bypassed(self) -> bool:
        """Access is allowed, an NSG guards the path, but no JIT rule decided: JIT is bypassed."""
        return self.allowed and self.protected and not self.by_jit


def _in_prefix(ip: IPAddress, prefix: str, flow: Flow, notes: list[str]) -> bool:
    p = prefix.strip()
    low = p.lower()
    kind = wide_open(p)
    if kind == EVERY_ADDRESS:
        return True
    if kind == INTERNET:
        return is_internet(ip, flow)
    if low == "virtualnetwork":
        return in_virtual_network(ip, flow.vnet_prefixes)
    if low == "azureloadbalancer":
        return ip in AZURE_LOAD_BALANCER
    try:
        return ip in network(p)
    except ValueError:
        notes.append(f"service tag '{p}' cannot be resolved offline; assumed not to match")
        return False


def is_internet(ip: IPAddress, flow: Flow | None = None) -> bool:
    """The Internet tag: outside the VNet and private ranges (documentation ranges count)."""
    return in_internet(ip, flow.vnet_prefixes if flow else ())


def source_within(source: str, allowed: Sequence[str]) -> bool:
    """Is a requested source (address, CIDR, or a wide-open spelling) inside one of a JIT
    port's allowed prefixes? '*' covers everything; 'Internet' covers public ranges and the
    Internet tag itself, not '*' (which also covers the virtual network)."""
    kinds = {wide_open(a) for a in allowed}
    if EVERY_ADDRESS in kinds:
        return True
    requested = wide_open(source)
    if requested is not None:
        return requested in kinds
    try:
        net = ipaddress.ip_network(source.strip(), strict=False)
    except ValueError:
        return False
    if (
        INTERNET in kinds
        and is_internet(net.network_address)
        and is_internet(net.broadcast_address)
    ):
        return True
    for a in allowed:
        try:
            if net.subnet_of(ipaddress.ip_network(a.strip(), strict=False)):  # type: ignore[arg-type]
                return True
        except (ValueError, TypeError):
            continue
    return False


def _deciding_networks(prefix: str, flow: Flow) -> tuple[Network, ...]:
    """The networks whose membership decides whether a source matches `prefix`, as
    _in_prefix reads it ('*' and a tag it cannot resolve: none, the answer never changes)."""
    p = prefix.strip()
    kind = wide_open(p)
    if kind == EVERY_ADDRESS:
        return ()
    if kind == INTERNET:
        return (*virtual_network(flow.vnet_prefixes), *NOT_INTERNET)
    if p.lower() == "virtualnetwork":
        return virtual_network(flow.vnet_prefixes)
    if p.lower() == "azureloadbalancer":
        return (AZURE_LOAD_BALANCER,)
    try:
        return (network(p),)
    except ValueError:
        return ()


def source_ranges(nsgs: Iterable[Nsg | None], flow: Flow) -> list[tuple[int, int]]:
    """The IPv4 source space cut into ranges (first, last address as integers) within which
    every source prefix of the NSGs' inbound rules, and the Internet tag, matches all addresses
    or none: for a flow that differs only in its source, one evaluation per range decides for
    the whole range (audit names every address a rule lets in, not a sample)."""
    edges = {0, _IPV4_END}
    prefixes = ["Internet"]
    for nsg in nsgs:
        for rule in inbound_rules(nsg) if nsg else ():
            prefixes += _listed(rule.source_address_prefix, rule.source_address_prefixes)
    for prefix in dict.fromkeys(prefixes):
        for net in _deciding_networks(prefix, flow):
            if net.version == 4:
                edges.update((int(net.network_address), int(net.broadcast_address) + 1))
    points = sorted(edges)
    return [(first, end - 1) for first, end in itertools.pairwise(points)]


def _in_ports(port: int, ranges: Iterable[str]) -> bool:
    for r in ranges:
        bounds = _port_range(r)
        if bounds is None or bounds[0] <= port <= bounds[1]:
            return True
    return False


@functools.lru_cache(maxsize=4096)  # a fleet's rules repeat a few ranges thousands of times
def _port_range(text: str) -> tuple[int, int] | None:
    """'22' -> (22, 22), '1024-65535' -> (1024, 65535); None for any port."""
    r = text.strip()
    if r in ("*", ""):
        return None
    low, _, high = r.partition("-")
    return int(low), int(high or low)


def _listed(single: str | None, many: Sequence[str]) -> list[str]:
    return list(many) if many else ([single] if single is not None else [])


def _limits_source_ports(rule: SecurityRule) -> bool:
    src_ports = _listed(rule.source_port_range, rule.source_port_ranges)
    return bool(src_ports) and not any(p.strip() in ("*", "0-65535") for p in src_ports)


def unjudged(rule: SecurityRule) -> tuple[str, ...]:
    """What of a rule's source the evaluation cannot judge offline, and so takes to match no
    one: source ports (a client's is unknown) and service tags it cannot resolve."""
    out = []
    if _limits_source_ports(rule):
        ports = _listed(rule.source_port_range, rule.source_port_ranges)
        out.append(f"source ports {', '.join(p.strip() for p in ports)}")
    for prefix in _listed(rule.source_address_prefix, rule.source_address_prefixes):
        p = prefix.strip()
        known = wide_open(p) or p.lower() in ("virtualnetwork", "azureloadbalancer")
        if not known and not _deciding_networks(p, Flow("0.0.0.0", "0.0.0.0", 0)):
            out.append(f"service tag {p}")
    return tuple(out)


def applies_to(rule: SecurityRule, port: int, protocol: str) -> bool:
    """Is it an inbound rule for this protocol and destination port (whatever the addresses)?"""
    if rule.direction.lower() != "inbound":
        return False
    if rule.protocol not in ("*", "Any") and rule.protocol.lower() != protocol.lower():
        return False
    return _in_ports(port, _listed(rule.destination_port_range, rule.destination_port_ranges))


def destination_matches(rule: SecurityRule, flow: Flow, notes: list[str]) -> bool:
    """Does the rule's destination (prefixes or application security groups) take in the
    flow's? It does not depend on the flow's source."""
    if rule.destination_asgs:
        return any(
            a.lower() in {x.lower() for x in flow.destination_asgs} for a in rule.destination_asgs
        )
    dst = _address(flow.destination_ip)
    dst_prefixes = _listed(rule.destination_address_prefix, rule.destination_address_prefixes)
    return any(
        p.lower() == "virtualnetwork" or _in_prefix(dst, p, flow, notes) for p in dst_prefixes
    )


@dataclass(frozen=True)
class FlowRule:
    """A rule as it reads a flow whatever the flow's source (read once, for every source
    audit tries): what it notes first, the source prefixes it takes (None: it matches no
    flow like this one), whether its destination takes the flow's in, and what that notes."""

    rule: SecurityRule
    notes: tuple[str, ...] = ()
    sources: tuple[str, ...] | None = None
    destination: bool = False
    destination_notes: tuple[str, ...] = ()
    allows: bool = False
    jit: bool = False

    def matches(self, source: IPAddress, flow: Flow, notes: list[str]) -> bool:
        notes.extend(self.notes)
        if self.sources is None or not any(
            _in_prefix(source, p, flow, notes) for p in self.sources
        ):
            return False
        notes.extend(self.destination_notes)
        return self.destination


def flow_rule(rule: SecurityRule, flow: Flow) -> FlowRule | None:
    """None: the rule matches no flow like this one, from any source, and notes nothing."""
    if not applies_to(rule, flow.port, flow.protocol):
        return None
    if _limits_source_ports(rule):
        note = f"rule {rule.name} limits source ports; the client's port is unknown, assumed not to match"
        return FlowRule(rule, (note,), allows=_allows(rule), jit=is_jit_rule(rule))
    if rule.source_asgs:
        return None  # an address outside Azure is in no application security group
    notes: list[str] = []
    destination = destination_matches(rule, flow, notes)
    sources = tuple(_listed(rule.source_address_prefix, rule.source_address_prefixes))
    return FlowRule(rule, (), sources, destination, tuple(notes), _allows(rule), is_jit_rule(rule))


def _allows(rule: SecurityRule) -> bool:
    return rule.access.lower() == "allow"


def inbound_rules(nsg: Nsg) -> list[SecurityRule]:
    """The rules Azure takes for inbound traffic, by priority: the NSG's, then its defaults."""
    defaults = nsg.default_rules or DEFAULT_INBOUND_RULES
    return sorted(
        (r for r in (*nsg.rules, *defaults) if r.direction.lower() == "inbound"),
        key=lambda r: r.priority,
    )


def _verdict(
    level: str, nsg: Nsg | None, rules: Sequence[FlowRule], source: IPAddress, flow: Flow
) -> LevelVerdict:
    if nsg is None:
        return LevelVerdict(level, None, True, None)
    notes: list[str] = []
    for i, read in enumerate(rules):
        if read.matches(source, flow, notes):
            preempted = None
            if read.allows:
                preempted = next(
                    (
                        r.rule
                        for r in rules[i + 1 :]
                        if r.jit and r.rule.access.lower() == "deny" and r.matches(source, flow, [])
                    ),
                    None,
                )
            return LevelVerdict(
                level,
                nsg.id,
                read.allows,
                read.rule,
                read.jit,
                preempted,
                tuple(dict.fromkeys(notes)),
            )
    return LevelVerdict(level, nsg.id, False, None, notes=tuple(dict.fromkeys(notes)))


def evaluator(
    subnet_nsg: Nsg | None, nic_nsg: Nsg | None, flow: Flow
) -> Callable[[IPAddress], Evaluation]:
    """evaluate() of the flow from a given source: the rules are read once for all that does
    not depend on the source (audit evaluates a path from every piece of the address space)."""
    levels = tuple(
        (level, nsg, tuple(r for r in (flow_rule(x, flow) for x in inbound_rules(nsg)) if r))
        if nsg
        else (level, None, ())
        for level, nsg in (("subnet", subnet_nsg), ("nic", nic_nsg))
    )

    def evaluate_from(source: IPAddress) -> Evaluation:
        if source.version != 4:
            raise ValueError("JIT access is IPv4 only")
        return _evaluation(
            tuple(_verdict(level, nsg, rules, source, flow) for level, nsg, rules in levels),
            flow.port,
        )

    return evaluate_from


def evaluate(subnet_nsg: Nsg | None, nic_nsg: Nsg | None, flow: Flow) -> Evaluation:
    """Subnet NSG first, then NIC NSG; both must allow."""
    return evaluator(subnet_nsg, nic_nsg, flow)(ipaddress.ip_address(flow.source_ip))


def _evaluation(levels: tuple[LevelVerdict, ...], port: int) -> Evaluation:
    result = Evaluation(all(v.allowed for v in levels), levels)
    warnings = [n for v in levels for n in v.notes]
    if not result.protected:
        warnings.append("no NSG guards this VM's NIC or subnet: nothing protects the port")
    elif result.bypassed:
        rules = ", ".join(
            f"{v.rule.name} (priority {v.rule.priority}, {v.level} NSG)"
            for v in levels
            if v.rule and v.nsg_id
        )
        warnings.append(
            f"JIT is bypassed for port {port}: access is allowed by {rules}, not by a JIT rule"
        )
    return Evaluation(result.allowed, levels, tuple(warnings))
