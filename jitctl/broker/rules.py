"""Approval rules: what happens to a request, and who may approve it. Pure: no I/O, no clock.

Evaluated in AWS Systems Manager's order: deny, then auto-approve, then manual approval. When
several `approvals:` entries match a VM, the most restrictive wins (docs/broker.md):

- no entry matches: denied (the broker grants nothing no rule speaks of);
- any entry's `deny` names the requester: denied, whatever else says (break-glass included);
- every entry that lists `requesters` must name the requester (its `autoApprove` and
  `breakGlass` requesters count as requesters);
- durations: the smallest `maxDuration`, the smallest `pendingTtl`; a reason if any entry
  requires one; the ticket must match every `ticketPattern`; the source must lie within every
  `sourcePrefixes` and be no wider than every `widestSource`;
- an entry that gates access (it has `approvers`, `autoApprove` or `breakGlass`) must let the
  request through: break-glass only when every gating entry lists the requester under
  `breakGlass`; auto-approval only when every gating entry's `autoApprove` holds; else an
  approver must satisfy every gating entry's `approvers`, and the largest `minApprovals` counts.
  Auto-approval takes one source address unless `autoApprove.widestSource` allows a range: no
  person sees an auto-approved request, so it must not open a port to half the Internet.
  A gating entry that names no approvers and whose other ways do not hold refuses the request.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import Enum
from typing import TYPE_CHECKING

from jitctl.approvalschema import DAYS, MAX_PENDING_TTL, MIN_PENDING_TTL, Approval, AutoApprove
from jitctl.ids import name_of, segments
from jitctl.parsing import format_human_duration, parse_duration
from jitctl.targetmatch import vm_matches
from jitctl.textsafe import printable

if TYPE_CHECKING:
    from jitctl.policyfile import LoadedFile

DEFAULT_PENDING_TTL = timedelta(hours=24)
AUTO_WIDEST_SOURCE = 32  # autoApprove's default: one address, unless the rule allows a range
MAX_TICKET = 200  # a ticket id, not a document: keeps a bad pattern's work bounded


class Outcome(str, Enum):
    DENIED = "denied"
    AUTO_APPROVED = "auto_approved"
    NEEDS_APPROVAL = "needs_approval"
    BREAK_GLASS_ALLOWED = "break_glass_allowed"


@dataclass(frozen=True)
class Principal:
    """Who acts: a user principal name and the groups (ids or names, app roles) of the token;
    its object id and tenant (`oid`, `tid`) when the token has them. The name is for display
    and `user:` rules; who is who (self-approval, distinct approvers) goes by the object id,
    since a name can change or be reused (Microsoft: never authorize on preferred_username)."""

    upn: str
    groups: frozenset[str] = frozenset()
    oid: str | None = field(default=None, compare=False)
    tid: str | None = field(default=None, compare=False)

    def same_as(self, upn: str, oid: str | None) -> bool:
        """Whether this is the person stored as `upn` / `oid`: by object id when both have
        one, else by name (tokens without an oid, requests stored before there was one)."""
        if self.oid and oid:
            return self.oid.lower() == oid.lower()
        return self.upn.lower() == upn.lower()

    def matches(self, spec: str) -> bool:
        kind, _, value = spec.partition(":")
        if kind == "user":
            return value.lower() == self.upn.lower()
        return value.lower() in {g.lower() for g in self.groups}

    def first_match(self, specs: Iterable[str] | None) -> str | None:
        return next((s for s in specs or () if self.matches(s)), None)


def may_approve(
    approver_sets: Sequence[Sequence[str]],
    requester: str,
    who: Principal,
    requester_oid: str | None = None,
) -> bool:
    """Never the requester, whatever their groups or name; else one principal of every set
    (one definition: the rules' answer and the store's check on each approval)."""
    if not approver_sets or who.same_as(requester, requester_oid):
        return False
    return all(who.first_match(s) for s in approver_sets)


@dataclass(frozen=True)
class Ask:
    """A request as the rules see it."""

    requester: Principal
    vm_id: str
    ports: tuple[int, ...]
    duration: timedelta
    at: datetime  # when it is asked: auto-approval hours are read against it
    vm_tags: tuple[tuple[str, str], ...] = ()
    reason: str | None = None
    ticket: str | None = None
    break_glass: bool = False
    # the address or range to let in; None: not given (explain), source conditions unchecked
    source: str | None = None


@dataclass(frozen=True)
class Rule:
    """One `approvals:` entry and where it was written."""

    entry: Approval
    origin: str  # file:line
    key: str  # approvals[i]
    file_subscriptions: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        return f"{self.origin} ({self.entry.name or self.key})"

    def matches(self, ask: Ask) -> bool:
        m = self.entry.match
        subs = m.subscription_ids() or self.file_subscriptions
        return vm_matches(
            ask.vm_id,
            ask.vm_tags,
            subscriptions=subs,
            resource_group=m.resourceGroup,
            names=m.names,
            tags=m.tags,
            ids=m.ids,
        )

    @property
    def gates(self) -> bool:
        e = self.entry
        return bool(e.approvers or e.autoApprove or e.breakGlass)

    def may_request(self) -> list[str] | None:
        e = self.entry
        if e.requesters is None:
            return None
        extra = [
            *(e.autoApprove.requesters or [] if e.autoApprove else []),
            *(e.breakGlass.requesters if e.breakGlass else []),
        ]
        return [*e.requesters, *extra]


@dataclass(frozen=True)
class Decision:
    """What the rules say about an Ask. `problems` are the requester's to fix (bad input:
    nothing is stored); a denied request is refused whatever its problems."""

    outcome: Outcome
    rules: tuple[str, ...]  # labels of the matching entries
    approver_sets: tuple[tuple[str, ...], ...] = ()  # an approver matches one of each set
    min_approvals: int = 0
    max_duration: timedelta | None = None
    pending_ttl: timedelta = DEFAULT_PENDING_TTL
    reasons: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    loud: bool = False  # break-glass: tell everyone


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = field(default_factory=tuple)

    @classmethod
    def from_files(cls, files: Sequence[LoadedFile]) -> RuleSet:
        out = []
        for f in files:
            subs = tuple(f.model.subscriptions) if f.model.subscriptions else None
            for i, entry in enumerate(f.model.approvals):
                out.append(Rule(entry, f.origin("approvals", i), f"approvals[{i}]", subs))
        return cls(tuple(out))

    def evaluate(self, ask: Ask) -> Decision:
        return evaluate(self.rules, ask)


def _who(ask: Ask) -> str:
    return f"user:{printable(ask.requester.upn)}"


def _vm(ask: Ask) -> str:
    rg = segments(ask.vm_id).get("resourcegroups", "?")
    return f"VM {printable(name_of(ask.vm_id))} in {printable(rg)}"


def _duration(rule: Approval | AutoApprove) -> timedelta | None:
    return parse_duration(rule.maxDuration) if rule.maxDuration else None


def _ticket_problem(pattern: str, ticket: str | None, where: str) -> str | None:
    if not ticket:
        return f"a ticket is required by {where} (pattern {pattern})"
    if len(ticket) > MAX_TICKET or not re.fullmatch(pattern, ticket):
        return f"ticket '{printable(ticket[:MAX_TICKET])}' does not match {pattern} ({where})"
    return None


def _source_problem(
    source: str | None,
    prefixes: Sequence[str] | None,
    widest: int | None,
    key: Callable[[str], str],
) -> str | None:
    """Why `source` breaks `prefixes` (it must lie within one) or `widest` (a prefix length);
    `key` names a key where it is written."""
    if source is None:
        return None
    net = ipaddress.ip_network(source, strict=False)
    if widest is not None and net.prefixlen < widest:
        return f"source {source} is wider than /{widest} ({key('widestSource')})"
    if prefixes and not any(
        isinstance(net, ipaddress.IPv4Network) and net.subnet_of(ipaddress.IPv4Network(p))
        for p in prefixes
    ):
        return f"source {source} is not within {key('sourcePrefixes')} {list(prefixes)}"
    return None


def _within_hours(auto: AutoApprove, at: datetime) -> str | None:
    """Why `at` is outside the auto-approval window, or None when inside."""
    from zoneinfo import ZoneInfo

    local = at.astimezone(ZoneInfo(auto.timezone))
    if auto.days and DAYS[local.weekday()] not in auto.days:
        return f"{DAYS[local.weekday()]} is not one of autoApprove.days {auto.days}"
    if auto.hours:
        start_s, end_s = auto.hours.strip().split("-")
        start = time.fromisoformat(start_s)
        end = time.max if end_s == "24:00" else time.fromisoformat(end_s)
        now = local.time()
        inside = start <= now < end if start < end else (now >= start or now < end)
        if not inside:
            return f"{now:%H:%M} {auto.timezone} is outside autoApprove.hours {auto.hours}"
    return None


def _auto_refusal(auto: AutoApprove | None, ask: Ask) -> str | None:
    """Why `auto` does not approve `ask`, or None when it does."""
    if auto is None:
        return "it has no autoApprove"
    if auto.requesters is not None and not ask.requester.first_match(auto.requesters):
        return f"{_who(ask)} is not in autoApprove.requesters"
    limit = _duration(auto)
    if limit is not None and ask.duration > limit:
        return (
            f"{format_human_duration(ask.duration)} is over autoApprove.maxDuration "
            f"{format_human_duration(limit)}"
        )
    if auto.ports is not None and not set(ask.ports) <= set(auto.ports):
        extra = sorted(set(ask.ports) - set(auto.ports))
        return f"port(s) {extra} not in autoApprove.ports {auto.ports}"
    if auto.ticketPattern and _ticket_problem(auto.ticketPattern, ask.ticket, "autoApprove"):
        return f"the ticket does not match autoApprove.ticketPattern {auto.ticketPattern}"
    widest = AUTO_WIDEST_SOURCE if auto.widestSource is None else auto.widestSource
    wide = _source_problem(ask.source, auto.sourcePrefixes, widest, "autoApprove.{}".format)
    if wide and auto.widestSource is None and "wider" in wide:
        wide = wide[:-1] + ", default: one address)"
    return wide or _within_hours(auto, ask.at)


def _input_problems(rules: Sequence[Rule], ask: Ask, max_duration: timedelta | None) -> list[str]:
    problems = []
    has_reason = bool(ask.reason and ask.reason.strip())
    need_reason = [r.label for r in rules if r.entry.reasonRequired]
    if not has_reason and need_reason:
        problems.append(f"a reason is required by {need_reason[0]}")
    elif not has_reason and ask.break_glass:
        problems.append("a break-glass request needs a reason")
    for r in rules:
        if r.entry.ticketPattern:
            found = _ticket_problem(r.entry.ticketPattern, ask.ticket, r.label)
            if found:
                problems.append(found)
    for r in rules:
        found = _source_problem(
            ask.source, r.entry.sourcePrefixes, r.entry.widestSource, f"{{}} of {r.label}".format
        )
        if found:
            problems.append(found)
    if max_duration is not None and ask.duration > max_duration:
        problems.append(
            f"duration {format_human_duration(ask.duration)} is over the rules' maximum "
            f"{format_human_duration(max_duration)}"
        )
    return problems


def evaluate(rules: Sequence[Rule], ask: Ask) -> Decision:
    matching = [r for r in rules if r.matches(ask)]
    if not matching:
        return Decision(
            Outcome.DENIED,
            (),
            reasons=(f"no approvals rule matches {_vm(ask)}: the broker grants nothing unruled",),
        )
    labels = tuple(r.label for r in matching)
    reasons = [f"{_vm(ask)} is governed by {', '.join(labels)}"]
    limits = [d for r in matching if (d := _duration(r.entry)) is not None]
    max_duration = min(limits) if limits else None
    ttls = [
        parse_duration(r.entry.pendingTtl, minimum=MIN_PENDING_TTL, maximum=MAX_PENDING_TTL)
        for r in matching
        if r.entry.pendingTtl
    ]
    ttl = min(ttls) if ttls else DEFAULT_PENDING_TTL
    problems = tuple(_input_problems(matching, ask, max_duration))

    def decide(outcome: Outcome, sets: tuple[tuple[str, ...], ...] = (), need: int = 0) -> Decision:
        return Decision(
            outcome,
            labels,
            approver_sets=sets,
            min_approvals=need,
            max_duration=max_duration,
            pending_ttl=ttl,
            reasons=tuple(reasons),
            problems=problems,
            loud=outcome is Outcome.BREAK_GLASS_ALLOWED,
        )

    # 1. deny
    for r in matching:
        hit = ask.requester.first_match(r.entry.deny.requesters if r.entry.deny else None)
        if hit:
            reasons.append(f"denied by {r.label}: {_who(ask)} matches deny {hit}")
            return decide(Outcome.DENIED)
    for r in matching:
        allowed = r.may_request()
        if allowed is not None and not ask.requester.first_match(allowed):
            reasons.append(f"denied: {_who(ask)} is not among the requesters of {r.label}")
            return decide(Outcome.DENIED)
    gating = [r for r in matching if r.gates]
    if not gating:
        reasons.append("denied: no matching rule names approvers, autoApprove or breakGlass")
        return decide(Outcome.DENIED)
    # 2. break-glass, asked for by the requester: self-approval, announced loudly
    if ask.break_glass:
        outside = [
            r.label
            for r in gating
            if not (r.entry.breakGlass and ask.requester.first_match(r.entry.breakGlass.requesters))
        ]
        if outside:
            reasons.append(f"denied: {_who(ask)} may not break glass under {outside[0]}")
            return decide(Outcome.DENIED)
        reasons.append(f"break-glass allowed for {_who(ask)}: every party is notified")
        return decide(Outcome.BREAK_GLASS_ALLOWED)
    # 3. auto-approve
    refusals = [(r, why) for r in gating if (why := _auto_refusal(r.entry.autoApprove, ask))]
    if not refusals:
        reasons.append(
            f"auto-approved: {_who(ask)} meets autoApprove of {', '.join(r.label for r in gating)}"
        )
        return decide(Outcome.AUTO_APPROVED)
    for r, why in refusals:
        if r.entry.autoApprove is not None:
            reasons.append(f"not auto-approved by {r.label}: {why}")
    # 4. manual
    unapprovable = [r for r in gating if not r.entry.approvers]
    if unapprovable:
        reasons.append(
            f"denied: {unapprovable[0].label} names no approvers and its autoApprove does not hold"
        )
        return decide(Outcome.DENIED)
    sets = tuple(tuple(r.entry.approvers or ()) for r in gating)
    need = max(r.entry.minApprovals or 1 for r in gating)
    wanted = " and ".join(" or ".join(s) for s in sets)
    reasons.append(f"needs {need} approval(s) from {wanted}; never from the requester")
    return decide(Outcome.NEEDS_APPROVAL, sets, need)


def rule_id(rule: Rule) -> str:
    """How a plan knows an entry across folders and machines: its file's name (not its path,
    which differs between a checkout and the broker's image) and its name or place."""
    path = rule.origin.rsplit(":", 1)[0]
    return f"{path.replace(chr(92), '/').rsplit('/', 1)[-1]}: {rule.entry.name or rule.key}"


def rules_document(rules: Sequence[Rule]) -> list[dict[str, object]]:
    """The rules as JSON (GET /api/v1/rules, and a plan's side of the comparison): each entry
    as written, less what is left to its default."""
    return [
        {
            "entry": rule_id(r),
            "origin": r.origin,
            "rule": r.entry.model_dump(mode="json", exclude_defaults=True, exclude_none=True),
        }
        for r in rules
    ]
