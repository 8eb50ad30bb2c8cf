"""The big lists read as JSON (jitctl.arm.listing) against the real SDK's list operations, on
the emulator: the same requests (paths, api-versions, pages) and the same dataclasses."""

from __future__ import annotations

import pytest

from jitctl.app import App
from jitctl.arm import listing
from jitctl.arm import translate as t
from jitctl.arm.gateway import VMS
from jitctl.emulator import Backend, FakeClock, Settings
from jitctl.emulator.fleet import fleet
from jitctl.emulator.settings import Fault
from jitctl.emulator.worlds import WORLDS
from jitctl.errors import Forbidden


def _world(name: str, page_size: int = 3) -> tuple[Backend, App]:
    backend = Backend(
        settings=Settings(propagation_delay=0, page_size=page_size), clock=FakeClock()
    )
    if name == "fleet":  # policies with open grants, a VM in several, a deleted VM listed
        fleet(backend, 60, 1)
    else:
        WORLDS[name](backend)
    return backend, App.for_backend(backend)


def _requests(backend: Backend, before: int) -> list[tuple[str, str | None, int]]:
    return [(e.path.lower(), e.api_version, e.status) for e in backend.log[before:]]


@pytest.mark.parametrize("world", ["fleet", "docs", "multinic", "firewall", "per-vm"])
def test_json_lists_equal_the_sdk_lists_call_for_call(world):
    backend, app = _world(world)
    gw = app.gateway()
    sub = gw.subscription_id
    compute = gw._client("compute", sub)
    network = gw._client("network", sub)
    jit = gw._jit(sub)
    pairs = [
        (
            lambda: gw.list_vms(sub),
            lambda: [t.vm_from_sdk(v) for v in compute.virtual_machines.list_all()],
        ),
        (
            lambda: gw.list_nics(sub),
            lambda: [t.nic_from_sdk(n) for n in network.network_interfaces.list_all()],
        ),
        (
            lambda: gw.list_subnets(sub),
            lambda: [
                t.subnet_from_sdk(s)
                for v in network.virtual_networks.list_all()
                for s in v.subnets or []
            ],
        ),
        (lambda: gw.list_policies(sub), lambda: [t.policy_from_sdk(p) for p in jit.list()]),
    ]
    for ours, sdks in pairs:
        start = len(backend.log)
        mine = ours()
        middle = len(backend.log)
        theirs = sdks()
        assert mine == theirs  # the same dataclasses, none lost
        assert mine or (ours is pairs[3][0] and world != "fleet")
        assert _requests(backend, start)[: middle - start] == _requests(backend, middle)
    app.close()


def test_resource_group_lists_and_every_page_followed():
    backend, app = _world("busy", page_size=1)
    gw = app.gateway()
    sub = gw.subscription_id
    group = gw.list_vms(sub)[0].id.split("/")[4]
    start = len(backend.log)
    vms = gw.list_vms(sub, group)
    paths = [e.path.lower() for e in backend.log[start:]]
    assert len(vms) >= 2 and len(paths) == len(vms)  # a page a VM
    assert all(f"/resourcegroups/{group.lower()}/" in p for p in paths)
    assert {v.id.lower() for v in vms} == {
        v.id.lower()
        for v in gw.list_vms(sub)
        if f"/resourcegroups/{group.lower()}/" in v.id.lower()
    }
    app.close()


def test_a_failed_page_is_an_error_not_a_short_list():
    backend, app = _world("busy", page_size=1)
    gw = app.gateway()
    pages = listing.items(
        gw._client("arm", "").send_request,
        f"{gw.conn.endpoint}/subscriptions/{gw.subscription_id}/{VMS}",
        listing.COMPUTE,
    )
    assert next(pages)["type"].lower() == "microsoft.compute/virtualmachines"
    backend.faults.append(Fault(403, match="virtualMachines"))  # the second page is refused
    with pytest.raises(Forbidden, match="AuthorizationFailed"):
        list(pages)
    app.close()
