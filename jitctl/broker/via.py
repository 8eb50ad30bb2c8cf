"""Access through the broker for a requester without Azure rights: reuse an active grant of
theirs for the same VM, port and source, else ask for one; wait until the broker says it is
active (Azure took the initiate and the broker's verify found it live); then where to
connect, as the broker found it. Works on the broker's API documents (a client with
`call(method, path, body=None, params=None)`), never on Azure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from jitctl.clock import Clock
from jitctl.errors import AzureError, NotEffective, Refused, TimedOut
from jitctl.ids import name_of
from jitctl.parsing import format_iso_duration

STEPS = (1.0, 2.0, 3.0, 5.0)  # seconds between looks while waiting for the broker
WAITING = ("pending", "approved", "activating")
# what a request still waiting means, said when a wait runs out
STILL = {
    "activating": (
        ": the broker sent the initiate (or is sending it) and access is not live yet; Azure "
        "promises no time to apply it, and the broker keeps checking until access is live, "
        "Azure says it failed, or its end time passes"
    )
}


class BrokerApi(Protocol):
    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any: ...


@dataclass(frozen=True)
class BrokerReady:
    """Access the broker opened and verified: where to connect (as AccessReady has it, so the
    launchers and the relay take either), and the broker's request."""

    vm_id: str
    port: int
    source: str
    end_time: datetime
    reused: bool
    connect_host: str
    connect_port: int
    via: str  # "public" | "private" | "firewall"
    request_id: str
    verification: Mapping[str, Any]  # the broker's verify proof (views' "access")

    @property
    def vm_name(self) -> str:
        return name_of(self.vm_id)


@dataclass(frozen=True)
class BrokerAsk:
    """What to ask the broker for (the VM as named; the broker resolves it)."""

    vm: str
    resource_group: str
    subscription: str | None
    port: int
    source: str
    reason: str | None
    ticket: str | None = None
    duration: timedelta | None = None  # None: the broker's default (an hour, or the rules' max)
    min_remaining: timedelta = timedelta(minutes=15)
    timeout: timedelta = timedelta(minutes=5)
    private: bool = False

    def body(self) -> dict[str, Any]:
        body = {
            "vm": self.vm,
            "resource_group": self.resource_group,
            "subscription": self.subscription,
            "ports": [self.port],
            "duration": format_iso_duration(self.duration) if self.duration else None,
            "reason": self.reason,
            "ticket": self.ticket,
            "source": self.source,
        }
        return {k: v for k, v in body.items() if v is not None}


def wait_active(
    api: BrokerApi,
    doc: dict[str, Any],
    limit: float,
    clock: Clock,
    say: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Until the broker says active (Azure took the initiate and verify found access live),
    or a state that will never get there: denied, cancelled, expired undecided (Refused),
    failed, or ended before it was live (NotEffective); still waiting after `limit` seconds:
    TimedOut, with the id and what the state means."""
    waited, step = 0.0, 0
    said = False
    while doc["state"] in WAITING:
        if doc["state"] == "pending" and not said:
            say(f"jitctl: waiting for approval of request {doc['id']}")
            said = True
        if waited >= limit:
            raise TimedOut(
                f"Request {doc['id']} is still {doc['state']}{STILL.get(doc['state'], '')}.",
                f"See where it is with: jitctl broker show {doc['id']}",
            )
        pause = STEPS[min(step, len(STEPS) - 1)]
        clock.sleep(pause)
        waited, step = waited + pause, step + 1
        doc = api.call("GET", f"/requests/{doc['id']}")
    if doc["state"] == "active":
        return doc
    if doc["state"] == "failed":
        failure = doc.get("failure") or {}
        raise NotEffective(
            f"Request {doc['id']} failed: "
            + (failure.get("reason") or "Azure refused the initiate or could not apply it."),
            failure.get("hint") or f"The log has Azure's answer: jitctl broker show {doc['id']}",
        )
    if doc["state"] == "expired":  # it was waiting: it ended before it was ever live
        raise NotEffective(
            f"Request {doc['id']} ended before access went live: Azure had not applied it by "
            "its end time, or a newer request for the VM and port superseded it.",
            f"The log says which: jitctl broker show {doc['id']}",
        )
    raise Refused(f"Request {doc['id']} is {doc['state']}.", "Ask again, or ask an approver why.")


def _at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _same_target(doc: Mapping[str, Any], ask: BrokerAsk) -> bool:
    return (
        str(doc["vm"]).lower() == ask.vm.lower()
        and str(doc["resource_group"] or "").lower() == ask.resource_group.lower()
        and (
            ask.subscription is None or str(doc["subscription"]).lower() == ask.subscription.lower()
        )
        and ask.port in doc["ports"]
        and str(doc["source"] or "").split("/")[0] == ask.source.split("/")[0]
    )


def reusable(docs: list[dict[str, Any]], ask: BrokerAsk, now: datetime) -> dict[str, Any] | None:
    """My active grant for this VM, port and source with at least `min_remaining` left (the
    one that lasts longest)."""
    fit = [
        d
        for d in docs
        if d["state"] == "active"
        and d.get("access")
        and _same_target(d, ask)
        and (end := _at(d["ends_at"])) is not None
        and end - now >= ask.min_remaining
    ]
    return max(fit, key=lambda d: str(d["ends_at"]), default=None)


def ready(
    api: BrokerApi, ask: BrokerAsk, clock: Clock, say: Callable[[str], None] = lambda _m: None
) -> BrokerReady:
    """Reuse or ask, wait until active, and where to connect."""
    mine = api.call("GET", "/requests", params={"scope": "mine"})["requests"]
    doc = reusable(mine, ask, clock.now())
    reused = doc is not None
    if doc is not None:
        say(f"Reusing broker request {doc['id']} until {_at(doc['ends_at']):%H:%M} UTC.")
    else:
        doc = api.call("POST", "/requests", ask.body())
        say(f"Asked the broker: request {doc['id']} is {doc['state']}.")
        doc = wait_active(api, doc, ask.timeout.total_seconds(), clock, say)
    return ready_of(doc, ask, reused)


def ready_of(doc: Mapping[str, Any], ask: BrokerAsk, reused: bool) -> BrokerReady:
    """Where to connect, from an active request's document."""
    access = doc.get("access")
    if not access:
        raise AzureError(
            f"The broker says request {doc['id']} is active but not where to connect.",
            "The broker is older than this jitctl: upgrade it, or connect with the address "
            "from your team.",
        )
    proof = access["verification"]
    if ask.private:
        host, port, via = proof["private_ip"], ask.port, "private"
    else:
        spot = next((c for c in access["connect"] if c["port"] == ask.port), None)
        if spot is None or not spot["host"]:
            note = spot.get("note") if spot else None
            raise Refused(
                note or f"The broker gave no address for port {ask.port} of {doc['vm']}.",
                "Connect over VPN or peering with --private.",
            )
        host, port, via = spot["host"], spot["connect_port"], spot["via"]
    ends = _at(doc["ends_at"]) or _at(doc["updated_at"])  # active: the broker has Azure's end
    return BrokerReady(
        doc["vm_id"],
        ask.port,
        ask.source,
        ends or datetime.min,
        reused,
        host,
        port,
        via,
        doc["id"],
        proof,
    )
