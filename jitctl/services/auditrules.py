"""The kinds of audit finding (SARIF's rules): a stable id, a severity, what it means and what
to do about it."""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("high", "medium", "low")


@dataclass(frozen=True)
class Rule:
    """One kind of finding (the SARIF rule): a stable id, a severity, what it means."""

    id: str
    severity: str
    title: str
    help: str


RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule(
            "bypass",
            "high",
            "A management port is reachable from the Internet by a rule that is not JIT's",
            "Remove or narrow the rule, so that only JIT's time-limited rules open the port.",
        ),
        Rule(
            "no-nsg",
            "high",
            "No NSG guards the VM's NIC or subnet: JIT cannot protect it",
            "Put an NSG on the NIC or subnet, then add the VM to a JIT policy (jitctl enable).",
        ),
        Rule(
            "not-in-policy",
            "medium",
            "The VM is in no JIT policy",
            "Add it with jitctl enable, or in a policy file (jitctl policy apply).",
        ),
        Rule(
            "any-source",
            "medium",
            "A JIT policy lets a request open a port to any source address",
            "Limit the port's allowed sources to the ranges requests come from.",
        ),
        Rule(
            "unjudged-rule",
            "medium",
            "A rule that is not JIT's may open a management port: its source (a service tag, "
            "source ports) cannot be judged offline",
            "Check what the rule lets in (the portal's effective security rules, or Network "
            "Watcher's IP flow verify); narrow it, or leave the port to JIT.",
        ),
        Rule(
            "nic-not-indexed",
            "medium",
            "A NIC the VM names is not in Resource Graph yet: the VM's NSG path is not judged",
            "Resource Graph lags ARM by minutes: audit again later, or check the VM now with "
            "jitctl verify (read fresh from ARM).",
        ),
        Rule(
            "stale-policy-entry",
            "low",
            "A JIT policy lists a VM that no longer exists (or too new for Resource Graph)",
            "Remove the entry (jitctl disable --ids ID), or prune with jitctl policy apply --prune.",
        ),
        Rule(
            "long-duration",
            "low",
            "A JIT policy allows requests of 24 hours",
            "Lower the port's maximum request duration to what a session needs.",
        ),
        Rule(
            "open-grant",
            "low",
            "Access granted by JIT is open now",
            "Nothing to do if expected; it closes at its end time.",
        ),
    )
}
