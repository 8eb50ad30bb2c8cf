"""The emulator's indexed rows: a list page costs its own items, not the world's."""

from __future__ import annotations

import json

from jitctl.emulator import Backend, FakeClock, Settings
from jitctl.emulator.fleet import fleet
from jitctl.emulator.responses import Router
from jitctl.emulator.rows import Rows
from jitctl.emulator.seeder import DEMO_SUBSCRIPTION
from jitctl.emulator.store import open_store, reset_file

AUTH = {"Authorization": "Bearer x"}
VMS = f"https://arm.test/subscriptions/{DEMO_SUBSCRIPTION}/providers/Microsoft.Compute/virtualMachines?api-version=2024-07-01"


def test_index_by_scope_and_type_follows_writes_and_deletes():
    rows = Rows()
    a = "/subscriptions/s1/resourcegroups/g1/providers/microsoft.compute/virtualmachines/a"
    b = "/subscriptions/s1/resourcegroups/g2/providers/microsoft.compute/virtualmachines/b"
    nic = "/subscriptions/s1/resourcegroups/g1/providers/microsoft.network/networkinterfaces/n"
    rows[a], rows[nic] = {"n": 1}, {"n": 2}
    assert rows.keys_of("/subscriptions/S1", "virtualMachines") == [a]
    rows.set_text(b, '{"n": 3}')
    assert rows.keys_of("/subscriptions/s1", "virtualmachines") == [a, b]
    assert rows.keys_of("/subscriptions/s1/resourceGroups/g1", "networkinterfaces") == [nic]
    del rows[a]
    assert rows.keys_of("/subscriptions/s1", "virtualmachines") == [b]
    assert rows[b] == {"n": 3} and rows.stored(b) == ({"n": 3}, None)


def test_a_list_page_reads_only_its_items(tmp_path):
    world = Backend(settings=Settings(page_size=50), clock=FakeClock())
    fleet(world, 1000)
    path = tmp_path / "state.sqlite"
    reset_file(path, world)
    backend = Backend(clock=FakeClock())
    store = open_store(path, backend)
    try:
        resources = backend.state["resources"]
        assert isinstance(resources, Rows) and resources.unread() == len(resources) > 2000
        router = Router(backend)
        with store.request():
            status, _, body = router.handle("GET", VMS, AUTH, None)
        page = json.loads(body)
        assert status == 200 and len(page["value"]) == 50 and "nextLink" in page
        assert len(resources) - resources.unread() == 50  # of 1000 VMs, ~2,400 resources
        with store.request():
            _, _, body = router.handle("GET", page["nextLink"], AUTH, None)
        assert json.loads(body)["value"][0]["name"] == "vm-00-00-0050"
    finally:
        store.close()
