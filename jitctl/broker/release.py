"""Revoking in Azure: removing the JIT allow rules a revoked request opened.

Azure has no call to end a JIT request early, so the broker deletes the JIT allow rule (same
VM, port and source) from the NSGs on the VM's paths. A rule is matched by what it lets in,
not by the request that made it: when a newer request for the same VM and port superseded this
one (Azure: NewerRequestInitiated), the rule there is the newer grant's, even from the same
source (a keep-alive renewal, a colleague behind the same NAT). So the policy's history is
read first, and a port a newer grant holds is left alone, and the release event says so.

A request revoked while activating was never seen live, but Azure may still apply its initiate
after the revoke (it promises no time): its release waits until the history says Initiated
(then the allow rule goes, as for an active one) or Failed or ended (nothing to remove). Until
then nothing is recorded and the release stays pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from jitctl.broker.azureside import result_of, sent_before, vm_ref
from jitctl.broker.history import broker_id, own, status_words, superseded_ports
from jitctl.broker.records import RequestRecord
from jitctl.errors import JitctlError, NotFound, Unavailable
from jitctl.gateway import Gateway
from jitctl.ids import VmRef
from jitctl.model import AccessRequest, Nsg, SecurityRule
from jitctl.nsgeval import is_jit_rule
from jitctl.services.firewall import firewall_address
from jitctl.services.reads import policies_of_vm
from jitctl.services.topology import read_nsgs, read_path

# What revoking does, in the words every release event and the docs use.
REVOKE_NOTE = (
    "Azure has no call to end a JIT request early: the broker removed the JIT allow rule from "
    "the VM's network security groups. Connections already open survive until they close, and "
    "the JIT policy's request history still lists the request until its end time."
)
# What a release says when Azure never applied the request's initiate.
UNAPPLIED_NOTE = (
    "Revoked while activating: Azure never applied the request's initiate, so no JIT allow "
    "rule of it was written and there was nothing to remove."
)
WAIT: Literal["wait"] = "wait"  # Azure is still applying the initiate: release later
# The release event of a request revoked after its claim, before its initiate was sent.
UNSENT = (
    "Revoked before its initiate was sent: nothing was sent to Azure, so there was no access "
    "to remove."
)


def overtaken(what: str) -> str:
    """The worker's `gave_up` event: it saw `what` of an initiate revoked meanwhile."""
    return (
        f"Revoked while activating: {what.rstrip('.')}. The request stays revoked; the release "
        "removes the JIT allow rule once Azure's history says the initiate was applied, or "
        "finds none to remove."
    )


@dataclass(frozen=True)
class Released:
    request_id: str
    removed: tuple[str, ...]  # "<nsg name>/<rule name>"
    error: str | None = None
    left: tuple[int, ...] = ()  # ports a newer grant holds: their rules were left alone


@dataclass
class Outcome:
    """What removing the rules did: the release event's reason and data."""

    removed: list[str] = field(default_factory=list)
    error: str | None = None
    left: dict[int, AccessRequest] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=lambda: {"note": REVOKE_NOTE})
    said: str | None = None  # the reason, when no rule was looked for (Azure applied none)

    def reason(self) -> str:
        if self.said:
            return self.said
        if self.error:
            return f"The allow rules were not removed: {self.error}"
        if self.removed:
            said = f"Removed {len(self.removed)} JIT allow rule(s); open connections survive."
        elif self.left:
            said = "No JIT allow rule was removed."
        else:
            said = "No JIT allow rule for this request was left to remove."
        if self.left:
            ports = ", ".join(str(n) for n in sorted(self.left))
            newer = sorted({_named(r) for r in self.left.values()})
            said += (
                f" Port(s) {ports} left alone: a newer request ({'; '.join(newer)}) superseded "
                "this one in Azure, and the allow rule there is the newer grant's."
            )
        return said


def release_in_azure(gw: Gateway, rec: RequestRecord) -> Outcome | None:
    """Remove this request's allow rules where no newer grant holds the port. Unavailable
    (Azure did not answer) is raised: try again. Another error (no right to delete, say) is
    in the outcome. None: revoked while activating, and Azure is still applying its initiate
    (its history says Initiating): try again later."""
    ref = vm_ref(rec.vm_id)
    if not rec.was_live:
        early = _unless_applied(gw, rec, ref)
        if early == WAIT:
            return None
        if isinstance(early, Outcome):
            return early
    out = Outcome()
    try:
        # the NSGs before the history: a newer grant applied in between has removed the rule
        # read here (the delete finds nothing) and its own rule, named anew, is not in the list
        found = _allow_rules_of(gw, rec, ref, rec.ports)
        out.left = _held_by_newer(gw, rec, ref)
        ports = tuple(n for n in rec.ports if n not in out.left)
        for nsg, rule in [(n, r) for n, r, ip in found if opened_by(r, rec, ip, ports)]:
            try:
                gw.delete_nsg_rule(nsg.id, rule.name)
            except NotFound:
                continue  # expired or removed meanwhile: gone either way
            out.removed.append(f"{nsg.name}/{rule.name}")
        fw = firewall_address(gw, ref)
        if fw:
            out.data["firewall"] = (
                f"The VM is reached through Azure Firewall {fw}: its JIT DNAT rule was not "
                "removed and lets the source in until the request's end time."
            )
    except Unavailable:
        raise
    except JitctlError as err:  # e.g. Forbidden: no network write right
        out.error = err.message
        out.data["error"] = {"type": type(err).__name__, "message": err.message, "hint": err.hint}
    out.data["removed"] = out.removed
    if out.left:
        out.data["left"] = [
            {"port": n, "newer": {"request": broker_id(r), "requestor": r.requestor}}
            for n, r in sorted(out.left.items())
        ]
    return out


def _unless_applied(
    gw: Gateway, rec: RequestRecord, ref: VmRef
) -> Outcome | Literal["wait"] | None:
    """What Azure's history says of the initiate of a request revoked before it was live:
    still Initiating on a port (WAIT), applied on one (None: remove its rules as usual), or
    never applied: never sent, Failed, or ended first (the outcome: nothing to remove)."""
    try:
        policies = policies_of_vm(gw, ref)
    except Unavailable:
        raise
    except JitctlError:
        return None  # the usual way says what stands in it
    policy = next((p for p in policies if own(p, rec)), None)
    sent = sent_before(policy, rec) if policy else None
    if policy is None or sent is None:
        said = (
            "Azure's history holds no initiate of this request (never sent, or refused): "
            "there was no access to remove."
        )
        return _unapplied(said, [])
    ports = result_of(policy, rec, sent).ports
    statuses = {p.status.lower() for p in ports}
    if "initiating" in statuses:
        return WAIT
    if "initiated" in statuses:
        return None
    words = status_words(ports)
    said = f"Azure never applied the initiate (its history says {words}): no rule to remove."
    azure = [{"number": p.number, "status": p.status, "reason": p.status_reason} for p in ports]
    return _unapplied(said, azure)


def _unapplied(said: str, ports: list[dict[str, Any]]) -> Outcome:
    data: dict[str, Any] = {"note": UNAPPLIED_NOTE, "removed": [], "azure": {"ports": ports}}
    return Outcome(data=data, said=said)


def _held_by_newer(gw: Gateway, rec: RequestRecord, ref: VmRef) -> dict[int, AccessRequest]:
    """The ports of this request a newer grant took over, by the policy's history (none when
    the VM is in no policy any more: then no grant can be newer)."""
    try:
        policies = policies_of_vm(gw, ref)
    except NotFound:
        return {}
    policy = next((p for p in policies if own(p, rec)), None)
    return superseded_ports(policy, rec) if policy else {}


def _named(req: AccessRequest) -> str:
    rid = broker_id(req)
    return f"broker request {rid}" if rid else f"by {req.requestor or 'someone'}"


def _allow_rules_of(
    gw: Gateway, rec: RequestRecord, ref: VmRef, ports: tuple[int, ...]
) -> list[tuple[Nsg, SecurityRule, str]]:
    """The JIT allow rules for this request's source and `ports`, each with its NSG and the
    private address of the path it guards."""
    vm = gw.get_vm(ref)
    found: list[tuple[Nsg, SecurityRule, str]] = []
    seen: set[str] = set()
    for nic in vm.nics:
        path = read_path(gw, vm, nic.id)
        for nsg in read_nsgs(gw, path):
            if nsg is None or nsg.id.lower() in seen:
                continue
            seen.add(nsg.id.lower())
            ip = path.private_ip
            found += [(nsg, r, ip) for r in nsg.rules if opened_by(r, rec, ip, ports)]
    return found


def opened_by(
    rule: SecurityRule, rec: RequestRecord, private_ip: str, ports: tuple[int, ...]
) -> bool:
    """A JIT allow rule this request's grant would have written: inbound, to the VM's address,
    one of `ports`, from its source (as Azure writes it: with or without /32)."""
    if not (is_jit_rule(rule) and rule.access.lower() == "allow"):
        return False
    if rule.direction.lower() != "inbound":
        return False
    sources = {s.removesuffix("/32") for s in (*rule.source_address_prefixes,) if s}
    if rule.source_address_prefix:
        sources.add(rule.source_address_prefix.removesuffix("/32"))
    if (rec.source or "").removesuffix("/32") not in sources:
        return False
    dests = {*rule.destination_address_prefixes, rule.destination_address_prefix or ""}
    if private_ip not in dests:
        return False
    ranges = {*rule.destination_port_ranges, rule.destination_port_range or ""}
    return any(str(p) in ranges for p in ports)
