"""The demo: enable -> request -> wait -> verify on a fresh emulated world, step by step."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

from jitctl.app import App
from jitctl.ids import VmRef
from jitctl.model import Nsg, PortRule


@dataclass(frozen=True)
class NsgSnapshot:
    nsg_id: str
    rules: tuple[tuple[int, str, str, str, str], ...]  # priority, name, access, source, ports


@dataclass(frozen=True)
class DemoStep:
    title: str
    arm_calls: int
    seconds: float
    result: Any = None
    note: str = ""


def timed_step(app: App, title: str, fn: Callable[[], Any], note: str = "") -> DemoStep:
    """Run one step of a demo: its result, and what it cost in ARM calls and seconds."""
    calls, start = app.arm_calls() or 0, app.clock.now()
    result = fn()
    return DemoStep(
        title,
        (app.arm_calls() or 0) - calls,
        (app.clock.now() - start).total_seconds(),
        result,
        note,
    )


def snapshot(nsg: Nsg) -> NsgSnapshot:
    rows = []
    for r in sorted(nsg.rules, key=lambda r: r.priority):
        if r.direction.lower() != "inbound":
            continue
        ports = ",".join(r.destination_port_ranges) or (r.destination_port_range or "*")
        src = ",".join(r.source_address_prefixes) or (r.source_address_prefix or "*")
        rows.append((r.priority, r.name, r.access, src, ports))
    rows.append((65500, "DenyAllInBound", "Deny", "*", "*"))
    return NsgSnapshot(nsg.id, tuple(rows))


Progress = Callable[[str], AbstractContextManager[Callable[[float, Any], None]]]


def run_demo(
    app: App,
    source_ip: str,
    source_note: str,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> Iterator[DemoStep]:
    """Yields each step as it completes; `progress(label)` shows a wait as it goes (a spinner)."""
    from jitctl.emulator.seeder import DEMO_GROUP, DEMO_SUBSCRIPTION
    from jitctl.services.access import request_access
    from jitctl.services.firewall import firewall_address
    from jitctl.services.policies import enable
    from jitctl.services.verify import verify, wait_until_effective

    gw = app.gateway()
    vms = [VmRef(DEMO_SUBSCRIPTION, DEMO_GROUP, n) for n in ("vm-win01", "vm-lnx01")]
    nsg_ids = [
        f"/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/{DEMO_GROUP}/providers/"
        f"Microsoft.Network/networkSecurityGroups/{n}"
        for n in ("vm-win01-nsg", "snet-linux-nsg")
    ]

    step = partial(timed_step, app)

    yield step(
        "NSG rules before",
        lambda: [snapshot(gw.get_nsg(i)) for i in nsg_ids],
        "vm-win01 has an NSG on its NIC; vm-lnx01 sits behind an NSG on its subnet.",
    )
    yield step(
        "Enable JIT on both VMs (RDP 3389 and SSH 22, 3 hours max)",
        lambda: enable(gw, vms, [PortRule(3389), PortRule(22)], clock=app.clock),
        "One read-merge-write of the resource group's policy; JIT adds deny rules.",
    )

    def wait(ref: VmRef, port: int) -> Any:
        label = f"waiting for {ref.name} to let {source_ip} in on {port}"
        with progress(label) if progress else nullcontext(None) as update:
            return wait_until_effective(
                gw,
                ref,
                source_ip,
                app.clock,
                [port],
                timeout,
                progress=update,
                firewall=firewall_address(gw, ref),
            )[0]

    def check(ref: VmRef, source: str, require_jit: bool = False) -> Any:
        # as `jitctl verify` does (the policy may name an Azure Firewall), so that each step
        # costs what the README's figures say the command costs
        return verify(
            gw,
            ref,
            source,
            [3389],
            require_jit=require_jit,
            firewall=firewall_address(gw, ref),
            now=app.clock.now(),
        )

    for ref, port in ((vms[0], 3389), (vms[1], 22)):
        yield step(
            f"Request {port} on {ref.name} for {source_ip}",
            partial(
                request_access,
                gw,
                ref,
                source_ip,
                app.clock.now(),
                [port],
                justification="jitctl demo",
                clock=app.clock,
            ),
            source_note,
        )
        yield step(
            f"Wait until {ref.name} really lets {source_ip} in on {port}",
            partial(wait, ref, port),
            "Polls the NSGs with backoff; Azure takes about a minute, the emulator a few seconds.",
        )
    yield step("NSG rules after", lambda: [snapshot(gw.get_nsg(i)) for i in nsg_ids])
    yield step(
        "Verify from the request's source (RDP on vm-win01)",
        lambda: check(vms[0], source_ip, require_jit=True),
    )
    yield step(
        "Verify from another address (must be denied)",
        lambda: check(vms[0], "198.51.100.99"),
    )
