"""Resource Graph's mv-expand and join in the emulator (the real azure-mgmt-resourcegraph
client), and jitctl's fleet read of VMs with their NICs in one query, checked against ARM."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from jitctl.app import App
from jitctl.arm.graph import NETWORKS, VM_NICS
from jitctl.emulator import Backend, FakeClock, Settings
from jitctl.emulator.seeder import Seeder, subnet_id
from jitctl.emulator.worlds import multinic
from jitctl.ids import segments
from tests.fleetworld import many
from tests.test_graph import graph_client

EXPAND = (
    "Resources | where type =~ 'microsoft.compute/virtualmachines' "
    "| mv-expand nic = properties.networkProfile.networkInterfaces "
    "| project id, name, nicKey = tolower(tostring(nic.id))"
)
JOIN = (
    EXPAND + " | join kind={kind} (Resources | where type =~ "
    "'microsoft.network/networkinterfaces' | project nicKey = tolower(id), nicName = name) "
    "on nicKey"
)


@pytest.fixture
def world(clock: FakeClock) -> Backend:
    b = Backend(settings=Settings(propagation_delay=0, graph_quota=0), clock=clock)
    multinic(b)
    s = Seeder(b)
    vnet = s.vnet("vnet-x", "10.50.0.0/16", {"snet": ("10.50.1.0/24", s.nsg("nsg-x"))})
    nic = s.nic("vm-dangling-nic", subnet_id(vnet, "snet"), "10.50.1.4")
    s.vm("vm-dangling", [nic])
    b.delete(nic)  # the VM still names its NIC
    return b


def rows(client: ResourceGraphClient, text: str, top: int = 1000) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    token = None
    while True:
        options = QueryRequestOptions(top=None if token else top, skip_token=token)
        answer = client.resources(QueryRequest(query=text, options=options))
        out += answer.data
        token = answer.skip_token
        if not token:
            return out


def test_mv_expand_gives_a_row_per_nic_in_the_vms_order(world: Backend) -> None:
    found = rows(graph_client(world), EXPAND)
    multi = [r["nicKey"].rsplit("/", 1)[1] for r in found if r["name"] == "vm-multi"]
    assert multi == ["vm-multi-nic0", "vm-multi-nic1"]
    assert len(found) == len({r["id"] for r in found}) + 1  # one VM has two NICs


def test_leftouter_keeps_a_vm_whose_nic_is_gone_inner_drops_it(world: Backend) -> None:
    client = graph_client(world)
    left = rows(client, JOIN.format(kind="leftouter"))
    inner = rows(client, JOIN.format(kind="inner"))
    dangling = [r for r in left if r["name"] == "vm-dangling"]
    assert dangling == [
        {
            "id": dangling[0]["id"],
            "name": "vm-dangling",
            "nicKey": dangling[0]["nicKey"],
            "nicKey1": None,
            "nicName": None,
        }
    ]
    assert len(inner) == len(left) - 1
    assert all(r["nicKey"] == r["nicKey1"] for r in inner)  # KQL names the right key nicKey1
    assert {r["nicName"] for r in inner if r["name"] == "vm-multi"} == {
        "vm-multi-nic0",
        "vm-multi-nic1",
    }


def test_joined_rows_page_by_skip_token_each_once(clock: FakeClock) -> None:
    b = Backend(settings=Settings(propagation_delay=0, graph_quota=0), clock=clock)
    many(b, subscriptions=2, vms=1300)
    client = graph_client(b)
    first = client.resources(QueryRequest(query=VM_NICS, options=QueryRequestOptions(top=500)))
    assert first.total_records == 1300 and first.count == 500 and first.skip_token
    found = rows(client, VM_NICS, top=500)
    assert len(found) == 1300 == len({r["id"] for r in found})
    assert all(r["nicId"] and r["ipConfigurations"] for r in found)


def test_an_empty_array_expands_to_no_row_and_null_to_one(world: Backend) -> None:
    vm = next(r for r in world.state["resources"].values() if r["name"] == "vm-dangling")
    vm["properties"]["networkProfile"]["networkInterfaces"] = []
    assert "vm-dangling" not in {r["name"] for r in rows(graph_client(world), EXPAND)}
    del vm["properties"]["networkProfile"]
    assert [
        r["nicKey"] for r in rows(graph_client(world), EXPAND) if r["name"] == "vm-dangling"
    ] == [""]


@pytest.mark.parametrize(
    "text, detail",
    [
        (JOIN.format(kind="leftanti"), "UnsupportedJoinFlavor"),
        (JOIN.format(kind="inner").replace("on nicKey", "on nicName"), "UnsupportedProjection"),
        (EXPAND + " | mv-expand x = properties", "UnsupportedOperator"),
        ("Resources | project id | where type =~ 'x'", "UnsupportedOperator"),
        ("Resources | project id = toupper(id)", "UnsupportedProjection"),
    ],
)
def test_what_the_emulator_does_not_run_is_a_400(world: Backend, text: str, detail: str) -> None:
    with pytest.raises(HttpResponseError) as err:
        rows(graph_client(world), text)
    assert err.value.status_code == 400
    assert [d.code for d in err.value.error.details] == ["InvalidQuery", detail]


def test_the_fleet_inventory_is_what_arm_lists_say(world: Backend) -> None:
    """Resource Graph's rows, read by jitctl, against the same resources listed over ARM."""
    app = App.for_backend(world)
    gw = app.gateway()
    subs = sorted({segments(v["id"])["subscriptions"] for v in world.state["resources"].values()})
    inv = app.fleet().inventory(subs)
    listed_vms = [vm for s in subs for vm in gw.list_vms(s)]
    assert sorted(inv.vms, key=lambda v: v.id.lower()) == sorted(
        listed_vms, key=lambda v: v.id.lower()
    )
    listed_nics = {n.id.lower(): n for s in subs for n in gw.list_nics(s)}
    assert dict(inv.nics) == listed_nics
    listed_subnets = {x.id.lower(): x for s in subs for x in gw.list_subnets(s)}
    assert dict(inv.subnets) == listed_subnets
    nsg_ids = {k for k in world.state["resources"] if "/networksecuritygroups/" in k}
    assert set(inv.nsgs) == nsg_ids
    for key in nsg_ids:  # Azure's default rules are fixed: the query leaves them out
        assert inv.nsgs[key].rules == gw.get_nsg(key).rules


def test_the_networks_query_reads_virtual_networks_nsgs_and_public_ips(world: Backend) -> None:
    found = rows(graph_client(world), NETWORKS)
    assert {r["type"] for r in found} == {
        "microsoft.network/virtualnetworks",
        "microsoft.network/networksecuritygroups",
        "microsoft.network/publicipaddresses",
    }
    assert all(r["securityRules"] == "" for r in found if "virtualnetworks" in r["type"])
    app = App.for_backend(world)
    gw = app.gateway()
    subs = sorted({segments(v["id"])["subscriptions"] for v in world.state["resources"].values()})
    inv = app.fleet().inventory(subs)
    pips = [k for k, v in world.state["resources"].items() if "/publicipaddresses/" in k]
    assert pips and set(inv.public_ips) == {
        k for k in pips if world.state["resources"][k]["properties"].get("ipAddress")
    }
    for key, address in inv.public_ips.items():
        assert gw.get_public_ip(key).ip_address == address


def test_a_new_query_sees_a_nic_attached_since_the_last_one(world: Backend) -> None:
    """The same router answers both reads (as `emulator serve` does): the resources are as many
    as before, yet the second read must see the VM's new NIC, not the rows of the first."""
    s = Seeder(world)
    vnet = s.vnet("vnet-spare", "10.60.0.0/16", {"snet": ("10.60.1.0/24", None)})
    spare = s.nic("vm-spare-nic", subnet_id(vnet, "snet"), "10.60.1.4", nsg=s.nsg("nsg-spare"))
    fleet = App.for_backend(world).fleet()
    subs = sorted({segments(v["id"])["subscriptions"] for v in world.state["resources"].values()})
    before = fleet.inventory(subs)
    assert spare.lower() not in {n.id.lower() for v in before.vms for n in v.nics}
    vm = next(r for r in world.state["resources"].values() if r["name"] == "vm-win01")
    vm["properties"]["networkProfile"]["networkInterfaces"].append({"id": spare.upper()})
    after = fleet.inventory(subs)
    win = next(v for v in after.vms if v.name == "vm-win01")
    assert spare.lower() in {n.id.lower() for n in win.nics}
    assert after.nic(spare) is not None  # joined although the VM names it in upper case
