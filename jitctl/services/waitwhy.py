"""Why access did not become effective: what the request history and the NSGs show.

Initiate is asynchronous: its 202 means "queued", and a failure behind it (the NSG's rule limit,
a resource lock, an Azure Policy deny, a deallocated VM) shows nowhere but in the request's
status in the policy's history, or in the allow rule that never appears.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from jitctl.errors import JitctlError
from jitctl.gateway import Gateway
from jitctl.ids import VmRef, same_id
from jitctl.model import Nsg
from jitctl.nsgeval import is_jit_rule
from jitctl.services.firewall import JIT_COLLECTIONS, FirewallRead

if TYPE_CHECKING:
    from jitctl.services.query import Grant

LIKELY = "a lock (az lock list), the NSG's rule limit, an Azure Policy deny or a deallocated VM"
# JIT writes classic rule collections only: a Firewall Policy keeps its DNAT rule out
LIKELY_FIREWALL = (
    "a Firewall Policy managing the firewall (JIT writes classic rules only), a lock "
    "(az lock list) or an Azure Policy deny"
)


@dataclass(frozen=True)
class Why:
    """What a wait saw, in a few words, and what to do; `pending`: Azure has not applied a
    request it accepted (waiting longer may be enough)."""

    seen: str
    advice: str
    pending: bool = False


def _jit_allow_rule(nsgs: Sequence[Nsg | None], port: int) -> str | None:
    for nsg in (n for n in nsgs if n is not None):
        for rule in nsg.rules:
            ranges = rule.destination_port_ranges or (rule.destination_port_range or "",)
            if rule.access.lower() == "allow" and is_jit_rule(rule) and str(port) in ranges:
                return f"{rule.name} (priority {rule.priority}) in {nsg.name}"
    return None


def _jit_dnat_rule(firewall: FirewallRead, port: int) -> str | None:
    fw = firewall.firewall
    if fw is None:
        return None
    for rule in fw.dnat_rules:
        if rule.collection.lower() in JIT_COLLECTIONS and rule.translated_port == str(port):
            return f"{rule.name} (collection {rule.collection}) on Azure Firewall {fw.name}"
    return None


def _behind_firewall(firewall: FirewallRead, port: int, says: str, status: str) -> Why:
    """Behind Azure Firewall the DNAT rule decides, not the NSGs."""
    if status == "failed":
        return Why(
            says,
            f"Azure could not apply it: look for {LIKELY_FIREWALL}; mend it, then request again.",
        )
    if firewall.firewall is None:
        return Why(
            f"{says}; the Azure Firewall with address {firewall.address} cannot be read "
            f"({firewall.unseen})",
            "Azure has not reported the request applied (Initiated) yet; wait longer, or get read "
            "access to the firewall's subscription (jitctl doctor says which).",
            pending=True,
        )
    rule = _jit_dnat_rule(firewall, port)
    if rule:
        return Why(
            f"{says}; the JIT DNAT rule {rule} is there, for another source or port",
            "Request access for this address and port.",
        )
    return Why(
        f"{says}; no JIT DNAT rule for port {port} on Azure Firewall {firewall.firewall.name}",
        f"Azure usually applies a request within a minute; if it stays, look for {LIKELY_FIREWALL}.",
        pending=True,
    )


def _newest(history: Sequence[Grant], port: int, source: str) -> Grant | None:
    mine = [g for g in history if g.port == port and g.source.split("/")[0] == source]
    return mine[0] if mine else None


def explain(
    gw: Gateway,
    ref: VmRef,
    source: str,
    ports: Sequence[int],
    nsgs: Sequence[Nsg | None],
    problem: str,
    now: datetime,
    firewall: FirewallRead | None = None,
) -> Why:
    """For the first port still shut: the newest request's status in the policy's history, and
    whether its allow rule is on the NSGs (`problem`: what verify says blocks it; behind an
    Azure Firewall its DNAT rule, not the NSGs, is what JIT adds)."""
    from jitctl.services.query import grants
    from jitctl.services.reads import policies_of_vm

    try:
        history = [
            g for p in policies_of_vm(gw, ref) for g in grants(p, now) if same_id(g.vm_id, ref.id)
        ]
    except JitctlError as err:
        return Why(f"{problem}; the request history could not be read", err.hint or err.message)
    history.sort(key=lambda g: g.start_time or g.end_time, reverse=True)
    nsg_names = ", ".join(n.name for n in nsgs if n) or "no NSG"
    for port in ports:
        g = _newest(history, port, source)
        if g is None:
            return Why(
                f"no request for port {port} from {source} in the JIT policy's history",
                "Request access for that address and port.",
            )
        says = f"Azure says {g.status}" + (f" ({g.status_reason})" if g.status_reason else "")
        status = (g.status or "").lower()
        if status not in ("failed", "initiating", "initiated"):
            return Why(f"{says}; the request has ended", "Request access again.")
        if firewall is not None:
            mapped = f", Azure Firewall port {g.mapped_port}" if g.mapped_port else ""
            return _behind_firewall(firewall, port, says + mapped, status)
        rule = _jit_allow_rule(nsgs, port)
        if rule and status != "failed":
            return Why(
                f"{says}; its allow rule {rule} is there, but {problem}",
                "A rule above JIT's decides: remove or narrow it.",
            )
        missing = f"no allow rule for {source} port {port} in {nsg_names}"
        if status == "failed":
            return Why(
                f"{says}; {missing}",
                f"Azure could not apply it: look for {LIKELY}; mend it, then request again.",
            )
        return Why(
            f"{says}; {missing}",
            f"Azure usually applies a request within a minute; if it stays, look for {LIKELY}.",
            pending=True,
        )
    return Why(problem, "Check the rules shown by 'jitctl verify -o json'.")
