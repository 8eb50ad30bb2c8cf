"""Writes that converge, and writes that are not repeated blindly.

A JIT policy has no ETag, so read-merge-write can always race with another writer. After each
write we re-read at random moments over a confirmation window longer than a competing writer's
read-to-write gap; whenever our change is missing, we read, merge and write again (jittered
backoff, bounded in time). Exit 0 only once the change stayed visible for the whole window.

A write or an initiate whose answer was lost (timeout, 429, 5xx) may have happened: the transport
does not re-send it (retry_total=0 in jitctl.arm); we re-read first, and write again only if
the re-read shows it did not happen.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from jitctl.clock import Clock
from jitctl.errors import Contended, NotFound, PolicyNamesDeletedVms, Unavailable
from jitctl.gateway import Gateway, InitiatePort
from jitctl.ids import id_key, name_of, same_id, segments
from jitctl.model import AccessRequest, JitPolicy, PolicyVm
from jitctl.policymerge import PortChange, applied

PolicyKey = tuple[str, str, str, str]  # subscription, resource group, region, policy name
Merge = Callable[[Sequence[PolicyVm]], tuple[tuple[PolicyVm, ...], tuple[PortChange, ...]]]


@dataclass(frozen=True)
class WritePolicy:
    """How hard jitctl works to make a write stick, in seconds.

    confirm_window: after a write, our change must stay visible this long (at least); it grows to
      gap_factor x the measured read+write time of our own calls, which is what a competing
      writer's read-to-write gap is made of (ARM: 50-150 ms a call, so 1 s is several gaps).
    confirm_reads: re-reads spread over the window at random moments (the last one at its end).
    max_time: give up (exit 9, Contended) when the change is not confirmed by then.
    backoff/backoff_max: the wait before writing again, doubled each time, jittered.
    initiate_tries: initiate attempts whose failure left no request in the history.
    match_tolerance: how far a request in the history may be from ours (end time; start time
      before we sent, for clock skew) and still be ours.
    """

    confirm_window: float = 1.0
    gap_factor: float = 4.0
    confirm_reads: int = 3
    max_time: float = 30.0
    backoff: float = 0.2
    backoff_max: float = 3.0
    initiate_tries: int = 3
    match_tolerance: float = 120.0


@dataclass(frozen=True)
class PolicyChange:
    """What happened (or would happen) to one JIT policy."""

    policy_id: str
    changes: tuple[PortChange, ...]
    action: str  # "unchanged" | "updated" | "created" | "deleted" | "would update" ...
    attempts: int = 0
    notes: tuple[str, ...] = ()  # what jitctl had to do to make it stick (for stderr)


def _seconds(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


class _Writer:
    def __init__(
        self, gw: Gateway, key: PolicyKey, clock: Clock, settings: WritePolicy, rng: random.Random
    ) -> None:
        self.gw, self.key, self.clock, self.s, self.rng = gw, key, clock, settings, rng
        self.notes: list[str] = []
        self.window = settings.confirm_window
        self.read_time = 0.0
        self.lost = False  # the last write's answer was lost
        self.retry_after: float | None = None
        self.failure: Unavailable | None = None

    def read(self) -> JitPolicy | None:
        return self.gw.get_policy(*self.key)

    def timed_read(self) -> JitPolicy | None:
        start = self.clock.now()
        policy = self.read()
        self.read_time = _seconds(start, self.clock.now())
        return policy

    def write(self, base: JitPolicy, vms: tuple[PolicyVm, ...], existed: bool) -> str:
        """One PUT (or DELETE of a policy still empty on a fresh read); returns the verb."""
        start = self.clock.now()
        verb = "updated" if existed else "created"
        self.lost, self.retry_after = False, None
        try:
            if vms:
                self.gw.put_policy(replace(base, vms=vms))
            else:
                self.gw.delete_policy(base)
                verb = "deleted"
        except Unavailable as err:
            self.lost, self.retry_after, self.failure = True, err.retry_after, err
            self.notes.append(
                f"The answer to writing JIT policy {base.name} was lost ({err.message}); "
                "re-reading it."
            )
        took = _seconds(start, self.clock.now()) + self.read_time
        self.window = max(self.s.confirm_window, self.s.gap_factor * took)
        return verb

    def confirmed(self, changes: Sequence[PortChange]) -> bool:
        """Re-read at random moments over the window; False as soon as our change is missing."""
        start = self.clock.now()
        n = max(1, self.s.confirm_reads)
        slot = self.window / n
        seen = False
        for i in range(1, n + 1):
            at = slot * i - (self.rng.uniform(0, slot / 2) if i < n else 0)
            wait = at - _seconds(start, self.clock.now())
            if wait > 0:
                self.clock.sleep(wait)
            try:
                fresh = self.read()
            except Unavailable:
                seen = False  # a failed read proves nothing either way: the next one must see it
                continue
            if not applied(fresh.vms if fresh else (), changes):
                return False
            seen = True
        return seen

    def pause(self, attempt: int, writes: int, deadline: datetime) -> None:
        wait = _backoff(self.s, attempt, self.rng, self.retry_after)
        if self.clock.now() + timedelta(seconds=wait) >= deadline:
            if self.lost and self.failure is not None:  # Azure failing, not a rival writer
                raise self.failure
            raise Contended(
                f"Could not confirm the change to JIT policy {self.key[3]} in "
                f"{self.key[1]}: another writer keeps replacing the policy "
                f"({writes} writes in {self.s.max_time:g} s).",
                "Try again later; or give each VM its own policy with --policy-name '{vm}'.",
            )
        self.clock.sleep(wait)


def write_merged(
    gw: Gateway,
    current: JitPolicy | None,
    key: PolicyKey,
    merge: Merge,
    dry_run: bool,
    *,
    clock: Clock,
    settings: WritePolicy | None = None,
    rng: random.Random | None = None,
) -> PolicyChange:
    """Merge into the current policy, write, and confirm over the window; merge and write again
    whenever a concurrent writer dropped our change. Raises Contended after `max_time`."""
    s = settings or WritePolicy()
    w = _Writer(gw, key, clock, s, rng or random.Random())
    sub, rg, loc, name = key
    base = current or JitPolicy(sub, rg, loc, name)
    vms, changes = merge(base.vms)
    if not changes:
        return PolicyChange(base.id, (), "unchanged")
    first = changes
    verb = "delete" if not vms else ("update" if current else "create")
    if dry_run:
        return PolicyChange(base.id, changes, f"would {verb}")
    deadline = clock.now() + timedelta(seconds=s.max_time)
    existed, need_write, writes, misses, done = current is not None, True, 0, 0, f"{verb}d"
    dropped = False
    while True:
        if need_write and not vms:  # read right before deleting: delete only what is still empty
            fresh = w.timed_read()
            existed, base = fresh is not None, fresh or base
            vms, new = merge(fresh.vms) if fresh else ((), ())
            changes, need_write = new or changes, bool(new)
            if vms and new:
                w.notes.append(f"Policy {name} gained VMs meanwhile: kept them, removed ours.")
        if need_write:
            try:
                done = w.write(base, vms, existed)
            except PolicyNamesDeletedVms:
                gone = set() if dropped else deleted_vms(gw, base.vms)
                if not gone:
                    raise
                dropped = True
                merge = _dropping(gone, merge)
                vms, changes = merge(base.vms)
                first = changes
                w.notes.append(
                    f"VM {', '.join(sorted(name_of(v) for v in gone))} no longer exists: "
                    f"removed from JIT policy {name} (Azure refuses writes to a policy that "
                    "names a deleted VM)."
                )
                continue
            writes += 1
        if w.confirmed(changes):
            if w.lost:
                w.notes.append("A re-read shows the write had taken effect.")
            return PolicyChange(base.id, first, done, writes, tuple(w.notes))
        misses += 1
        if w.lost:
            w.notes.append("A re-read shows our change missing: merging and writing again.")
        w.pause(misses, writes, deadline)
        fresh = w.timed_read()
        existed = fresh is not None
        base = fresh or JitPolicy(sub, rg, loc, name)
        vms, new = merge(base.vms)
        changes, need_write = new or changes, bool(new)


def deleted_vms(gw: Gateway, vms: Sequence[PolicyVm]) -> set[str]:
    """Keys (ids.id_key) of a policy's VMs that no longer exist: one VM list per resource group."""
    groups: dict[tuple[str, str], list[str]] = {}
    for vm in vms:
        seg = segments(vm.id)
        key = (seg.get("subscriptions", "").lower(), seg.get("resourcegroups", "").lower())
        groups.setdefault(key, []).append(id_key(vm.id))
    gone: set[str] = set()
    for (sub, rg), ids in groups.items():
        try:
            present = {id_key(v.id) for v in gw.list_vms(sub, rg)}
        except NotFound:  # the resource group went with its VMs
            present = set()
        gone.update(i for i in ids if i not in present)
    return gone


def _dropping(gone: set[str], merge: Merge) -> Merge:
    """`merge`, after removing the VMs in `gone` (reported as removals of their ports)."""

    def merged(vms: Sequence[PolicyVm]) -> tuple[tuple[PolicyVm, ...], tuple[PortChange, ...]]:
        kept = [v for v in vms if id_key(v.id) not in gone]
        out, changes = merge(kept)
        removed = tuple(
            PortChange(v.id, p.number, "remove", p, None)
            for v in vms
            if id_key(v.id) in gone
            for p in v.ports
        )
        return out, changes + removed

    return merged


def history_match(
    policy: JitPolicy | None,
    vm_id: str,
    ports: Sequence[InitiatePort],
    sent: datetime,
    tolerance: float,
) -> AccessRequest | None:
    """The request in the policy's history that is ours: same VM, ports, sources, end times
    within the tolerance, started no earlier than we sent (less the tolerance, for clock skew)."""
    slack = timedelta(seconds=tolerance)
    for req in reversed((policy.requests if policy else ()) or ()):
        if req.start_time is not None and req.start_time < sent - slack:
            continue
        for vm in req.vms:
            if not same_id(vm.id, vm_id) or len(vm.ports) != len(ports):
                continue
            if all(
                any(
                    g.number == p.number
                    and g.source.removesuffix("/32") == p.source.removesuffix("/32")
                    and abs(g.end_time - p.end_time) <= slack
                    for g in vm.ports
                )
                for p in ports
            ):
                return req
    return None


def initiate_once(
    gw: Gateway,
    policy: JitPolicy,
    vm_id: str,
    ports: list[InitiatePort],
    justification: str | None,
    *,
    clock: Clock,
    settings: WritePolicy | None = None,
    rng: random.Random | None = None,
) -> tuple[AccessRequest, tuple[str, ...]]:
    """Initiate; after an ambiguous failure, read the request history: report the request as
    granted when it landed, initiate again (backoff, bounded) only when it did not."""
    s = settings or WritePolicy()
    rnd = rng or random.Random()
    notes: list[str] = []
    key = (policy.subscription_id, policy.resource_group, policy.location, policy.name)
    attempt = 0
    while True:
        attempt += 1
        sent = clock.now()
        try:
            return gw.initiate(policy, vm_id, ports, justification), tuple(notes)
        except Unavailable as err:
            failure = err
        found = _landed(gw, key, vm_id, ports, sent, clock, s, rnd)
        if found is not None:
            notes.append(
                f"The answer to the access request was lost ({failure.message}); the policy's "
                "request history shows it had landed, so it was not sent again."
            )
            return found, tuple(notes)
        if attempt >= s.initiate_tries:
            raise failure
        notes.append(
            f"The access request failed ({failure.message}) and is not in the policy's request "
            "history: requested again."
        )
        clock.sleep(_backoff(s, attempt, rnd, failure.retry_after))


def _backoff(s: WritePolicy, attempt: int, rng: random.Random, retry_after: float | None) -> float:
    """Jittered exponential backoff, never shorter than the service's Retry-After."""
    limit = min(s.backoff * 2 ** (attempt - 1), s.backoff_max)
    return max(retry_after or 0.0, rng.uniform(limit / 2, limit))


def _landed(
    gw: Gateway,
    key: PolicyKey,
    vm_id: str,
    ports: Sequence[InitiatePort],
    sent: datetime,
    clock: Clock,
    s: WritePolicy,
    rng: random.Random,
) -> AccessRequest | None:
    """Two looks at the history (the second after a pause, in case a read lags the write)."""
    for look in range(2):
        if look:
            clock.sleep(rng.uniform(s.confirm_window / 2, s.confirm_window))
        try:
            found = history_match(gw.get_policy(*key), vm_id, ports, sent, s.match_tolerance)
        except Unavailable:
            continue
        if found is not None:
            return found
    return None
