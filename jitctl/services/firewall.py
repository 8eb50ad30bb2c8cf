"""A VM behind Azure Firewall: is there a DNAT rule that lets the source in?

For such a VM the JIT policy names the firewall's public address (`publicIpAddress`), and a
request's ports get a `mappedPort`: JIT writes a DNAT rule in the firewall's `MDC-JIT` NAT rule
collection (formerly `ASC-JIT`) from the requested source to the firewall's address and the
mapped port, translated to the VM's private address and the port. The firewall also translates
the source to one of its own private addresses (Azure Firewall NAT behaviours, Microsoft's
network security blog, 2023), so the VM's NSGs never see the requester's address: an NSG
verdict for the requester proves nothing there, and jitctl judges by the DNAT rule.

In Azure's landing-zone layout the firewall and its public IP live in a hub (connectivity)
subscription and the VMs in spokes: the firewall is looked for in every subscription the caller
can read. Where the caller cannot read it (no role in the hub), jitctl says so and trusts
Azure's grant instead: a request the history reports Initiated, with its mapped port. Such a
verdict is not independently verified, and says so (`verified`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from jitctl.errors import Forbidden, NotFound
from jitctl.gateway import Gateway
from jitctl.ids import VmRef, same_id
from jitctl.model import DnatRule, Firewall
from jitctl.nsgeval import source_within

if TYPE_CHECKING:  # query -> policies -> writes -> verify -> here: read at run time
    from jitctl.services.query import Grant

JIT_COLLECTIONS = ("mdc-jit", "asc-jit")


@dataclass(frozen=True)
class FirewallRead:
    """The Azure Firewall a JIT policy names for a VM, as far as the caller can read it."""

    address: str  # the firewall's public address, as the policy names it
    firewall: Firewall | None
    unseen: str | None = None  # why it could not be read (then `firewall` is None)
    history: tuple[Grant, ...] = ()  # when unseen: the VM's requests, Azure's word instead


@dataclass(frozen=True)
class FirewallVerdict:
    """The firewall's answer for one port: the DNAT rule that lets the source in, if any; or,
    when the firewall cannot be read, Azure's grant for it."""

    address: str  # the firewall's public address, as the policy names it
    firewall_id: str | None  # None: the firewall could not be read (`unseen` says why)
    rule: DnatRule | None
    unseen: str | None = None
    grant: Grant | None = None  # with `unseen`: the Initiated grant jitctl trusts, if any

    @property
    def verified(self) -> bool:
        """False: the verdict is Azure's grant, not a DNAT rule jitctl read."""
        return self.unseen is None

    @property
    def allowed(self) -> bool:
        return self.rule is not None or (self.unseen is not None and self.grant is not None)

    @property
    def by_jit(self) -> bool:
        if self.rule is None:
            return self.allowed  # a grant of the JIT policy
        return self.rule.collection.lower() in JIT_COLLECTIONS

    @property
    def mapped_port(self) -> int | None:
        if self.rule is None:
            return self.grant.mapped_port if self.grant else None
        ports = self.rule.destination_ports
        return int(ports[0]) if ports and ports[0].isdigit() else None

    def note(self) -> str | None:
        """The line to say once when the firewall could not be read; None when it was."""
        if self.unseen is None:
            return None
        return (
            f"cannot read the Azure Firewall with address {self.address} ({self.unseen}): "
            "trusting Azure's grant (status Initiated, with a mapped port) without checking "
            "its DNAT rule"
        )

    def problem(self, port: int, source: str, private_ip: str) -> str:
        if self.firewall_id is None:
            return (
                f"the Azure Firewall with address {self.address} cannot be read "
                f"({self.unseen}), and Azure reports no grant (Initiated, with a mapped port) "
                f"for port {port} from {source}"
            )
        name = self.firewall_id.rstrip("/").rsplit("/", 1)[-1]
        return (
            f"no DNAT rule of Azure Firewall {name} ({self.address}) lets {source} in to "
            f"{private_ip}:{port}"
        )


def _port_in(port: str, wanted: int) -> bool:
    low, _, high = port.strip().partition("-")
    if port.strip() == "*":
        return True
    return low.isdigit() and int(low) <= wanted <= int(high if high.isdigit() else low)


def trusted_grant(history: Sequence[Grant], source: str, port: int) -> Grant | None:
    """The newest active grant for the port (Azure reports it Initiated and it has not ended)
    that covers `source` and is mapped to a firewall port."""
    from jitctl.services.query import ACTIVE

    return next(
        (
            g
            for g in history
            if g.port == port
            and g.state == ACTIVE
            and g.mapped_port is not None
            and source_within(source, [g.source])
        ),
        None,
    )


def dnat_verdict(read: FirewallRead, source: str, private_ip: str, port: int) -> FirewallVerdict:
    """The first DNAT rule (JIT's collections first) from `source` to the firewall's address
    that translates to `private_ip`:`port` over TCP; when the firewall cannot be read, the
    grant Azure reports for it."""
    fw, address = read.firewall, read.address
    if fw is None:
        grant = trusted_grant(read.history, source, port)
        return FirewallVerdict(address, None, None, read.unseen or "not found", grant)
    ordered = sorted(fw.dnat_rules, key=lambda r: r.collection.lower() not in JIT_COLLECTIONS)
    for rule in ordered:
        if (
            (rule.translated_address or "").strip() == private_ip
            and (rule.translated_port or "").strip() == str(port)
            and any(a.strip() in (address, "*") for a in rule.destination_addresses)
            and any(p.upper() in ("TCP", "ANY") for p in rule.protocols)
            and source_within(source, list(rule.sources))
        ):
            return FirewallVerdict(address, fw.id, rule)
    return FirewallVerdict(address, fw.id, None)


def firewall_address(gw: Gateway, ref: VmRef) -> str | None:
    """The Azure Firewall address a JIT policy names for the VM, if one does (one list call)."""
    from jitctl.services.reads import policies_of_vm

    return next(
        (
            v.public_ip_address
            for p in policies_of_vm(gw, ref)
            if (v := p.vm(ref.id)) and v.public_ip_address
        ),
        None,
    )


def read_firewall(
    gw: Gateway,
    ref: VmRef,
    address: str | None,
    now: datetime | None,
    known: FirewallRead | None = None,
) -> FirewallRead | None:
    """The Azure Firewall the policy names for the VM (`address`), read now; None: no firewall.
    Found once (`known`: found earlier): one GET for its rules; when it could not be read, the
    VM's request history instead, with its states at `now` (one list call; None: not read)."""
    if not address:
        return None
    if known is not None and known.firewall is not None:
        return FirewallRead(address, gw.get_firewall(known.firewall.id))
    unseen = known.unseen if known is not None else None
    if known is None:
        try:
            found = gw.find_firewall(ref.subscription_id, address)
        except Forbidden:
            found, unseen = None, "no read right on it or on its public IP"
        except NotFound:
            found = None
        if found is not None:
            return FirewallRead(address, found)
        unseen = unseen or "no subscription you can read has it"
    history = tuple(vm_history(gw, ref, now)) if now is not None else ()
    return FirewallRead(address, None, unseen, history)


def vm_history(gw: Gateway, ref: VmRef, now: datetime) -> list[Grant]:
    """The VM's requests in its JIT policies, newest first, with their state at `now` (one
    list call)."""
    from jitctl.services.query import grants
    from jitctl.services.reads import policies_of_vm

    found = [g for p in policies_of_vm(gw, ref) for g in grants(p, now) if same_id(g.vm_id, ref.id)]
    return sorted(found, key=lambda g: g.start_time or g.end_time, reverse=True)
