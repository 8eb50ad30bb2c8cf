"""Why access did not become effective: what the request history and the NSGs show.

Initiate is asynchronous: its 202 means "queued", and a failure behind it (the NSG's rule limit,
a resource lock, an Azure Policy deny, a deallocated VM) shows nowhere but in the request's
status in the policy's history, or in the allow rule that never appears.
"""

from __future__ import annotations

from collections.abc import Sequence

from jitctl.errors import JitctlError
from jitctl.gateway import Gateway
from jitctl.ids import VmRef, same_id
from jitctl.model import Nsg
from jitctl.nsgeval import is_jit_rule
from jitctl.services.firewall import JIT_COLLECTIONS, FirewallRead

LIKELY = (
    "likely causes: the NSG's limit of rules, a resource lock on the NSG or its resource group "
    "(az lock list), an Azure Policy that denies the rule, or a deallocated VM"
)
LIKELY_FIREWALL = (
    "likely causes: a Firewall Policy manages the firewall (JIT writes classic rules only), a "
    "resource lock on the firewall or its resource group (az lock list), or an Azure Policy "
    "that denies the change"
)


def _jit_allow_rule(nsgs: Sequence[Nsg | None], port: int) -> str | None:
    for nsg in (n for n in nsgs if n is not None):
        for rule in nsg.rules:
            ranges = rule.destination_port_ranges or (rule.destination_port_range or "",)
            if rule.access.lower() == "allow" and is_jit_rule(rule) and str(port) in ranges:
                return f"{rule.name} (priority {rule.priority}) on NSG {nsg.name}"
    return None


def _jit_dnat_rule(firewall: FirewallRead, port: int) -> str | None:
    fw = firewall.firewall
    if fw is None:
        return None
    for rule in fw.dnat_rules:
        if rule.collection.lower() in JIT_COLLECTIONS and rule.translated_port == str(port):
            return f"{rule.name} (collection {rule.collection}) on Azure Firewall {fw.name}"
    return None


def _behind_firewall(firewall: FirewallRead, port: int, seen: str, status: str) -> str:
    """Behind Azure Firewall the DNAT rule decides, not the NSGs: what the history and the
    firewall say."""
    if status == "failed":
        return f"{seen}: Azure accepted it (202) and then could not apply it; {LIKELY_FIREWALL}"
    if status not in ("initiating", "initiated"):
        return f"{seen}: it has ended; request access again"
    if firewall.firewall is None:
        return (
            f"{seen}, and the Azure Firewall with address {firewall.address} cannot be read "
            f"({firewall.unseen}): Azure has not reported the request applied (Initiated) yet"
        )
    rule = _jit_dnat_rule(firewall, port)
    if rule:
        return f"{seen}, and the JIT DNAT rule {rule} is there, for another source or port"
    return (
        f"{seen}, and no JIT DNAT rule for port {port} is on Azure Firewall "
        f"{firewall.firewall.name}: Azure accepted it (202) but has not applied it; "
        f"{LIKELY_FIREWALL}"
    )


def explain(
    gw: Gateway,
    ref: VmRef,
    source: str,
    ports: Sequence[int],
    nsgs: Sequence[Nsg | None],
    firewall: FirewallRead | None = None,
) -> str:
    """One sentence per port: the newest request's status for it, and whether its rule is there
    (behind Azure Firewall: its DNAT rule, as far as the firewall can be read)."""
    from jitctl.services.policies import policies_of_vm
    from jitctl.services.query import grants

    try:
        history = [
            g for p in policies_of_vm(gw, ref) for g in grants(p) if same_id(g.vm_id, ref.id)
        ]
    except JitctlError as err:
        return f"the request history could not be read ({err.message})"
    history.sort(key=lambda g: g.start_time or g.end_time, reverse=True)
    parts = []
    for port in ports:
        rule = _jit_allow_rule(nsgs, port)
        mine = [g for g in history if g.port == port and g.source.split("/")[0] == source]
        if not mine:
            parts.append(f"no request for port {port} from {source} is in the JIT policy's history")
            continue
        g = mine[0]
        status = g.status + (f" ({g.status_reason})" if g.status_reason else "")
        seen = f"the newest request for port {port} from {source} is '{status}' in the history"
        if firewall is not None:
            mapped = f" with Azure Firewall port {g.mapped_port}" if g.mapped_port else ""
            parts.append(_behind_firewall(firewall, port, seen + mapped, g.status.lower()))
            continue
        if rule:
            parts.append(f"{seen}, and its JIT allow rule {rule} is there: a rule above it decides")
        elif (g.status or "").lower() == "failed":
            parts.append(f"{seen}: Azure accepted it (202) and then could not apply it; {LIKELY}")
        elif (g.status or "").lower() in ("initiating", "initiated"):
            nsg_names = ", ".join(n.name for n in nsgs if n) or "none"
            parts.append(
                f"{seen}, and no JIT allow rule for port {port} is on NSG {nsg_names}: "
                f"Azure accepted it (202) but has not applied it; {LIKELY}"
            )
        else:
            parts.append(f"{seen}: it has ended; request access again")
    return "; ".join(parts)
