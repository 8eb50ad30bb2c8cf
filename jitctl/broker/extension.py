"""Making an extension true in Azure: a new initiate for the new end.

Azure has no call to lengthen a grant. A newer initiate for the same VM and port supersedes the
older one (its ports end with statusReason NewerRequestInitiated), so the broker sends one whose
end is the extension's, waits until Azure has applied it (the history says Initiated, not
Initiating: until then the older grant's rule still lets the source in and proves nothing), and
verifies access live. Only then does the request's end become Azure's new end; an extension
Azure refused leaves the older end, which the sweep closes on time.

A broker killed after sending leaves a claim that goes stale; whoever takes it over finds the
initiate in the policy's history (marked `broker:<id>:`, ending at the extension's end) and
does not send it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jitctl.broker.azureside import MARK, grant_json, justification, result_of, vm_ref
from jitctl.broker.reach import proof_json
from jitctl.broker.records import RequestRecord
from jitctl.clock import Clock
from jitctl.errors import JitctlError, TimedOut
from jitctl.gateway import Gateway
from jitctl.ids import same_id
from jitctl.model import AccessRequest, JitPolicy
from jitctl.services.access import RequestResult, find_policy, initiate_checked
from jitctl.services.firewall import firewall_address
from jitctl.services.verify import wait_until_effective

# An initiate's end is its send time plus the duration: one sent for the same extension a few
# seconds later ends a few seconds later. Within this, a marked initiate in the history is ours.
SAME_END = timedelta(minutes=2)


@dataclass(frozen=True)
class Extension:
    """What one extension came to: granted (Azure's end) or not, and in words why."""

    ok: bool
    azure: dict[str, Any]
    ends_at: datetime | None
    reason: str
    resent: bool = True


def sent_for(policy: JitPolicy, rec: RequestRecord, end: datetime) -> AccessRequest | None:
    """This extension's initiate in the history: marked with the request's id, ending at the
    extension's end (the first initiate ended earlier)."""
    mark = f"{MARK}{rec.id}:"
    for req in reversed(policy.requests):
        text = req.justification or ""
        if not (text == mark[:-1] or text.startswith(mark)):
            continue
        ports = [p for v in req.vms if same_id(v.id, rec.vm_id) for p in v.ports]
        if ports and max(p.end_time for p in ports) >= end - SAME_END:
            return req
    return None


def extend_in_azure(
    gw: Gateway, clock: Clock, rec: RequestRecord, end: datetime, timeout: float
) -> Extension:
    """Send (unless the history holds it) the initiate that ends at `end`, wait until Azure
    applied it and access is live; what Azure said either way."""
    ref = vm_ref(rec.vm_id)
    answer: dict[str, Any] = {}
    resent = True
    try:
        source = rec.source or ""
        policy, pvm = find_policy(gw, ref, rec.ports, None)
        earlier = sent_for(policy, rec, end)
        if earlier is not None:
            resent = False
            granted = result_of(policy, rec, earlier)
            answer["note"] = (
                "The policy's request history holds this extension's initiate (a broker "
                "stopped after sending it): not sent again."
            )
        else:
            left = end - clock.now()
            if left <= timedelta(0):
                raise JitctlError(
                    "The extension's end has passed before its initiate could be sent.",
                    "Extend it again from now.",
                )
            granted = initiate_checked(
                gw,
                policy,
                pvm,
                source,
                clock.now(),
                rec.ports,
                left,
                justification(rec),
                clock=clock,
            )
        answer["request"] = grant_json(granted)
        start = clock.now()
        _until(clock, timeout, lambda: _applied(gw, rec, end))
        proof, polls = wait_until_effective(
            gw,
            ref,
            source.split("/")[0],
            clock,
            rec.ports,
            max(1.0, timeout - (clock.now() - start).total_seconds()),
            firewall=pvm.public_ip_address or firewall_address(gw, ref),
        )
    except JitctlError as err:
        answer["error"] = {"type": type(err).__name__, "message": err.message}
        if err.hint:
            answer["error"]["hint"] = err.hint
        return Extension(False, answer, None, err.message, resent)
    answer["verification"] = proof_json(proof, polls)
    ends = _end_of(granted)
    return Extension(
        True, answer, ends, f"Azure granted access until {ends:%Y-%m-%d %H:%M}Z.", resent
    )


def _end_of(granted: RequestResult) -> datetime:
    return max(p.end_time for p in granted.ports)


def _applied(gw: Gateway, rec: RequestRecord, end: datetime) -> bool:
    """Azure applied the extension's initiate: its ports say Initiated in the history."""
    policy, _ = find_policy(gw, vm_ref(rec.vm_id), rec.ports, None)
    req = sent_for(policy, rec, end)
    statuses = [
        p.status for v in (req.vms if req else ()) if same_id(v.id, rec.vm_id) for p in v.ports
    ]
    return bool(statuses) and all(s.lower() == "initiated" for s in statuses)


def _until(clock: Clock, timeout: float, done: Callable[[], bool]) -> None:
    start = clock.now()
    delay = 1.0
    while not done():
        if (clock.now() - start).total_seconds() >= timeout:
            raise TimedOut(
                f"Azure had not applied the extension's initiate after {timeout:.0f}s.",
                "The older grant stays in force until its end; extend again later.",
            )
        clock.sleep(delay)
        delay = min(delay * 2, 5.0)
