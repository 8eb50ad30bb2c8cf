"""Prove access: evaluate the VM's NSGs for inbound traffic from a source; wait until it holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jitctl.clock import Clock  # re-exported: callers import it from here
from jitctl.errors import NotEffective, TimedOut
from jitctl.gateway import Gateway
from jitctl.ids import VmRef, name_of
from jitctl.model import Firewall
from jitctl.nsgeval import Evaluation, Flow, evaluate
from jitctl.services.firewall import FirewallVerdict, dnat_verdict
from jitctl.services.topology import Path, read_nsgs, read_path


@dataclass(frozen=True)
class PortVerdict:
    port: int
    evaluation: Evaluation  # the NSGs, for the source as given
    # Behind Azure Firewall: the firewall's DNAT rule decides (the NSGs see the firewall's
    # address after its SNAT, so `evaluation` proves nothing there).
    firewall: FirewallVerdict | None = None

    @property
    def effective(self) -> bool:
        return self.firewall.allowed if self.firewall else self.evaluation.allowed

    @property
    def by_jit(self) -> bool:
        return self.firewall.by_jit if self.firewall else self.evaluation.by_jit


@dataclass(frozen=True)
class VerifyResult:
    vm_id: str
    nic_id: str
    private_ip: str
    source_ip: str
    subnet_nsg_id: str | None
    nic_nsg_id: str | None
    ports: tuple[PortVerdict, ...]
    require_jit: bool = False
    public_ip_id: str | None = None  # the NIC's public IP, for connecting

    @property
    def vm_name(self) -> str:
        return name_of(self.vm_id)

    @property
    def effective(self) -> bool:
        return all(p.effective for p in self.ports)

    @property
    def ok(self) -> bool:
        """Access is effective, and (with require_jit) gated by JIT on a protected path."""
        if not self.effective:
            return False
        if self.require_jit:
            return all(p.by_jit for p in self.ports)
        return True

    def problem(self) -> str:
        """One line on what is missing, for errors and timeouts."""
        for p in self.ports:
            ev = p.evaluation
            if p.firewall is not None:
                if not p.firewall.allowed:
                    return p.firewall.problem(p.port, self.source_ip, self.private_ip)
                dnat = p.firewall.rule
                if self.require_jit and dnat is not None and not p.firewall.by_jit:
                    return f"port {p.port} is let in by DNAT rule {dnat.name} (not JIT's)"
                continue
            if not ev.allowed:
                blocked = next(v for v in ev.levels if not v.allowed)
                rule = blocked.rule
                what = (
                    f"rule {rule.name} (priority {rule.priority})" if rule else "no matching rule"
                )
                return (
                    f"port {p.port} from {self.source_ip} is denied by {what} of the "
                    f"{blocked.level} NSG {name_of(blocked.nsg_id or '')}"
                )
            if self.require_jit and not ev.by_jit:
                return ev.warnings[-1] if ev.warnings else f"port {p.port} is not gated by JIT"
        return "access is effective"


def evaluate_path(
    path: Path,
    nsgs: tuple,
    source_ip: str,
    ports: Sequence[int],
    require_jit: bool,
    firewall: tuple[str, Firewall | None] | None = None,
) -> VerifyResult:
    prefixes = path.subnet.address_prefixes if path.subnet else ()
    config = next(c for c in path.nic.ip_configs if c.private_ip == path.private_ip)
    verdicts = tuple(
        PortVerdict(
            port,
            evaluate(
                nsgs[0],
                nsgs[1],
                Flow(source_ip, path.private_ip, port, "Tcp", config.asg_ids, prefixes),
            ),
            dnat_verdict(firewall[1], firewall[0], source_ip, path.private_ip, port)
            if firewall
            else None,
        )
        for port in ports
    )
    return VerifyResult(
        path.vm.id,
        path.nic.id,
        path.private_ip,
        source_ip,
        path.subnet_nsg_id,
        path.nic_nsg_id,
        verdicts,
        require_jit,
        config.public_ip_id,
    )


def read_firewall(
    gw: Gateway, ref: VmRef, address: str | None, known: Firewall | None = None
) -> tuple[str, Firewall | None] | None:
    """The Azure Firewall the policy names for the VM (`address`), read now; None: no firewall.
    With `known` (found earlier), one GET; else the public IPs are listed to find it."""
    if not address:
        return None
    if known is not None:
        return address, gw.get_firewall(known.id)
    return address, gw.find_firewall(ref.subscription_id, address)


def verify(
    gw: Gateway,
    ref: VmRef,
    source_ip: str,
    ports: Sequence[int] = (3389,),
    nic: str | None = None,
    require_jit: bool = False,
    firewall: str | None = None,
) -> VerifyResult:
    """At most 5 GETs for a one-NIC VM: VM, NIC, subnet, subnet NSG, NIC NSG. With `firewall`
    (the address a JIT policy names for the VM), the Azure Firewall's DNAT rules decide."""
    path = read_path(gw, gw.get_vm(ref), nic)
    fw = read_firewall(gw, ref, firewall)
    return evaluate_path(path, read_nsgs(gw, path), source_ip, ports, require_jit, fw)


def check(result: VerifyResult) -> VerifyResult:
    """Raise NotEffective (exit 7) unless the result is ok."""
    if not result.ok:
        raise NotEffective(
            f"Access to {result.vm_name} is not effective: {result.problem()}.",
            "Request access with 'jitctl request', or check the rules shown by 'jitctl verify -o json'.",
        )
    return result


def wait_until_effective(
    gw: Gateway,
    ref: VmRef,
    source_ip: str,
    clock: Clock,
    ports: Sequence[int] = (3389,),
    timeout: float = 300.0,
    nic: str | None = None,
    require_jit: bool = False,
    progress: Callable[[float, VerifyResult], None] | None = None,
    first_delay: float = 1.0,
    max_delay: float = 5.0,
    firewall: str | None = None,
) -> tuple[VerifyResult, int]:
    """Poll until access is effective, with backoff from 1 s up to 5 s; (result, polls).

    The VM, NIC and subnet are read once; each poll re-reads only the NSGs (1-2 GETs), and
    the Azure Firewall when the policy names one (`firewall`: its address; 1 GET).
    """
    start = clock.now()
    path = read_path(gw, gw.get_vm(ref), nic)
    fw = read_firewall(gw, ref, firewall)
    delay = first_delay
    polls = 0
    while True:
        polls += 1
        nsgs = read_nsgs(gw, path)
        if polls > 1 and fw is not None:
            fw = read_firewall(gw, ref, firewall, fw[1])
        result = evaluate_path(path, nsgs, source_ip, ports, require_jit, fw)
        elapsed = (clock.now() - start).total_seconds()
        if progress:
            progress(elapsed, result)
        if result.ok:
            return result, polls
        if elapsed >= timeout:
            from jitctl.services.waitwhy import explain  # what the history and the NSGs say

            raise TimedOut(
                f"Access to {result.vm_name} was not effective after {int(elapsed)}s: "
                f"{result.problem()}; {explain(gw, ref, source_ip, ports, nsgs)}.",
                "Azure usually applies a JIT rule within a minute; raise --timeout or check the request.",
            )
        clock.sleep(min(delay, timeout - elapsed))
        delay = min(max_delay, delay * 1.6)
