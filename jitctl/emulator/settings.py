"""The emulator's settings (behaviour Azure does not publish, or that tests want to control),
its faults and its log entries: plain data, kept in the state file with the resources."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Settings:
    """Behaviour Azure does not publish, or that tests want to control."""

    propagation_delay: float = 0.0  # seconds from initiate to the allow rule (Azure: ~1 minute)
    latency: float = 0.0  # seconds every ARM call takes, slept outside the lock (calls overlap)
    page_size: int = 100  # items per list page before a nextLink
    deny_priority: int = 4096  # preferred JIT deny priority
    # "below-free": 4096, or the next free number below it; "above-allow": one above the
    # highest-priority allow rule that covers the ports (as seen at 1000 above an allow at 1001).
    deny_priority_strategy: str = "below-free"
    allow_priority: int = 100  # JIT allow priority; the next free one above when taken
    # "next-free": the first free number from allow_priority up; "scatter": when allow_priority
    # is taken, a free number up to 40 above it, not the next (observed from 100 to 140).
    allow_priority_strategy: str = "next-free"
    # JIT renumbers existing rules (MicrosoftDocs/azure-docs#103634): when the number it wants
    # is taken by a rule that is not JIT's, that rule and the ones right after it move up one.
    renumber: bool = False
    requestor: str = "jitctl-emulator@contoso.com"
    lro_polls: int = 1  # how many times an async operation answers InProgress first
    graph_quota: int = 15  # Resource Graph queries per window per user (Azure's default); 0: none
    graph_quota_window: float = 5.0  # seconds
    # Defender for Servers plan of every subscription: "P2" (JIT needs it), "P1" or "off"
    defender_plan: str = "P2"
    locked_scopes: list[str] = field(default_factory=list)  # ids under a ReadOnly lock
    permissions: list[str] = field(default_factory=lambda: ["*"])  # the caller's actions
    not_permissions: list[str] = field(default_factory=list)
    # Subscriptions where the caller holds no role (a landing zone's hub, say): ARM answers
    # every request under them 403 AuthorizationFailed, and Resource Graph and the subscription
    # list leave them out. JIT's own service still writes there (it acts as itself).
    unreadable_subscriptions: list[str] = field(default_factory=list)
    # What happens behind an initiate's 202: "apply" (the allow rule appears), "never" (accepted,
    # never applied: the history keeps "Initiating"), "fail" (the history says "Failed" with
    # `initiate_failure_reason`). A locked NSG fails the request whatever this says.
    initiate_fate: str = "apply"
    initiate_failure_reason: str = "SecurityRulesLimitReached"
    # Azure Firewall (jitctl.emulator.firewall): the first mapped (DNAT) port JIT hands out, and
    # the priority of the MDC-JIT NAT rule collection it creates; both unpublished.
    firewall_ports_from: int = 50000
    firewall_collection_priority: int = 3000
    # How a requested source must match a policy port's allowed prefixes: "containment" (within
    # one, by CIDR) or "verbatim" (the same text, as one report suggests; unconfirmed).
    source_match: str = "containment"
    # The source of an initiate port that names none: the caller's address as ARM sees it.
    # "peer": the TCP client's address (`emulator serve`; 127.0.0.1 in-process).
    caller_address: str = "203.0.113.10"
    # A port number sent as a string ("22"): off, stored and answered as the number 22 (what
    # Azure answers is unconfirmed); on, kept as sent, so clients meet the string too.
    port_numbers_as_sent: bool = False


@dataclass
class Fault:
    """Answer `status` instead of the real response, `times` times (or with `rate`).

    Latency is slept outside the backend's lock, so parallel clients overlap as with ARM."""

    status: int
    match: str = ""  # substring of the path (case-insensitive); empty matches all
    method: str = ""  # empty matches all
    times: int = 1
    rate: float = 0.0  # when > 0, a probability for each matching request instead of times
    retry_after: int | None = None
    latency: float = 0.0  # seconds to wait before answering (with status 0: just latency)
    # True: do the request, then answer `status` instead of the real reply (an answer lost
    # after the fact: the write or initiate happened, the client does not know it).
    after: bool = False


def write_faults(fault_rate: float) -> list[Fault]:
    """`fault_rate` of JIT policy writes and initiates answered 503, half before doing them and
    half after (the answer lost), as `emulator serve --fault-rate` offers."""
    if fault_rate <= 0:
        return []
    return [
        Fault(503, match="/jitNetworkAccessPolicies/", method=m, rate=fault_rate / 2, after=a)
        for m in ("PUT", "DELETE", "POST")
        for a in (False, True)
    ]


@dataclass
class LogEntry:
    method: str
    path: str
    api_version: str | None
    status: int
