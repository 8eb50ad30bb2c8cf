"""What the broker sends to Azure and how it reads Azure's answers back: the justification
that marks its initiates, finding one in a policy's history (after a broker died mid-way), and
the JSON its events keep of a grant and of the proof that access is live; and what a request
reads of Azure when it is made: the VM's tags the rules read, and whether its JIT policy would
take the initiate."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from jitctl.broker.records import RequestRecord
from jitctl.errors import NotFound, VmNotInPolicy
from jitctl.ids import VmRef, same_id, segments
from jitctl.model import AccessRequest, GrantPort, JitPolicy
from jitctl.parsing import MAX_JUSTIFICATION, parse_vm
from jitctl.services.access import RequestResult, check_request, find_policy
from jitctl.textsafe import printable

T = TypeVar("T")

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


class KeptReads:
    """What a request reads of Azure when it is made, through one gateway, each answer kept
    `ttl` seconds: a burst of requests for one VM reads Azure once. A read that fails is
    never kept (the next request asks again)."""

    def __init__(
        self, gateway: Any, ttl: float = 30.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.gateway = gateway
        self.ttl = ttl
        self.monotonic = monotonic
        self._kept: dict[Any, tuple[float, Any]] = {}

    def kept(self, key: Any, read: Callable[[], T]) -> T:
        now = self.monotonic()
        got = self._kept.get(key)
        if got is None or now - got[0] >= self.ttl:
            got = self._kept[key] = (now, read())
        return got[1]


class VmTags(KeptReads):
    """The VM's tags as the rules read them when a request is made or explained (reading them
    also proves the VM exists). A tag changed in Azure counts within `ttl`."""

    def __call__(self, vm_id: str) -> tuple[tuple[str, str], ...]:
        ref = parse_vm(vm_id, resource_group=None, subscription_id=None)
        return self.kept(vm_id.lower(), lambda: tuple(self.gateway.get_vm(ref).tags))


class JitCheck(KeptReads):
    """Would Azure take the initiate? A JIT policy names the VM with every requested port, the
    source within the ports' allowed prefixes, the duration within their maximum (what
    `jitctl request` checks before it sends). Checked when a request is made, so nobody is
    asked to approve what Azure would refuse; a policy that does not cover the VM is never
    kept."""

    def __call__(self, vm_id: str, ports: Sequence[int], source: str, duration: timedelta) -> None:
        ref = parse_vm(vm_id, resource_group=None, subscription_id=None)
        try:
            policy, pvm = self.kept(
                (vm_id.lower(), tuple(sorted(ports))),
                lambda: find_policy(self.gateway, ref, ports, None),
            )
        except VmNotInPolicy as err:  # said to a requester, who cannot enable it themselves
            fix = err.suggested[0]
            raise NotFound(err.message, f"Ask an admin to run: {fix}", [fix]) from None
        check_request(policy, pvm, ports, source, duration)
