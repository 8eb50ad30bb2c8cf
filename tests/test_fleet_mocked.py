"""FleetReader and the audit service at the SDK boundary: create_autospec of the real classes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest.mock import create_autospec

import pytest
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryResponse, ResultTruncated

from jitctl.arm.gateway import Connection
from jitctl.arm.graph import FleetReader
from jitctl.clock import FakeClock
from jitctl.errors import AzureError
from jitctl.fleet import FleetGateway, Inventory
from jitctl.model import JitPolicy, Nic, NicRef, Subscription, Vm
from jitctl.services.audit import audit

VM = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm{}"


def answer(
    rows: list[dict[str, Any]], token: str | None, remaining: int, resets: str, cut: Any = "false"
) -> Any:
    body = QueryResponse(
        total_records=len(rows),
        count=len(rows),
        result_truncated=cut,
        data=rows,
        skip_token=token,
    )
    headers = {"x-ms-user-quota-remaining": str(remaining), "x-ms-user-quota-resets-after": resets}
    return body, headers


def reader(
    pages: list[Any], clock: FakeClock, subs: list[Subscription] | None = None
) -> tuple[FleetReader, Any]:
    client = create_autospec(ResourceGraphClient, instance=True)

    def resources(query: QueryRequest, **kwargs: Any) -> Any:
        body, headers = pages.pop(0)
        return kwargs["cls"](
            SimpleNamespace(http_response=SimpleNamespace(headers=headers)), body, {}
        )

    client.resources.side_effect = resources
    conn = Connection(credential=object(), subscription_id="s1")
    fleet = FleetReader(
        conn, lambda sub: [], clock, client=client, list_subscriptions=lambda: list(subs or [])
    )
    return fleet, client


def test_rows_follow_skip_tokens_and_the_quota_makes_the_next_page_wait() -> None:
    clock = FakeClock()
    pages = [
        answer([{"id": VM.format(1)}], "t1", 0, "00:00:04"),
        answer([{"id": VM.format(2)}], None, 14, "00:00:05"),
    ]
    fleet, client = reader(pages, clock)
    rows = fleet.rows("Resources | project id", ["s1", "s2"])
    assert [r["id"] for r in rows] == [VM.format(1), VM.format(2)]
    first, second = (c.args[0] for c in client.resources.call_args_list)
    assert first.subscriptions == ["s1", "s2"] and first.options.top == 1000
    assert second.options.skip_token == "t1" and second.options.top is None
    assert clock.slept == [4.0]  # waited for the window, as the quota headers said


def test_only_enabled_subscriptions_are_listed_by_name_without_a_graph_query() -> None:
    subs = [Subscription("s2", "B", "Enabled"), Subscription("s1", "a", "Enabled")]
    fleet, client = reader([], FakeClock(), [*subs, Subscription("s3", "C", "Disabled")])
    assert fleet.subscriptions() == [subs[1], subs[0]]
    client.resources.assert_not_called()


def test_the_audit_service_reads_the_fleet_once() -> None:
    fleet = create_autospec(FleetGateway, instance=True)
    nic = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/n1"
    fleet.inventory.return_value = Inventory(
        ("s1",),
        (Vm(VM.format(1), "vm1", "westeurope", (NicRef(nic),)),),
        {nic.lower(): Nic(nic, None, ())},
        policies=(JitPolicy("s1", "rg", "westeurope", "default"),),
    )
    result = audit(fleet, ["s1"], FakeClock().now())
    fleet.inventory.assert_called_once_with(["s1"])
    assert [(f.rule_id, f.vm_name) for f in result.findings] == [("no-nsg", "vm1")]


@pytest.mark.parametrize("cut", ["true", ResultTruncated.TRUE])
def test_an_answer_cut_without_a_skip_token_is_an_error_not_part_of_a_fleet(cut: Any) -> None:
    fleet, _ = reader([answer([{"id": VM.format(1)}], None, 10, "00:00:05", cut=cut)], FakeClock())
    with pytest.raises(AzureError, match="cut its answer at 1 rows"):
        fleet.rows("Resources | project id")
