"""Services over AzureGateway with autospecced SDK operation classes: a wrong method or
argument name fails here, and the number of calls is exact."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from unittest.mock import create_autospec

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceResponseError,
)
from azure.core.rest import HttpResponse
from azure.mgmt.compute import models as cm
from azure.mgmt.compute.operations import VirtualMachinesOperations
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.network import models as nm
from azure.mgmt.network.operations import (
    NetworkInterfacesOperations,
    NetworkSecurityGroupsOperations,
    PublicIPAddressesOperations,
    SubnetsOperations,
)
from azure.mgmt.security.v2020_01_01 import models as sm
from azure.mgmt.security.v2020_01_01.operations import JitNetworkAccessPoliciesOperations

from jitctl.arm.gateway import AzureGateway, Connection
from jitctl.clock import FakeClock
from jitctl.errors import Forbidden, NotFound, NotSignedIn, Refused
from jitctl.ids import VmRef
from jitctl.model import PortRule
from jitctl.services.access import request_access
from jitctl.services.policies import enable
from jitctl.services.verify import verify
from tests.support import spec

SUB, RG = "20ff7fc3-e762-44dd-bd96-b71116dcdc23", "myRg1"
VM = VmRef(SUB, RG, "vm1")
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
NET = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network"


@pytest.fixture
def sdk():
    jit = create_autospec(JitNetworkAccessPoliciesOperations, instance=True)
    vms = create_autospec(VirtualMachinesOperations, instance=True)
    net = SimpleNamespace(
        network_interfaces=create_autospec(NetworkInterfacesOperations, instance=True),
        subnets=create_autospec(SubnetsOperations, instance=True),
        network_security_groups=create_autospec(NetworkSecurityGroupsOperations, instance=True),
        public_ip_addresses=create_autospec(PublicIPAddressesOperations, instance=True),
    )
    arm = create_autospec(ARMPipelineClient, instance=True)  # the lists (jitctl.arm.listing)
    clients = {
        "arm": arm,
        "security": SimpleNamespace(jit_network_access_policies=jit),
        "compute": SimpleNamespace(virtual_machines=vms),
        "network": net,
    }
    gw = AzureGateway(Connection(object(), SUB), factory=lambda kind, sub: clients[kind])
    out = SimpleNamespace(gw=gw, jit=jit, vms=vms, net=net, arm=arm)
    listed(out)  # no policies, unless a test says otherwise
    return out


def answer(status, body):
    """An HTTP answer as the pipeline client returns it."""
    resp = create_autospec(HttpResponse, instance=True)
    resp.status_code, resp.reason, resp.headers = status, "x", {}
    resp.json.return_value = body
    resp.text.return_value = json.dumps(body)
    resp.content = json.dumps(body).encode()
    return resp


def listed(sdk, *policies):
    """The resource group's policies list answers with `policies`, one page."""
    body = {"value": [p.serialize(keep_readonly=True) for p in policies]}
    sdk.arm.send_request.side_effect = lambda request: answer(200, body)


class PolicyService:
    """ARM's JIT policy endpoints over the pipeline client's send_request: the resource
    group's list, GET, PUT (answered as the service does: the body with id, name, location)."""

    def __init__(self, sdk, policy, read_later=None):
        self.stored = policy.serialize(keep_readonly=True)
        self.later = read_later.serialize(keep_readonly=True) if read_later else None
        self.puts = []  # (JSON body, pipeline options)
        self.gets = []  # URLs of the GETs of the policy
        sdk.arm.send_request.side_effect = self.send

    def send(self, request, **options):
        path = request.url.split("?")[0]
        if request.method == "PUT":
            body = json.loads(request.content)
            self.puts.append((body, options))
            self.stored = {**body, "id": self.stored["id"], "name": "default"}
            self.stored["location"] = "westeurope"
        elif "/locations/" not in path:
            return answer(200, {"value": [self.stored]})
        else:
            self.gets.append(path)
        return answer(200, self.later or self.stored)


def listed_url(sdk):
    (request,) = sdk.arm.send_request.call_args.args
    return request.url


def example_policy():
    return sm.JitNetworkAccessPolicy.deserialize(
        spec("security-2020-01-01/GetJitNetworkAccessPolicy_example.json")["responses"]["200"][
            "body"
        ]
    )


def vm_model(nsg_on_nic=True):
    return cm.VirtualMachine(
        {
            "id": VM.id,
            "name": "vm1",
            "location": "westeurope",
            "properties": {
                "networkProfile": {"networkInterfaces": [{"id": f"{NET}/networkInterfaces/nic1"}]}
            },
        }
    )


def nic_model(nsg=True):
    body = {
        "id": f"{NET}/networkInterfaces/nic1",
        "properties": {
            "ipConfigurations": [
                {
                    "name": "ipconfig1",
                    "properties": {
                        "privateIPAddress": "10.0.0.4",
                        "primary": True,
                        "subnet": {"id": f"{NET}/virtualNetworks/v/subnets/s"},
                    },
                }
            ]
        },
    }
    if nsg:
        body["properties"]["networkSecurityGroup"] = {"id": f"{NET}/networkSecurityGroups/nsg1"}
    return nm.NetworkInterface(body)


def test_request_is_two_calls_list_then_initiate(sdk):
    listed(sdk, example_policy())
    sdk.jit.initiate.return_value = sm.JitNetworkAccessRequest.deserialize(
        spec("security-2020-01-01/InitiateJitNetworkAccessPolicy_example.json")["responses"]["202"][
            "body"
        ]
    )
    ref = VmRef(SUB, RG, "vm1")
    result = request_access(
        sdk.gw, ref, "192.127.0.2", NOW, [3389], timedelta(hours=1), "testing", clock=FakeClock(NOW)
    )
    sdk.arm.send_request.assert_called_once()
    assert listed_url(sdk).startswith(
        f"https://management.azure.com/subscriptions/{SUB}/resourceGroups/{RG}"
        "/providers/Microsoft.Security/jitNetworkAccessPolicies?api-version=2020-01-01"
    )
    rg, loc, name, body = sdk.jit.initiate.call_args.args
    assert (rg, loc, name) == (RG, "westeurope", "default")
    port = body.virtual_machines[0].ports[0]
    assert body.virtual_machines[0].id == ref.id and body.justification == "testing"
    assert (port.number, port.allowed_source_address_prefix, port.end_time_utc) == (
        3389,
        "192.127.0.2",
        NOW + timedelta(hours=1),
    )
    assert result.ports[0].status == "Initiating"
    assert sdk.vms.get.call_count == 0
    assert [c.args[0].method for c in sdk.arm.send_request.call_args_list] == ["GET"]
    assert sdk.jit.initiate.call_args.kwargs == {"retry_total": 0}  # never re-sent blindly


def test_request_refused_locally_never_initiates(sdk):
    listed(sdk, example_policy())
    with pytest.raises(Refused, match="exceeds the maximum of 3h"):
        request_access(
            sdk.gw, VM, "192.127.0.2", NOW, [3389], timedelta(hours=5), clock=FakeClock(NOW)
        )
    sdk.jit.initiate.assert_not_called()


def test_enable_reads_merges_and_writes_once(sdk):
    sdk.vms.get.return_value = vm_model()
    sdk.net.network_interfaces.get.return_value = nic_model()
    service = PolicyService(sdk, example_policy())  # the VM's policy, found by listing
    other = VmRef(SUB, RG, "vm2")
    sdk.vms.get.side_effect = lambda rg, name: cm.VirtualMachine(
        {**vm_model().as_dict(), "id": VmRef(SUB, RG, name).id, "name": name}
    )
    result = enable(
        sdk.gw,
        [VM, other],
        [PortRule(5985, "TCP", timedelta(hours=1), "198.51.100.0/24")],
        clock=FakeClock(),
    )
    assert result.policies[0].action == "updated"
    ((sent, options),) = service.puts  # one write
    assert options == {"retry_total": 0}  # a write whose answer was lost is not re-sent
    put = [c.args[0] for c in sdk.arm.send_request.call_args_list if c.args[0].method == "PUT"]
    assert put[0].url == (
        f"https://management.azure.com/subscriptions/{SUB}/resourceGroups/{RG}/providers/"
        "Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default"
        "?api-version=2020-01-01"
    )
    body = sm.JitNetworkAccessPolicy.deserialize(sent)  # the SDK's model reads our JSON
    ids = [v.id for v in body.virtual_machines]
    assert ids[0].endswith("/vm1") and ids[1].endswith("/vm2")
    ports = {p.number: p for p in body.virtual_machines[0].ports}
    assert set(ports) == {22, 3389, 5985}  # the example's two ports are kept
    assert (
        ports[22].allowed_source_address_prefix == "*"
        and ports[22].max_request_access_duration == "PT3H"
    )
    assert ports[5985].allowed_source_address_prefix == "198.51.100.0/24"
    assert body.requests is None  # the history is the service's: never echoed back
    assert body.serialize() == sent  # nothing the model does not know


def test_enable_refuses_vm_without_nsg_before_writing(sdk):
    sdk.vms.get.return_value = vm_model()
    sdk.net.network_interfaces.get.return_value = nic_model(nsg=False)
    sdk.net.subnets.get.return_value = nm.Subnet(
        {"id": f"{NET}/virtualNetworks/v/subnets/s", "properties": {"addressPrefix": "10.0.0.0/24"}}
    )
    with pytest.raises(Refused, match="no network security group"):
        enable(sdk.gw, [VM], [PortRule(3389)], clock=FakeClock(NOW))
    sdk.net.subnets.get.assert_called_once_with(RG, "v", "s")
    assert all(c.args[0].method == "GET" for c in sdk.arm.send_request.call_args_list)


def test_verify_single_nic_five_gets(sdk):
    sdk.vms.get.return_value = vm_model()
    sdk.net.network_interfaces.get.return_value = nic_model()
    sdk.net.subnets.get.return_value = nm.Subnet(
        {
            "id": f"{NET}/virtualNetworks/v/subnets/s",
            "properties": {
                "addressPrefix": "10.0.0.0/24",
                "networkSecurityGroup": {"id": f"{NET}/networkSecurityGroups/subnet-nsg"},
            },
        }
    )
    nsg_body = spec("network/NetworkSecurityGroupGet.json")["responses"]["200"]["body"]
    sdk.net.network_security_groups.get.return_value = nm.NetworkSecurityGroup(nsg_body)
    result = verify(sdk.gw, VM, "203.0.113.7", [80])
    assert result.effective  # the example's rule1 allows 80 from '*' at 130, in both NSGs
    assert result.ports[0].evaluation.levels[0].rule.name == "rule1"
    sdk.vms.get.assert_called_once_with(RG, "vm1")
    sdk.net.network_interfaces.get.assert_called_once_with(RG, "nic1")
    assert sdk.net.network_security_groups.get.call_count == 2
    calls = (
        sdk.vms.get.call_count
        + sdk.net.network_interfaces.get.call_count
        + sdk.net.subnets.get.call_count
        + sdk.net.network_security_groups.get.call_count
    )
    assert calls == 5


def _http_error(status, code, message):
    resp = SimpleNamespace(
        status_code=status, reason="x", headers={}, text=lambda: "", request=None
    )
    err = HttpResponseError(message=message, response=resp)
    err.error = SimpleNamespace(code=code, message=message)
    return err


def _arm_error(status, code, message):
    return answer(status, {"error": {"code": code, "message": message}})


@pytest.mark.parametrize(
    ("reply", "expected", "text"),
    [
        (
            _arm_error(403, "AuthorizationFailed", "The client does not have authorization"),
            Forbidden,
            "AuthorizationFailed",
        ),
        (_arm_error(409, "Conflict", "Another operation is in progress"), Refused, "conflict"),
        (
            ClientAuthenticationError("AADSTS700016: application not found"),
            NotSignedIn,
            "Not signed in",
        ),
        (_arm_error(401, "InvalidAuthenticationToken", "expired"), NotSignedIn, "Not signed in"),
        (_arm_error(404, "ResourceGroupNotFound", "gone"), NotFound, "Not found|gone"),
    ],
)
def test_sdk_errors_map_to_exit_codes(sdk, reply, expected, text):
    """Errors of the list read (the first call of a request), answered or raised."""
    sdk.arm.send_request.side_effect = reply if isinstance(reply, Exception) else [reply]
    with pytest.raises(expected, match=text):
        request_access(sdk.gw, VM, "192.127.0.2", NOW, clock=FakeClock(NOW))
    sdk.jit.initiate.assert_not_called()


def _history_with(request_body):
    body = example_policy().serialize()
    body["properties"]["requests"] = [request_body]
    return sm.JitNetworkAccessPolicy.deserialize(
        {**body, "id": example_policy().id, "name": "default", "location": "westeurope"}
    )


@pytest.mark.parametrize(
    "lost",
    [
        _http_error(503, "ServiceUnavailable", "try again"),
        ServiceResponseError("Read timed out"),
    ],
)
def test_initiate_answer_lost_but_landed_is_read_back_not_resent(sdk, lost):
    """503 or a timeout after the fact: the history holds our request: reported, not re-sent."""
    clock = FakeClock(NOW)
    sdk.jit.initiate.side_effect = lost
    landed = {
        "virtualMachines": [
            {
                "id": VM.id,
                "ports": [
                    {
                        "number": 3389,
                        "allowedSourceAddressPrefix": "192.127.0.2",
                        "endTimeUtc": (NOW + timedelta(hours=1)).isoformat(),
                        "status": "Initiated",
                        "statusReason": "UserRequested",
                    }
                ],
            }
        ],
        "startTimeUtc": (NOW + timedelta(seconds=1)).isoformat(),
        "requestor": "barbara@contoso.com",
    }
    service = PolicyService(sdk, example_policy(), read_later=_history_with(landed))
    result = request_access(sdk.gw, VM, "192.127.0.2", NOW, [3389], timedelta(hours=1), clock=clock)
    sdk.jit.initiate.assert_called_once()
    assert sdk.jit.initiate.call_args.kwargs == {"retry_total": 0}
    assert service.gets == [
        f"https://management.azure.com/subscriptions/{SUB}/resourceGroups/{RG}/providers/"
        "Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default"
    ]
    assert result.requestor == "barbara@contoso.com" and result.ports[0].status == "Initiated"
    assert "had landed, so it was not sent again" in result.notes[0]


def test_initiate_that_did_not_land_is_sent_again_once(sdk):
    clock = FakeClock(NOW)
    service = PolicyService(sdk, example_policy())  # its history holds only an old request
    answer = sm.JitNetworkAccessRequest.deserialize(
        spec("security-2020-01-01/InitiateJitNetworkAccessPolicy_example.json")["responses"]["202"][
            "body"
        ]
    )
    sdk.jit.initiate.side_effect = [_http_error(500, "InternalServerError", "oops"), answer]
    result = request_access(sdk.gw, VM, "192.127.0.2", NOW, [3389], timedelta(hours=1), clock=clock)
    assert sdk.jit.initiate.call_count == 2 and len(service.gets) == 2  # two looks
    assert "not in the policy's request history: requested again" in result.notes[0]


def test_not_signed_in_is_one_short_line_and_the_whole_text_goes_to_debug(caplog):
    from jitctl.arm.errors import translate

    default = ClientAuthenticationError(
        "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
        "Attempted credentials:\n\tEnvironmentCredential: EnvironmentCredential authentication "
        "unavailable. Environment variables are not fully configured."
    )
    with caplog.at_level("DEBUG", logger="jitctl"):
        err = translate(default)
    assert err.message == "Not signed in to Azure: no credential was found."
    assert "EnvironmentCredential authentication unavailable" in caplog.text
    other = translate(ClientAuthenticationError("AADSTS700016: Application not found. Trace: x"))
    assert other.message == "Not signed in to Azure: AADSTS700016: Application not found."
    assert "az login" in err.hint


def test_subscriptions_are_arms_list_read_from_the_official_example(sdk):
    body = spec("subscriptions/GetSubscriptions.json")["responses"]["200"]["body"]
    body["nextLink"] = (
        "https://management.azure.com/subscriptions?api-version=2022-12-01&$skiptoken=2"
    )
    sent = []

    def send(request, **options):
        sent.append(request)
        return answer(200, body if len(sent) == 1 else {"value": []})  # then a last, empty page

    sdk.arm.send_request.side_effect = send
    subs = sdk.gw.list_subscriptions()
    item = body["value"][0]
    assert subs[0].id == item["subscriptionId"] and subs[0].name == item["displayName"]
    assert subs[0].state == item["state"]
    assert len(subs) == len(body["value"])
    assert sent[0].method == "GET" and sent[0].url.split("?")[0].endswith("/subscriptions")
    assert "api-version=2022-12-01" in sent[0].url
    assert len(sent) == 2 and "skiptoken=2" in sent[1].url
