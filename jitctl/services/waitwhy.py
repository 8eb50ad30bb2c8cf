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

LIKELY = (
    "likely causes: the NSG's limit of rules, a resource lock on the NSG or its resource group "
    "(az lock list), an Azure Policy that denies the rule, or a deallocated VM"
)


def _jit_allow_rule(nsgs: Sequence[Nsg | None], port: int) -> str | None:
    for nsg in (n for n in nsgs if n is not None):
        for rule in nsg.rules:
            ranges = rule.destination_port_ranges or (rule.destination_port_range or "",)
            if rule.access.lower() == "allow" and is_jit_rule(rule) and str(port) in ranges:
                return f"{rule.name} (priority {rule.priority}) on NSG {nsg.name}"
    return None


def explain(
    gw: Gateway, ref: VmRef, source: str, ports: Sequence[int], nsgs: Sequence[Nsg | None]
) -> str:
    """One sentence per port: the newest request's status for it, and whether its rule is there."""
    from jitctl.services.query import grants
    from jitctl.services.reads import policies_of_vm

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
