"""The official Azure examples are ground truth: the emulator accepts their request bodies,
and their response bodies deserialize in the real SDK models and translate in jitctl."""

from __future__ import annotations

import json

import pytest
from azure.mgmt.compute import models as compute_models
from azure.mgmt.network import models as network_models
from azure.mgmt.security.v2020_01_01 import models as security_models

from jitctl.arm import translate as t
from jitctl.emulator.jit import put_policy
from jitctl.emulator.responses import Router
from jitctl.emulator.seeder import Seeder
from tests.support import SPECS, spec

SECURITY = sorted((SPECS / "security-2020-01-01").glob("*.json"))


def all_specs():
    return sorted(p for p in SPECS.rglob("*.json"))


def test_specs_are_present():
    assert len(all_specs()) >= 30


@pytest.mark.parametrize(
    "name", ["GetJitNetworkAccessPolicy_example.json", "CreateJitNetworkAccessPolicy_example.json"]
)
def test_policy_bodies_deserialize_and_translate(name):
    body = spec(f"security-2020-01-01/{name}")["responses"]["200"]["body"]
    policy = t.policy_from_sdk(security_models.JitNetworkAccessPolicy.deserialize(body))
    assert policy.name == "default" and policy.location == "westeurope"
    assert [p.number for p in policy.vms[0].ports][:2] == [22, 3389]
    assert policy.requests[0].vms[0].ports[0].status == "Initiated"


@pytest.mark.parametrize("path", SECURITY, ids=lambda p: p.name)
def test_every_security_list_body_deserializes(path):
    for _status, resp in spec(f"security-2020-01-01/{path.name}")["responses"].items():
        body = resp.get("body")
        if not body:
            continue
        if "value" in body:
            for item in body["value"]:
                assert t.policy_from_sdk(
                    security_models.JitNetworkAccessPolicy.deserialize(item)
                ).vms
        elif "startTimeUtc" in body:
            req = t.request_from_sdk(security_models.JitNetworkAccessRequest.deserialize(body))
            assert req.vms[0].ports[0].status == "Initiating"  # outside the SDK enum: kept as text


def test_network_bodies_translate():
    nsg = t.nsg_from_sdk(
        network_models.NetworkSecurityGroup(
            spec("network/NetworkSecurityGroupGet.json")["responses"]["200"]["body"]
        )
    )
    assert nsg.rules[0].priority == 130 and [r.priority for r in nsg.default_rules][:3] == [
        65000,
        65001,
        65500,
    ]
    nic = t.nic_from_sdk(
        network_models.NetworkInterface(
            spec("network/NetworkInterfaceGet.json")["responses"]["200"]["body"]
        )
    )
    assert nic.primary_ip_config.private_ip == "172.20.2.4"
    assert nic.ip_configs[1].private_ip == "172.20.2.16"  # the example writes 172.20.2.16/28
    subnet = t.subnet_from_sdk(
        network_models.Subnet(spec("network/SubnetGet.json")["responses"]["200"]["body"])
    )
    assert subnet.address_prefixes == ("10.0.0.0/16",) and subnet.nsg_id is None
    vm = t.vm_from_sdk(
        compute_models.VirtualMachine(
            spec("compute/VirtualMachine_Get.json")["responses"]["200"]["body"]
        )
    )
    assert vm.primary_nic is not None and vm.name == "myVM"


def _router_with_example_world():
    """Seed the subscription, group, VM and NSG the examples name, then drive the emulator by HTTP."""
    from jitctl.emulator import Backend, FakeClock

    b = Backend(clock=FakeClock())
    s = Seeder(
        b, subscription="20ff7fc3-e762-44dd-bd96-b71116dcdc23", group="myRg1", location="westeurope"
    )
    nsg = s.nsg("vm1-nsg")
    vnet = s.vnet("vnet", "10.0.0.0/16", {"default": ("10.0.0.0/24", None)})
    s.vm("vm1", [s.nic("vm1-nic", f"{vnet}/subnets/default", "10.0.0.4", nsg=nsg)])
    return b, Router(b)


def _call(router, method, path, body=None, api="2020-01-01"):
    status, headers, raw = router.handle(
        method,
        f"https://management.azure.com{path}?api-version={api}",
        {"Authorization": "Bearer x"},
        json.dumps(body).encode() if body is not None else None,
    )
    return status, headers, json.loads(raw) if raw else None


def test_emulator_accepts_the_official_request_bodies():
    b, router = _router_with_example_world()
    base = (
        "/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23/resourceGroups/myRg1/providers/"
        "Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default"
    )
    status, _, body = _call(
        router,
        "PUT",
        base,
        spec("security-2020-01-01/CreateJitNetworkAccessPolicy_example.json")["parameters"]["body"],
    )
    assert status == 200 and body["properties"]["provisioningState"] == "Succeeded"
    security_models.JitNetworkAccessPolicy.deserialize(body)
    # The example's end time is in 2018: move the fake clock there so the request is in the future.
    from datetime import datetime, timezone

    b.clock._now = datetime(2018, 7, 12, 8, 53, tzinfo=timezone.utc)
    for folder in ("security-2020-01-01", "security-2020-01-01-typespec"):
        status, _, body = _call(
            router,
            "POST",
            base + "/initiate",
            spec(f"{folder}/InitiateJitNetworkAccessPolicy_example.json")["parameters"]["body"],
        )
        assert status == 202, body
        assert body["virtualMachines"][0]["ports"][0]["status"] == "Initiating"
        security_models.JitNetworkAccessRequest.deserialize(body)
    status, _, body = _call(router, "DELETE", base)
    assert status == 200
    assert _call(router, "DELETE", base)[0] == 204


def test_emulator_accepts_the_official_nsg_bodies():
    _b, router = _router_with_example_world()
    for name in ("NetworkSecurityGroupCreate.json", "NetworkSecurityGroupCreateWithRule.json"):
        ex = spec(f"network/{name}")
        path = f"/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23/resourceGroups/myRg1/providers/Microsoft.Network/networkSecurityGroups/{ex['parameters']['networkSecurityGroupName']}"
        status, headers, body = _call(
            router, "PUT", path, ex["parameters"]["parameters"], "2026-03-01"
        )
        assert status in (200, 201) and "Azure-AsyncOperation" in headers
        network_models.NetworkSecurityGroup(body)
    rule = spec("network/NetworkSecurityGroupRuleCreate.json")["parameters"]
    status, _, body = _call(
        router, "PUT", path + "/securityRules/rule1", rule["securityRuleParameters"], "2026-03-01"
    )
    assert (
        status in (200, 201)
        and body["properties"]["priority"]
        == rule["securityRuleParameters"]["properties"]["priority"]
    )


def test_emulator_answers_match_the_example_shapes():
    """Same keys as the official GET examples, so any client parses them."""
    _b, router = _router_with_example_world()
    nsg = _call(
        router,
        "GET",
        "/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23/resourceGroups/myRg1/providers/Microsoft.Network/networkSecurityGroups/vm1-nsg",
        api="2026-03-01",
    )[2]
    official = spec("network/NetworkSecurityGroupGet.json")["responses"]["200"]["body"]
    assert set(official) - {"etag"} <= set(nsg)
    assert set(official["properties"]["defaultSecurityRules"][0]["properties"]) <= set(
        nsg["properties"]["defaultSecurityRules"][0]["properties"]
    )
    subs = _call(router, "GET", "/subscriptions", api="2022-12-01")[2]["value"][0]
    assert set(
        spec("subscriptions/GetSubscriptions.json")["responses"]["200"]["body"]["value"][0]
    ) <= set(subs) | {"managedByTenants", "tags"}


def test_an_attached_nic_names_its_vm_as_in_the_example():
    """NetworkInterfaceGet.json: Azure's attached NIC carries properties.virtualMachine; the
    real SDK reads it; a NIC no VM holds (or whose VM is deleted) names none."""
    from azure.mgmt.network import NetworkManagementClient

    from jitctl.emulator.transport import StaticCredential, emulator_transport

    b, router = _router_with_example_world()
    group = "/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23/resourceGroups/myRg1/providers"
    Seeder(b, subscription="20ff7fc3-e762-44dd-bd96-b71116dcdc23", group="myRg1").nic(
        "spare-nic", f"{group}/Microsoft.Network/virtualNetworks/vnet/subnets/default", "10.0.0.5"
    )
    client = NetworkManagementClient(
        StaticCredential(),
        "20ff7fc3-e762-44dd-bd96-b71116dcdc23",
        base_url="https://management.azure.com",
        transport=emulator_transport(router),
    )
    official = spec("network/NetworkInterfaceGet.json")["responses"]["200"]["body"]
    nic = client.network_interfaces.get("myRg1", "vm1-nic")
    assert set(official["properties"]["virtualMachine"]) == {"id"}
    assert nic.virtual_machine.id == f"{group}/Microsoft.Compute/virtualMachines/vm1"
    assert client.network_interfaces.get("myRg1", "spare-nic").virtual_machine is None
    b.delete(f"{group}/Microsoft.Compute/virtualMachines/vm1")
    assert client.network_interfaces.get("myRg1", "vm1-nic").virtual_machine is None


def test_put_policy_validation_errors():
    b, _ = _router_with_example_world()
    vm = b.list_of("/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23", "virtualmachines")[0][
        "id"
    ]
    from jitctl.emulator.backend import ArmError

    def put(ports):
        return put_policy(
            b,
            "20ff7fc3-e762-44dd-bd96-b71116dcdc23",
            "myRg1",
            "westeurope",
            "default",
            {"properties": {"virtualMachines": [{"id": vm, "ports": ports}]}},
        )

    good = {
        "number": 22,
        "protocol": "*",
        "allowedSourceAddressPrefix": "*",
        "maxRequestAccessDuration": "PT3H",
    }
    assert put([good])["properties"]["virtualMachines"][0]["ports"][0]["number"] == 22
    for bad, msg in [
        ({**good, "protocol": "ICMP"}, "Protocol"),
        ({**good, "maxRequestAccessDuration": "PT2M"}, "between"),
        ({**good, "maxRequestAccessDuration": "P2D"}, "between"),
        ({**good, "allowedSourceAddressPrefixes": ["1.2.3.4"]}, "Exactly one"),
        ({k: v for k, v in good.items() if k != "number"}, "number"),
    ]:
        with pytest.raises(ArmError, match=msg):
            put([bad])
