"""What a NIC's NSG path lets in past JIT on a port, for `audit`: every source it admits, not a
sample.

The source space is cut where any rule on the path (subnet NSG, then NIC NSG) or the Internet
tag changes its answer (jitctl.nsgeval.source_ranges); within a range one address stands for
all, and verify's own evaluation (jitctl.nsgeval.evaluator, evaluate for many sources) of it
decides. The ranges a bypass admits are grouped by the rules that decide, level by level, and
named as Azure admins write sources: any address, Internet, or the real prefixes, less what
rules before them take.

The answer depends on the VM only through its path, so it is computed once per case (Memo):
the NSGs on the path (by id and content), the port, the VM's address where rules name it
alone (JIT's), what the other rules read of the destination, and the VNet's prefixes.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jitctl.model import Nic, Nsg, SecurityRule, Subnet
from jitctl.nsgeval import (
    Evaluation,
    Flow,
    applies_to,
    destination_matches,
    evaluator,
    flow_rule,
    inbound_rules,
    is_internet,
    is_jit_rule,
    unjudged,
)
from jitctl.nsgeval import source_ranges as cut_sources
from jitctl.parsing import EVERY_ADDRESS, INTERNET

Range = tuple[int, int]  # first and last IPv4 address, as integers
EVERYWHERE: tuple[Range, ...] = ((0, 2**32 - 1),)
SHOWN = 4  # prefixes a message names before "and N more" (the evidence has them all)


@dataclass(frozen=True)
class Exposure:
    """One way into a port past JIT: the rules that decide, and every source they let in:
    `sources` ('*', 'Internet' or CIDRs) less `excluded` (CIDRs)."""

    port: int
    evaluation: Evaluation  # of one address it admits: the deciding rule of each level
    sources: tuple[str, ...]
    excluded: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """'any address', 'Internet', the prefixes; '... except ...' when rules took some."""
        text = _names(self.sources)
        return f"{text} except {_names(self.excluded)}" if self.excluded else text


def _names(prefixes: Sequence[str]) -> str:
    words = {EVERY_ADDRESS: "any address", INTERNET: "Internet"}
    shown = [words.get(p, p) for p in prefixes[:SHOWN]]
    more = len(prefixes) - SHOWN
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


# --- sets of addresses as sorted, disjoint ranges ----------------------------------------


def _merged(ranges: Iterable[Range]) -> list[Range]:
    out: list[Range] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def _less(ranges: Sequence[Range], taken: Sequence[Range]) -> list[Range]:
    out = []
    for first, last in ranges:
        for t_first, t_last in taken:
            if t_last < first or t_first > last:
                continue
            if t_first > first:
                out.append((first, t_first - 1))
            first = t_last + 1
            if first > last:
                break
        if first <= last:
            out.append((first, last))
    return out


def _cidrs(ranges: Sequence[Range]) -> tuple[str, ...]:
    v4 = ipaddress.IPv4Address
    return tuple(
        str(net)
        for first, last in ranges
        for net in ipaddress.summarize_address_range(v4(first), v4(last))
    )


def named(
    admitted: Sequence[Range], internet: Sequence[Range]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(sources, excluded) naming `admitted` exactly in the fewest prefixes: the real ones, or
    any address / Internet less some. On a tie a wide name with nothing taken out wins, then
    the real prefixes."""
    admitted = _merged(admitted)
    candidates: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
        ((EVERY_ADDRESS,), _cidrs(_less(EVERYWHERE, admitted)))
    ]
    if not _less(admitted, internet):  # all of it is Internet
        candidates.append(((INTERNET,), _cidrs(_less(internet, admitted))))
    candidates.append((_cidrs(admitted), ()))

    def cost(i: int) -> tuple[int, bool, bool, int]:
        sources, excluded = candidates[i]
        return len(sources) + len(excluded), bool(excluded), i == len(candidates) - 1, i

    return candidates[min(range(len(candidates)), key=cost)]


# --- the path -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unjudged:
    """An allow rule that is not JIT's, on the port, whose source the evaluation cannot judge
    offline (a service tag, source ports): it may let the Internet in, or not."""

    port: int
    level: str  # "subnet" | "nic"
    nsg_id: str
    rule: SecurityRule
    reasons: tuple[str, ...]


Case = tuple[tuple[Exposure, ...], tuple[Unjudged, ...]]  # what one path lets in on one port


def path_exposures(subnet_nsg: Nsg | None, nic_nsg: Nsg | None, flow: Flow) -> Case:
    """Each set of rules on the path that lets Internet addresses past JIT to the flow's
    destination and port (whatever the flow's source), with all it lets in; and the rules
    that may."""
    openers = [r for n in (subnet_nsg, nic_nsg) if n for r in n.rules if _opens(r)]
    found = _through(flow.port, subnet_nsg, nic_nsg, openers, flow)
    doubts = []
    for level, nsg, other in (("subnet", subnet_nsg, nic_nsg), ("nic", nic_nsg, subnet_nsg)):
        if nsg is None or (other is not None and not any(_opens(r) for r in other.rules)):
            continue  # the other NSG lets no Internet address in past JIT on this port
        for rule in nsg.rules:
            reasons = unjudged(rule) if _opens(rule) else ()
            if reasons:
                doubts.append(Unjudged(flow.port, level, nsg.id, rule, reasons))
    return tuple(found), tuple(doubts)


def _on_port(rule: SecurityRule, port: int) -> bool:
    """Can the rule match a TCP flow from outside Azure to the port (whatever the addresses)?
    One from an application security group cannot: such an address is in none."""
    return applies_to(rule, port, "Tcp") and not rule.source_asgs


def _opens(rule: SecurityRule) -> bool:
    return rule.access.lower() == "allow" and not is_jit_rule(rule)


@dataclass(frozen=True)
class _Index:
    """An NSG read for the checks of many VMs: its rules that name only single destination
    addresses (JIT's, one per VM of a shared NSG) are indexed by that address."""

    nsg: Nsg
    openers: tuple[SecurityRule, ...]  # allow rules not JIT's: only such open a port past JIT
    general: tuple[SecurityRule, ...]
    by_address: Mapping[str, tuple[SecurityRule, ...]]
    # the general rules that may match on a port, found when a VM's check first asks
    on_port: dict[int, tuple[SecurityRule, ...]] = field(default_factory=dict, compare=False)

    def opens(self, port: int) -> bool:
        return any(_on_port(r, port) for r in self.openers)

    def at(self, address: str, port: int) -> tuple[Nsg, bool]:
        """The NSG less the rules that match no TCP flow to `address` and `port` whatever its
        source (evaluating it decides as the whole NSG does); and whether rules for that
        address alone are in it (if not, it is the same for every address)."""
        if port not in self.on_port:
            self.on_port[port] = tuple(r for r in self.general if _on_port(r, port))
        own = tuple(r for r in self.by_address.get(address, ()) if _on_port(r, port))
        return dataclasses.replace(self.nsg, rules=self.on_port[port] + own), bool(own)


def _index(nsg: Nsg) -> _Index:
    general: list[SecurityRule] = []
    by_address: dict[str, list[SecurityRule]] = {}
    for rule in nsg.rules:
        listed = rule.destination_address_prefixes or (rule.destination_address_prefix or "*",)
        keys = [_address_key(p) for p in listed]
        if rule.destination_asgs or None in keys:
            general.append(rule)
            continue
        for key in dict.fromkeys(keys):
            by_address.setdefault(str(key), []).append(rule)
    return _Index(
        nsg,
        tuple(r for r in nsg.rules if _opens(r)),
        tuple(general),
        {k: tuple(v) for k, v in by_address.items()},
    )


@functools.lru_cache(maxsize=65536)  # JIT's rules name each VM's address, on every port
def _address_key(prefix: str) -> str | None:
    """The one address a destination prefix names ('10.0.0.4', '10.0.0.4/32'), else None."""
    text, _, length = prefix.strip().partition("/")
    try:  # an address parses in a third of the time a network takes
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if length and length != str(address.max_prefixlen):
        try:
            net = ipaddress.ip_network(prefix.strip(), strict=False)
        except ValueError:
            return None
        return str(net.network_address) if net.num_addresses == 1 else None
    return str(address)


@dataclass
class Memo:
    """What the checks of many VMs reuse: each NSG's index, and the answer for each distinct
    case (the NSGs on the path, the port, what of the destination their rules read), which
    `case` computes once."""

    case: Callable[[Nsg | None, Nsg | None, Flow], Case] = path_exposures
    _seen: dict[str, tuple[Nsg, int]] = field(default_factory=dict, init=False, repr=False)
    _serials: Iterator[int] = field(default_factory=itertools.count, init=False, repr=False)
    _indexes: dict[int, _Index] = field(default_factory=dict, init=False, repr=False)
    _opens: dict[int, bool] = field(default_factory=dict, init=False, repr=False)
    _cases: dict[tuple[Any, ...], Case] = field(default_factory=dict, init=False, repr=False)

    def _key(self, nsg: Nsg) -> int:
        """The NSG's id and its content: an NSG read again with other rules gets a new key,
        so that it is never answered from what its old rules said."""
        low = nsg.id.lower()
        seen = self._seen.get(low)
        if seen is None or (seen[0] is not nsg and seen[0] != nsg):
            seen = self._seen[low] = (nsg, next(self._serials))
        return seen[1]

    def may_open(self, nsg: Nsg | None) -> bool:
        """Has the NSG an inbound allow rule that is not JIT's, on any port?"""
        if nsg is None:
            return False
        key = self._key(nsg)
        if key not in self._opens:
            self._opens[key] = any(
                _opens(r) and r.direction.lower() == "inbound" for r in nsg.rules
            )
        return self._opens[key]

    def index(self, nsg: Nsg) -> _Index:
        key = self._key(nsg)
        if key not in self._indexes:
            self._indexes[key] = _index(nsg)
        return self._indexes[key]

    def answer(self, nsgs: Sequence[Nsg | None], address: str, port: int, flow: Flow) -> Case:
        """What the path lets in on the port, computed once for every VM that shares the case."""
        views = [self.index(n).at(address, port) if n else (None, False) for n in nsgs]
        subnet_nsg, nic_nsg = (nsg for nsg, _ in views)
        key = (
            tuple(self._key(n) if n else None for n in nsgs),
            tuple(address if own else "" for _, own in views),
            port,
            flow.vnet_prefixes,  # the VirtualNetwork and Internet tags read them
            _destination((subnet_nsg, nic_nsg), flow),
        )
        if key not in self._cases:
            self._cases[key] = self.case(subnet_nsg, nic_nsg, flow)
        return self._cases[key]


def _destination(
    nsgs: Iterable[Nsg | None], flow: Flow
) -> tuple[tuple[bool, tuple[str, ...]], ...]:
    """All that the rules read of the flow's destination: which rules take it in (with what
    they note on the way); two VMs that agree on this are judged alike."""
    out = []
    for nsg in nsgs:
        for rule in inbound_rules(nsg) if nsg else ():
            notes: list[str] = []
            out.append((destination_matches(rule, flow, notes), tuple(notes)))
    return tuple(out)


def exposures(
    nic: Nic,
    subnet: Subnet | None,
    nsgs: tuple[Nsg | None, Nsg | None],
    ports: Sequence[int],
    memo: Memo,
) -> tuple[list[Exposure], list[Unjudged]]:
    """Per port, each set of rules that lets Internet addresses past JIT, with all it lets in
    (its VNet addresses too: a rule from any address is named so); and the rules that may."""
    cfg = nic.primary_ip_config
    if cfg is None or not cfg.private_ip or not any(memo.may_open(n) for n in nsgs):
        return [], []  # an Internet address gets in by an allow rule: JIT's, or none past JIT
    prefixes = subnet.address_prefixes if subnet else ()
    address = _address_key(cfg.private_ip) or ""
    out: list[Exposure] = []
    doubts: list[Unjudged] = []
    for port in ports:
        if not any(n and memo.index(n).opens(port) for n in nsgs):
            continue
        flow = Flow("0.0.0.0", cfg.private_ip, port, "Tcp", cfg.asg_ids, prefixes)
        found, unsure = memo.answer(nsgs, address, port, flow)
        out += found
        doubts += unsure
    return out, doubts


def _through(
    port: int, subnet_nsg: Nsg | None, nic_nsg: Nsg | None, openers: list[SecurityRule], flow: Flow
) -> list[Exposure]:
    cut = cut_sources((subnet_nsg, nic_nsg), flow)
    evaluate_from = evaluator(subnet_nsg, nic_nsg, flow)
    opening = [r for r in (flow_rule(o, flow) for o in openers) if r]
    groups: dict[tuple[Any, ...], tuple[Evaluation, list[Range]]] = {}
    for first, last in cut:
        source = ipaddress.IPv4Address(first)
        if not any(r.matches(source, flow, []) for r in opening):
            continue  # past JIT, only a rule that is not JIT's lets an Internet address in
        ev = evaluate_from(source)
        if ev.bypassed:
            rules = tuple((v.level, v.nsg_id, v.rule.name) for v in ev.levels if v.rule)
            seen, ranges = groups.get(rules, (ev, []))
            groups[rules] = (seen, [*ranges, (first, last)])
    if not groups:
        return []
    internet = _merged(r for r in cut if is_internet(ipaddress.IPv4Address(r[0]), flow))
    out = []
    for ev, ranges in groups.values():
        if _less(_merged(ranges), internet) != _merged(ranges):  # some of it is Internet
            sources, excluded = named(ranges, internet)
            out.append(Exposure(port, ev, sources, excluded))
    return out
