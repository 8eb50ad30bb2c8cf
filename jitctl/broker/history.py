"""What a JIT policy's request history says about a broker request's grant: still in force, or
ended by Azure before its end time. Pure: a policy read once, and the broker's records.

Azure ends the older request for a VM and port when a newer one is initiated for them,
whoever sends it and from whatever source (the older ports end with statusReason
NewerRequestInitiated). So a request the broker shows active may have ended in Azure: another
broker request, or an admin's direct `jitctl request`, superseded it. The history is the only
place that says so; the NSGs alone cannot tell one grant's rule from a newer one's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from jitctl.broker.azureside import MARK
from jitctl.broker.records import RequestRecord
from jitctl.ids import same_id
from jitctl.model import AccessRequest, GrantPort, JitPolicy

IN_FORCE = ("initiated", "initiating")  # a port of a grant Azure has not ended
NOT_APPLIED = ("initiating", "failed")  # a newer request that has superseded nothing yet
OLDEST = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Ended:
    """Azure ended this request's grant on every port: why, in words and as Azure has it."""

    reason: str
    superseded_by: str | None  # the newer broker request's id, when the newer is the broker's
    azure: dict[str, object]


def status_words(ports: Sequence[GrantPort]) -> str:
    """Azure's statuses of some ports, in words: `Failed (SecurityRulesLimitReached), Initiated`."""
    return ", ".join(
        sorted({f"{p.status} ({p.status_reason})" if p.status_reason else p.status for p in ports})
    )


def broker_id(req: AccessRequest) -> str | None:
    """The broker request an initiate was sent for (its justification `broker:<id>: ...`)."""
    text = req.justification or ""
    if not text.startswith(MARK):
        return None
    return text[len(MARK) :].split(":", 1)[0] or None


def _port(req: AccessRequest, vm_id: str, number: int) -> GrantPort | None:
    return next(
        (p for v in req.vms if same_id(v.id, vm_id) for p in v.ports if p.number == number), None
    )


def _start(req: AccessRequest) -> datetime:
    return req.start_time or OLDEST


def own(policy: JitPolicy, rec: RequestRecord) -> list[AccessRequest]:
    """This request's initiates in the history (the first, and each extension's)."""
    return [r for r in policy.requests if broker_id(r) == rec.id]


def newer_applied(policy: JitPolicy, rec: RequestRecord, number: int) -> AccessRequest | None:
    """The newest initiate for this VM and port that is not this request's, was sent after
    this request's last one, and that Azure applied (so it superseded ours), if any. Sent
    after: a later start time, or the same one and later in the history."""
    order = {id(r): (_start(r), i) for i, r in enumerate(policy.requests)}
    mine = own(policy, rec)
    if not mine:
        return None
    last = max(order[id(r)] for r in mine)
    found = [
        r
        for r in policy.requests
        if broker_id(r) != rec.id
        and order[id(r)] > last
        and (p := _port(r, rec.vm_id, number)) is not None
        and p.status.lower() not in NOT_APPLIED
    ]
    return max(found, key=lambda r: order[id(r)], default=None)


def superseded_ports(policy: JitPolicy, rec: RequestRecord) -> dict[int, AccessRequest]:
    """The ports of this request a newer initiate (not its own) took over in Azure."""
    return {n: r for n in rec.ports if (r := newer_applied(policy, rec, n)) is not None}


def ended_in_azure(policy: JitPolicy, rec: RequestRecord) -> Ended | None:
    """Ended: on every port, a newer request superseded this one, or none of this request's
    initiates is in force any more (Revoked, Expired, Failed). None while any port is in
    force, and when the history does not hold the request (nothing to go on: its end time
    decides)."""
    mine = own(policy, rec)
    if not mine:
        return None
    newer = superseded_ports(policy, rec)
    statuses: dict[int, list[GrantPort]] = {
        n: [p for r in mine if (p := _port(r, rec.vm_id, n)) is not None] for n in rec.ports
    }
    for n in rec.ports:
        in_force = any(p.status.lower() in IN_FORCE for p in statuses[n])
        if n not in newer and (in_force or not statuses[n]):
            return None
    if newer:
        by = max(newer.values(), key=_start)
        other = broker_id(by)
        who = f"request {other}" if other else f"a request of {by.requestor or 'someone'}"
        at = f" at {by.start_time:%Y-%m-%d %H:%M}Z" if by.start_time else ""
        reason = f"Superseded by {who}{at} (Azure: NewerRequestInitiated)."
        azure: dict[str, object] = {
            "superseded_on": sorted(newer),
            "newer": {"start": by.start_time.isoformat() if by.start_time else None},
            "requestor": by.requestor,
            "justification": by.justification,
        }
        return Ended(reason, other, azure)
    last = [ps[-1] for ps in statuses.values() if ps]
    words = status_words(last)
    return Ended(
        f"Azure ended the grant before its end time: its history says {words}.",
        None,
        {
            "ports": [
                {"number": p.number, "status": p.status, "reason": p.status_reason} for p in last
            ]
        },
    )
