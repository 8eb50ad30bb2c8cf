"""scripts/broker_benchmark.py's core on SQLite, small: its counting is right (a correctness
check, not a timing check). The brokers are real `jitctl --emulator broker serve` processes."""

from __future__ import annotations

import importlib.util
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest

from jitctl.app import App
from jitctl.broker.azureside import vm_ref
from jitctl.clock import SystemClock
from jitctl.services.access import find_policy, initiate_checked

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "broker_benchmark.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("broker_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_two_replicas_racing_on_approvals_send_one_initiate_per_request(bench, tmp_path):
    emulator = bench.Emulator(tmp_path)
    try:
        line, sent, distinct = bench.two_replicas(
            f"sqlite:///{tmp_path / 'broker.sqlite'}",
            tmp_path,
            emulator,
            requests=4,
            approvals=12,
            clients=6,
        )
        assert (sent, distinct) == (4, 4)
        assert "| 4x200, 8x409 | 4 | 4 | 4 | met |" in line
        # the count is the emulator's: one more initiate of a request is seen as a second
        rid, _ = emulator.initiates()[0]
        gw = App(emulator=True, state_file=emulator.state).gateway()
        ref = vm_ref(
            f"/subscriptions/{bench.DEMO_SUBSCRIPTION}/resourceGroups/{bench.DEMO_GROUP}"
            f"/providers/Microsoft.Compute/virtualMachines/{bench.VM}0"
        )
        policy, pvm = find_policy(gw, ref, (bench.PORT,), None)
        now = SystemClock().now()
        initiate_checked(
            gw,
            policy,
            pvm,
            "198.51.100.99",
            now,
            (bench.PORT,),
            timedelta(hours=1),
            f"broker:{rid}: again",
            clock=SystemClock(),
        )
        again = [r for r, _ in emulator.initiates()]
        assert len(again) == 5 and again.count(rid) == 2
    finally:
        emulator.close()


def test_each_approval_is_timed_to_its_own_initiate(bench, tmp_path):
    emulator = bench.Emulator(tmp_path)
    try:
        line, seen = bench.approval_to_initiate(
            f"sqlite:///{tmp_path / 'broker.sqlite'}", tmp_path, emulator, 2, gap=0.2
        )
    finally:
        emulator.close()
    assert seen == 2
    assert "| approve -> initiate at the emulator | 2 |" in line
    assert "2 initiates for 2 approvals" in line


def test_percentiles_are_nearest_rank(bench):
    values = [float(v) for v in range(1, 101)]
    assert [bench.pct(values, p) for p in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert bench.pct([7.0], 99) == 7.0
