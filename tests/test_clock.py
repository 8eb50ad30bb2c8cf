"""The clock is a required collaborator: a service that waits (a write's confirmation window, a
retry's backoff) takes it from its caller and never falls back to the real one, so a test that
forgets its fake clock fails at once instead of waiting real seconds."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from jitctl.app import App
from jitctl.clock import Clock, FakeClock, SystemClock
from jitctl.services import access, plan, policies, writes

PACKAGE = Path(__file__).resolve().parents[1] / "jitctl"


@pytest.mark.parametrize(
    "service",
    [
        policies.enable,
        policies.disable,
        plan.apply_plan,
        access.request_access,
        access.initiate_checked,
        writes.write_merged,
        writes.initiate_once,
    ],
)
def test_a_service_that_waits_requires_its_clock(service):
    param = inspect.signature(service).parameters["clock"]
    assert param.default is inspect.Parameter.empty
    assert param.kind is inspect.Parameter.KEYWORD_ONLY


def test_one_clock_protocol_and_no_service_builds_the_real_clock():
    defines = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and node.name == "Clock"
    )
    assert defines == ["clock.py"]
    services = (PACKAGE / "services").glob("*.py")
    assert [p.name for p in services if "SystemClock" in p.read_text(encoding="utf-8")] == []


def test_the_app_supplies_the_real_clock_and_both_clocks_fit_the_protocol():
    assert isinstance(App().clock, SystemClock)
    clocks: list[Clock] = [SystemClock(), FakeClock()]
    assert all(callable(c.now) and callable(c.sleep) for c in clocks)


def test_the_fake_clock_moves_only_when_told_or_slept():
    clock = FakeClock()
    start = clock.now()
    clock.sleep(1.5)
    clock.advance(minutes=1)
    assert (clock.now() - start).total_seconds() == 61.5 and clock.slept == [1.5]


def test_arms_retry_after_is_waited_out_on_the_apps_clock(app, backend, clock):
    """A 429 whose answer was lost after the fact: the re-read waits Retry-After (30 s) on the
    App's fake clock, not in real time."""
    import time

    from jitctl.emulator.settings import Fault
    from jitctl.model import PortRule
    from tests.support import vm_ref

    win = vm_ref("vm-win01")
    policies.enable(app.gateway(), [win], [PortRule(3389)], clock=clock)
    backend.faults.append(Fault(429, match="/initiate", retry_after=30, after=True))
    start, began = clock.now(), time.monotonic()
    result = access.request_access(app.gateway(), win, "203.0.113.7", clock.now(), clock=clock)
    assert result.ports and time.monotonic() - began < 10
    assert (clock.now() - start).total_seconds() >= 30
