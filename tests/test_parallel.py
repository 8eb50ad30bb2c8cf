"""Parallel ARM reads within a budget: fewer round trips for many VMs, the same calls for one,
a pool that never exceeds its size, and throttling that slows it down."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from unittest.mock import create_autospec

import pytest

from jitctl.app import App
from jitctl.arm.budget import REMAINING_READS, Budget
from jitctl.arm.gateway import AzureGateway, Connection
from jitctl.emulator import Backend, Settings
from jitctl.emulator.seeder import Seeder, subnet_id
from jitctl.emulator.settings import Fault
from jitctl.ids import VmRef
from jitctl.model import PortRule
from jitctl.services.policies import WritePolicy, enable

RULE = PortRule(3389, allowed_source_address_prefix="203.0.113.0/24")
QUICK = WritePolicy(confirm_window=0.01, backoff=0.01)


def group_of(b: Backend, count: int, group: str = "rg-many") -> list[VmRef]:
    """`count` VMs in one group: odd ones with a NIC NSG, even ones behind a subnet NSG."""
    s = Seeder(b, group=group)
    vnet = s.vnet(
        "vnet-many",
        "10.70.0.0/16",
        {
            "snet-guarded": ("10.70.0.0/22", s.nsg("nsg-subnet")),
            "snet-bare": ("10.70.8.0/22", None),
        },
    )
    refs = []
    for i in range(count):
        name = f"vm-{i:03d}"
        nsg = s.nsg(f"{name}-nsg") if i % 2 else None
        snet = "snet-bare" if i % 2 else "snet-guarded"
        ip = f"10.70.{(8 if i % 2 else 0) + i // 250}.{4 + i % 250}"
        s.vm(name, [s.nic(f"{name}-nic", subnet_id(vnet, snet), ip, nsg=nsg)])
        refs.append(VmRef(s.sub, group, name))
    return refs


def test_enable_of_100_vms_of_one_group_reads_by_the_list(backend, app, calls):
    refs = group_of(backend, 100)
    calls()
    result = enable(app.gateway(), refs, [RULE], clock=backend.clock, settings=QUICK)
    made = calls()
    first_write = next(i for i, c in enumerate(made) if c.startswith(("PUT", "POST", "DELETE")))
    assert first_write <= 10, made[:first_write]
    assert [c for c in made if c.startswith("PUT")] == [
        "PUT Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default"
    ]
    policy = next(iter(backend.state["jit"].values()))["policy"]
    assert {v["id"] for v in policy["properties"]["virtualMachines"]} == {r.id for r in refs}
    assert result.changed


def test_enable_refuses_a_vm_without_nsg_among_many_and_writes_nothing(backend, app, calls):
    refs = group_of(backend, 10)
    s = Seeder(backend, group="rg-many")
    vnet = s.vnet("vnet-plain", "10.80.0.0/16", {"snet": ("10.80.0.0/24", None)})
    s.vm("vm-bare", [s.nic("vm-bare-nic", subnet_id(vnet, "snet"), "10.80.0.4")])
    calls()
    from jitctl.errors import Refused

    with pytest.raises(Refused, match="vm-bare has no network security group"):
        enable(
            app.gateway(), [*refs, VmRef(s.sub, "rg-many", "vm-bare")], [RULE], clock=backend.clock
        )
    assert not any(c.startswith(("PUT", "POST", "DELETE")) for c in calls())


def test_a_vm_missing_from_its_group_is_reported_as_azure_does(backend, app):
    refs = group_of(backend, 5)
    from jitctl.errors import NotFound

    with pytest.raises(NotFound, match="vm-nope"):
        enable(
            app.gateway(),
            [*refs, VmRef(refs[0].subscription_id, "rg-many", "vm-nope")],
            [RULE],
            clock=app.clock,
        )


def test_three_vms_are_read_one_by_one_as_before(backend, app, calls):
    refs = group_of(backend, 3)
    calls()
    enable(app.gateway(), refs, [RULE], clock=backend.clock, settings=QUICK)
    reads = [c.split(" ", 1)[1].split("/")[1] for c in calls() if c.startswith("GET")]
    # the VMs and the group's JIT policies at once, then the NICs
    assert sorted(reads[:4]) == ["jitNetworkAccessPolicies"] + ["virtualMachines"] * 3
    assert reads[4:7] == ["networkInterfaces"] * 3


class Counting:
    """Wraps a router: how many requests are being answered at once, at most."""

    def __init__(self, router) -> None:
        self.router, self.now, self.peak = router, 0, 0
        self.lock = threading.Lock()

    def handle(self, method, url, headers, raw):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            return self.router.handle(method, url, headers, raw)
        finally:
            with self.lock:
                self.now -= 1


def counted_gateway(backend: Backend, max_parallel: int) -> tuple[AzureGateway, Counting]:
    from jitctl.emulator.responses import Router
    from jitctl.emulator.transport import StaticCredential, emulator_transport

    counting = Counting(Router(backend))
    conn = Connection(
        StaticCredential(),
        App.for_backend(backend).subscription_id,
        "https://management.emulator.invalid",
        ("https://management.emulator.invalid/.default",),
        {"transport": emulator_transport(counting), "retry_backoff_factor": 0.01},
        max_parallel,
    )
    return AzureGateway(conn), counting


def test_the_pool_never_runs_more_than_its_size():
    backend = Backend(settings=Settings(propagation_delay=0))
    refs = group_of(backend, 12)
    backend.faults.append(Fault(0, latency=0.03, rate=1.0))
    gw, counting = counted_gateway(backend, 3)
    vms = gw.parallel([lambda r=r: gw.get_vm(r) for r in refs])
    assert [v.name for v in vms] == [r.name for r in refs]  # in order
    assert counting.peak == 3 == gw.budget.peak
    gw.close()


def test_parallel_raises_the_first_failure_after_all_are_done():
    ops = SimpleNamespace(done=[])

    def ok(i):
        time.sleep(0.01)
        ops.done.append(i)
        return i

    def bad():
        raise ValueError("boom")

    gw = AzureGateway(Connection(object(), "s", max_parallel=4), factory=lambda k, s: None)
    with pytest.raises(ValueError, match="boom"):
        gw.parallel([lambda: ok(1), bad, lambda: ok(2)])
    assert sorted(ops.done) == [1, 2]
    assert gw.parallel([lambda: ok(3)]) == [3]  # one call runs in the caller's thread
    gw.close()


def test_one_client_set_per_thread():
    from azure.mgmt.compute.operations import VirtualMachinesOperations

    made = []

    def factory(kind, sub):
        ops = create_autospec(VirtualMachinesOperations, instance=True)
        made.append(threading.get_ident())
        return SimpleNamespace(virtual_machines=ops)

    gw = AzureGateway(Connection(object(), "s", max_parallel=2), factory=factory)
    gw.parallel([lambda: gw._client("compute", "s") for _ in range(6)])
    assert len(made) == len(set(made)) <= 2
    gw.close()


def test_few_reads_left_runs_one_at_a_time_paced():
    t = [0.0]
    budget = Budget(
        size=8,
        low_reads=50,
        pace=0.1,
        clock=lambda: t[0],
        sleep=lambda s: t.__setitem__(0, t[0] + s),
    )
    budget.observe(200, {REMAINING_READS: "11999"})
    assert budget.limit == 8
    budget.observe(200, {REMAINING_READS: "12"})
    assert budget.limit == 1 and budget.paced
    budget.acquire()
    budget.release()
    budget.acquire()  # waits out the pace on the (fake) clock
    budget.release()
    assert t[0] == pytest.approx(0.1)


def test_429_pauses_everyone_for_retry_after_and_halves_the_pool():
    t = [0.0]
    budget = Budget(size=8, clock=lambda: t[0], sleep=lambda s: t.__setitem__(0, t[0] + s))
    budget.observe(429, {"Retry-After": "7"})
    assert budget.limit == 4
    budget.observe(429, {"retry-after": "7"})
    assert budget.limit == 2
    budget.acquire()
    assert t[0] == pytest.approx(7.0)
    budget.release()
    for _ in range(2 + 3 + 4 + 5 + 6 + 7):  # additive growth: one more per `limit` successes
        budget.observe(200, {})
    assert budget.limit == 8


def test_a_throttled_emulator_slows_the_pool_down():
    backend = Backend(settings=Settings(propagation_delay=0))
    refs = group_of(backend, 8)
    backend.faults.append(Fault(429, match="/virtualMachines/vm-000", times=1, retry_after=0))
    backend.faults.append(Fault(0, latency=0.02, rate=1.0))
    gw, _ = counted_gateway(backend, 8)
    vms = gw.parallel([lambda r=r: gw.get_vm(r) for r in refs])
    assert len(vms) == 8
    assert gw.budget.limit < 8  # the 429 halved it (it grows back with each success)
    gw.close()


@pytest.mark.parametrize(
    ("value", "expected"), [(None, 16), ("", 16), ("1", 1), (" 32 ", 32), ("64", 64)]
)
def test_max_parallel_setting(value, expected):
    from jitctl.app import max_parallel_setting

    assert max_parallel_setting(value) == expected


@pytest.mark.parametrize("value", ["0", "65", "-3", "eight", "2.5"])
def test_bad_max_parallel_is_exit_2_before_any_call(value, monkeypatch):
    from click.testing import CliRunner

    from jitctl.app import App
    from jitctl.cli.commands import cli
    from jitctl.emulator import Backend, Settings
    from jitctl.emulator.worlds import demo

    backend = Backend(settings=Settings(propagation_delay=0))
    demo(backend)
    monkeypatch.setenv("JITCTL_MAX_PARALLEL", value)
    result = CliRunner().invoke(cli, ["list"], obj=App.for_backend(backend))
    assert result.exit_code == 2
    assert f"JITCTL_MAX_PARALLEL is '{value}'" in result.output
    assert "from 1 to 64" in result.output and backend.log == []


@pytest.mark.parametrize(("setting", "peak"), [("1", 1), ("3", 3), (None, 4)])
def test_max_parallel_bounds_the_reads_in_flight(monkeypatch, setting, peak):
    """JITCTL_MAX_PARALLEL=1: every read one after another; else at most that many at once."""
    from functools import partial

    from jitctl.app import App
    from jitctl.emulator import Backend, Settings
    from jitctl.emulator.fleet import fleet, fleet_subscription

    backend = Backend(settings=Settings(propagation_delay=0))
    fleet(backend, 40, 4)
    if setting is not None:
        monkeypatch.setenv("JITCTL_MAX_PARALLEL", setting)
    app = App.for_backend(backend)
    gw = app.gateway()
    backend.settings.latency = 0.05  # long enough for the reads to overlap
    gw.parallel([partial(gw.list_vms, fleet_subscription(i)) for i in range(4)])
    assert gw.budget.peak == peak  # 4 lists: the default (16) runs all four at once
    app.close()


def test_warm_builds_the_clients_a_grant_needs_once_before_any_call():
    """A server warms its gateway before it answers: the security, network and compute
    clients exist (the SDKs imported), and a later call of this thread builds none again."""
    made: list[tuple[str, str]] = []

    def factory(kind, sub):
        made.append((kind, sub))
        return SimpleNamespace()

    gw = AzureGateway(Connection(object(), "s"), factory=factory)
    gw.warm("sub-1")
    assert made == [("security", "sub-1"), ("network", "sub-1"), ("compute", "sub-1")]
    gw._client("compute", "SUB-1")
    gw.warm()  # its own subscription
    assert made[3:] == [("security", "s"), ("network", "s"), ("compute", "s")]
