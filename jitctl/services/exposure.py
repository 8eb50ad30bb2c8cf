"""What a NIC's NSG path lets in past JIT on a port, for `audit`: every source it admits, not a
sample.

The source space is cut where any rule on the path (subnet NSG, then NIC NSG) or the Internet
tag changes its answer (jitctl.nsgeval.source_ranges); within a range one address stands for
all, and verify's own evaluation (jitctl.nsgeval.evaluate) of it decides. The ranges a bypass
admits are grouped by the rules that decide, level by level, and named as Azure admins write
sources: any address, Internet, or the real prefixes, less what rules before them take.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jitctl.model import Nic, Nsg, SecurityRule, Subnet
from jitctl.nsgeval import (
    Evaluation,
    Flow,
    applies_to,
    evaluate,
    is_internet,
    is_jit_rule,
    rule_matches,
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


@dataclass(frozen=True)
class _PortView:
    """An NSG less the rules that match no TCP flow to a port whatever its source and
    destination: evaluating it decides as the whole NSG does. Its rules that name only single
    destination addresses (JIT's, one per VM of a shared NSG) are indexed by that address."""

    nsg: Nsg
    openers: bool  # has an allow rule that is not JIT's (only such opens a port past JIT)
    general: tuple[SecurityRule, ...]
    by_address: Mapping[str, tuple[SecurityRule, ...]]

    def at(self, destination: str) -> Nsg:
        """Less the rules for other single addresses too (a fraction of JIT's on a shared NSG)."""
        kept = self.general + self.by_address.get(_address_key(destination) or "", ())
        return dataclasses.replace(self.nsg, rules=kept)


@functools.lru_cache(maxsize=16384)  # JIT's rules of a shared NSG, read for each port
def _address_key(prefix: str) -> str | None:
    """The one address a destination prefix names ('10.0.0.4', '10.0.0.4/32'), else None."""
    try:
        net = ipaddress.ip_network(prefix.strip(), strict=False)
    except ValueError:
        return None
    return str(net.network_address) if net.num_addresses == 1 else None


def _view(nsg: Nsg, port: int) -> _PortView:
    # an address outside Azure is in no application security group: such a rule never matches
    kept = tuple(r for r in nsg.rules if applies_to(r, port, "Tcp") and not r.source_asgs)
    general: list[SecurityRule] = []
    by_address: dict[str, list[SecurityRule]] = {}
    for rule in kept:
        listed = rule.destination_address_prefixes or (rule.destination_address_prefix or "*",)
        keys = {_address_key(p) for p in listed}
        if rule.destination_asgs or None in keys:
            general.append(rule)
            continue
        for key in keys:
            by_address.setdefault(str(key), []).append(rule)
    return _PortView(
        dataclasses.replace(nsg, rules=kept),
        any(_opens(r) for r in kept),
        tuple(general),
        {k: tuple(v) for k, v in by_address.items()},
    )


def _opens(rule: SecurityRule) -> bool:
    return rule.access.lower() == "allow" and not is_jit_rule(rule)


@dataclass
class Memo:
    """What the checks of many VMs reuse: each NSG's view of a port."""

    views: dict[tuple[str, int], _PortView] = field(default_factory=dict)
    opens: dict[str, bool] = field(default_factory=dict)

    def may_open(self, nsg: Nsg | None) -> bool:
        """Has the NSG an inbound allow rule that is not JIT's, on any port?"""
        if nsg is None:
            return False
        key = nsg.id.lower()
        if key not in self.opens:
            self.opens[key] = any(_opens(r) and r.direction.lower() == "inbound" for r in nsg.rules)
        return self.opens[key]

    def view(self, nsg: Nsg | None, port: int) -> _PortView | None:
        if nsg is None:
            return None
        key = (nsg.id.lower(), port)
        if key not in self.views:
            self.views[key] = _view(nsg, port)
        return self.views[key]


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
    out: list[Exposure] = []
    doubts = []
    for port in ports:
        views = [memo.view(nsg, port) for nsg in nsgs]
        if not any(v and v.openers for v in views):
            continue
        subnet_nsg, nic_nsg = (v.at(cfg.private_ip) if v else None for v in views)
        openers = [r for n in (subnet_nsg, nic_nsg) if n for r in n.rules if _opens(r)]
        flow = Flow("0.0.0.0", cfg.private_ip, port, "Tcp", cfg.asg_ids, prefixes)
        out += _through(port, subnet_nsg, nic_nsg, openers, flow)
        for level, nsg, other in (("subnet", subnet_nsg, nic_nsg), ("nic", nic_nsg, subnet_nsg)):
            if nsg is None or (other is not None and not any(_opens(r) for r in other.rules)):
                continue  # the other NSG lets no Internet address in past JIT on this port
            for rule in nsg.rules:
                reasons = unjudged(rule) if _opens(rule) else ()
                if reasons:
                    doubts.append(Unjudged(port, level, nsg.id, rule, reasons))
    return out, doubts


def _through(
    port: int, subnet_nsg: Nsg | None, nic_nsg: Nsg | None, openers: list[SecurityRule], flow: Flow
) -> list[Exposure]:
    cut = cut_sources((subnet_nsg, nic_nsg), flow)
    groups: dict[tuple[Any, ...], tuple[Evaluation, list[Range]]] = {}
    for first, last in cut:
        flow = dataclasses.replace(flow, source_ip=str(ipaddress.IPv4Address(first)))
        if not any(rule_matches(r, flow, []) for r in openers):
            continue  # past JIT, only a rule that is not JIT's lets an Internet address in
        ev = evaluate(subnet_nsg, nic_nsg, flow)
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
