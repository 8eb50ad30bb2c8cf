"""The core scenario, run against the emulator always and against real Azure when asked.

Live: set JITCTL_LIVE_SUBSCRIPTION, JITCTL_LIVE_RESOURCE_GROUP, JITCTL_LIVE_VM (a VM with an NSG
and Defender for Servers Plan 2), optionally JITCTL_LIVE_SOURCE_IP, then `pytest -m live`.
It adds port 3389 to the VM's policy (merge-safe) and requests 5 minutes of access.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from jitctl.app import App
from jitctl.ids import VmRef
from jitctl.model import PortRule
from jitctl.services.access import request_access
from jitctl.services.policies import enable
from jitctl.services.verify import wait_until_effective


def core_scenario(app: App, vm: VmRef, source: str, timeout: float) -> None:
    gw = app.gateway()
    enable(gw, [vm], [PortRule(3389)], clock=app.clock)
    again = enable(gw, [vm], [PortRule(3389)], clock=app.clock)
    assert not again.changed  # a second enable writes nothing
    grant = request_access(
        gw,
        vm,
        source,
        app.clock.now(),
        [3389],
        timedelta(minutes=5),
        "jitctl live test",
        clock=app.clock,
    )
    assert grant.ports[0].number == 3389
    result, _ = wait_until_effective(gw, vm, source, app.clock, [3389], timeout)
    assert result.ok and result.ports[0].evaluation.by_jit


def test_core_scenario_on_the_emulator(app, backend):
    backend.settings.propagation_delay = 45
    core_scenario(app, VmRef(app.subscription_id, "rg-jit-demo", "vm-win01"), "203.0.113.7", 300)


@pytest.mark.live
@pytest.mark.skipif(
    not os.environ.get("JITCTL_LIVE_SUBSCRIPTION"),
    reason="needs JITCTL_LIVE_SUBSCRIPTION, _RESOURCE_GROUP, _VM",
)
def test_core_scenario_on_azure():
    sub = os.environ["JITCTL_LIVE_SUBSCRIPTION"]
    app = App(subscription=sub)
    vm = VmRef(sub, os.environ["JITCTL_LIVE_RESOURCE_GROUP"], os.environ["JITCTL_LIVE_VM"])
    core_scenario(app, vm, os.environ.get("JITCTL_LIVE_SOURCE_IP", "203.0.113.7"), 300)
