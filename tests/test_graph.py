"""Azure Resource Graph in the emulator, through the real azure-mgmt-resourcegraph client."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from jitctl.app import App
from jitctl.emulator import Backend, FakeClock, Settings
from tests.fleetworld import SUBS, many

VMS = "Resources | where type =~ 'microsoft.compute/virtualmachines' | project id, name, location, resourceGroup, subscriptionId, properties"


@pytest.fixture
def fleet_backend(clock: FakeClock) -> Backend:
    b = Backend(settings=Settings(propagation_delay=0), clock=clock)
    many(b, subscriptions=3, vms=2100)
    return b


def graph_client(backend: Backend) -> ResourceGraphClient:
    """The real azure-mgmt-resourcegraph client, talking to the emulator."""
    conn = App.for_backend(backend).connection()
    return ResourceGraphClient(
        conn.credential,
        base_url=conn.endpoint,
        credential_scopes=list(conn.scopes),
        **conn.client_kwargs,
    )


@pytest.fixture
def client(fleet_backend: Backend) -> ResourceGraphClient:
    return graph_client(fleet_backend)


def query(client: ResourceGraphClient, text: str, **options: Any) -> Any:
    subs = options.pop("subscriptions", None)
    return client.resources(
        QueryRequest(subscriptions=subs, query=text, options=QueryRequestOptions(**options))
    )


def test_pages_of_1000_rows_with_skip_tokens_cover_every_vm_once(client: Any) -> None:
    seen: list[str] = []
    answer = query(client, VMS, top=1000)
    pages = 1
    assert answer.total_records == 2100 and answer.count == 1000
    assert answer.result_truncated == "false"
    while answer.skip_token:
        seen += [r["id"] for r in answer.data]
        answer = query(client, VMS, skip_token=answer.skip_token)
        pages += 1
    seen += [r["id"] for r in answer.data]
    assert pages == 3 and len(seen) == 2100 == len(set(seen))
    assert seen == sorted(seen, key=str.lower)
    row = answer.data[0]
    assert set(row) == {"id", "name", "location", "resourceGroup", "subscriptionId", "properties"}
    assert row["resourceGroup"] == "rg-fleet" and row["location"] == "westeurope"


def test_subscriptions_scope_the_rows(client: Any) -> None:
    answer = query(client, VMS, subscriptions=[SUBS[1], SUBS[2]], top=5)
    assert answer.total_records == 1400
    assert {r["subscriptionId"] for r in answer.data} <= {SUBS[1], SUBS[2]}


def test_without_id_the_answer_is_truncated_not_paged(client: Any) -> None:
    answer = query(
        client,
        "Resources | where type =~ 'microsoft.compute/virtualmachines' | project name",
        top=10,
    )
    assert answer.count == 10 and answer.result_truncated == "true" and not answer.skip_token


def test_resource_containers_list_the_subscriptions(client: Any) -> None:
    answer = query(
        client,
        "ResourceContainers | where type =~ 'microsoft.resources/subscriptions' | project id, name, subscriptionId, properties",
    )
    assert sorted(r["subscriptionId"] for r in answer.data) == sorted(SUBS[:3])
    assert {r["properties"]["state"] for r in answer.data} == {"Enabled"}


@pytest.mark.parametrize(
    "text, detail",
    [
        ("Resources | summarize count() by type", "UnsupportedOperator"),
        ("SecurityResources | project id", "UnsupportedTable"),
        ("Resources | project id, secret", "UnsupportedProjection"),
    ],
)
def test_an_unsupported_query_is_a_400_in_arms_error_shape(
    client: Any, text: str, detail: str
) -> None:
    with pytest.raises(HttpResponseError) as err:
        query(client, text)
    assert err.value.status_code == 400
    assert err.value.error.code == "BadRequest"
    assert [d.code for d in err.value.error.details] == ["InvalidQuery", detail]


def test_a_skip_token_of_another_query_is_refused(client: Any) -> None:
    token = query(client, VMS, top=5).skip_token
    with pytest.raises(HttpResponseError) as err:
        query(client, VMS.replace("properties", "tags"), skip_token=token)
    assert err.value.status_code == 400


def test_quota_headers_count_down_and_the_quota_ends_in_429(
    client: Any, fleet_backend: Backend
) -> None:
    seen = []
    for _ in range(15):
        client.resources(
            QueryRequest(query=VMS, options=QueryRequestOptions(top=1)),
            cls=lambda resp, body, _: seen.append(resp.http_response.headers),
        )
    assert [int(h["x-ms-user-quota-remaining"]) for h in seen] == list(range(14, -1, -1))
    assert seen[0]["x-ms-user-quota-resets-after"] == "00:00:05"
    with pytest.raises(HttpResponseError) as err:
        client.resources(QueryRequest(query=VMS), retry_total=0)
    assert err.value.status_code == 429
    fleet_backend.clock.advance(5)
    assert query(client, VMS, top=1).count == 1
