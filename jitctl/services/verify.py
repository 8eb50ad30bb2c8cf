"""Prove access: evaluate the VM's NSGs for inbound traffic from a source; wait until it holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from jitctl.errors import NotEffective, TimedOut
from jitctl.gateway import Gateway
from jitctl.ids import VmRef, name_of
from jitctl.nsgeval import Evaluation, Flow, evaluate
from jitctl.services.topology import Path, read_nsgs, read_path


@dataclass(frozen=True)
class PortVerdict:
    port: int
    evaluation: Evaluation

    @property
    def effective(self) -> bool:
        return self.evaluation.allowed


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
            return all(p.evaluation.by_jit for p in self.ports)
        return True

    def problem(self) -> str:
        """One line on what is missing, for errors and timeouts."""
        for p in self.ports:
            ev = p.evaluation
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


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


def evaluate_path(
    path: Path, nsgs: tuple, source_ip: str, ports: Sequence[int], require_jit: bool
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


def verify(
    gw: Gateway,
    ref: VmRef,
    source_ip: str,
    ports: Sequence[int] = (3389,),
    nic: str | None = None,
    require_jit: bool = False,
) -> VerifyResult:
    """At most 5 GETs for a one-NIC VM: VM, NIC, subnet, subnet NSG, NIC NSG."""
    path = read_path(gw, gw.get_vm(ref), nic)
    return evaluate_path(path, read_nsgs(gw, path), source_ip, ports, require_jit)


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
) -> tuple[VerifyResult, int]:
    """Poll until access is effective, with backoff from 1 s up to 5 s; (result, polls).

    The VM, NIC and subnet are read once; each poll re-reads only the NSGs (1-2 GETs).
    """
    start = clock.now()
    path = read_path(gw, gw.get_vm(ref), nic)
    delay = first_delay
    polls = 0
    while True:
        polls += 1
        nsgs = read_nsgs(gw, path)
        result = evaluate_path(path, nsgs, source_ip, ports, require_jit)
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
