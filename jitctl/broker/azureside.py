"""What the broker sends to Azure and how it reads Azure's answers back: the justification
that marks its initiates, finding one in a policy's history (after a broker died mid-way), and
the JSON its events keep of a grant and of the proof that access is live."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jitctl.broker.records import RequestRecord
from jitctl.ids import VmRef, same_id, segments
from jitctl.model import AccessRequest, GrantPort, JitPolicy
from jitctl.parsing import MAX_JUSTIFICATION
from jitctl.services.access import RequestResult
from jitctl.textsafe import printable

MARK = "broker:"  # the justification of every initiate the broker sends: broker:<id>: ...


def justification(rec: RequestRecord) -> str:
    """`broker:<id>: <requester>: <reason>`: Azure's history names the broker as requestor,
    so the person goes in the text, escaped and cut to Azure's length."""
    text = f"{MARK}{rec.id}: {rec.requester}: {printable(rec.reason or '')}".rstrip(": ")
    return text[:MAX_JUSTIFICATION]


def sent_before(policy: JitPolicy, rec: RequestRecord) -> AccessRequest | None:
    """This request's initiate in the policy's history, when a broker already sent it."""
    mark = f"{MARK}{rec.id}:"
    for req in reversed(policy.requests):
        text = req.justification or ""
        if (text == mark[:-1] or text.startswith(mark)) and any(
            same_id(v.id, rec.vm_id) for v in req.vms
        ):
            return req
    return None


def vm_ref(vm_id: str) -> VmRef:
    seg = segments(vm_id)
    return VmRef(seg["subscriptions"], seg["resourcegroups"], seg["virtualmachines"])


def result_of(policy: JitPolicy, rec: RequestRecord, req: AccessRequest) -> RequestResult:
    ports: Sequence[GrantPort] = next((v.ports for v in req.vms if same_id(v.id, rec.vm_id)), ())
    return RequestResult(
        policy.id, rec.vm_id, tuple(ports), req.start_time, req.requestor, req.justification
    )


def grant_json(g: RequestResult) -> dict[str, Any]:
    return {
        "policy": g.policy_id,
        "start": g.start_time.isoformat() if g.start_time else None,
        "requestor": g.requestor,
        "justification": g.justification,
        "ports": [
            {
                "number": p.number,
                "source": p.source,
                "end": p.end_time.isoformat(),
                "status": p.status,
                **({"mapped_port": p.mapped_port} if p.mapped_port else {}),
            }
            for p in g.ports
        ],
        **({"notes": list(g.notes)} if g.notes else {}),
    }
