"""One-row lookups in Resource Graph across every subscription the caller can read (not the
fleet read, which pages and paces itself in arm/graph.py)."""

from __future__ import annotations

import ipaddress
from typing import Any

from jitctl.arm.errors import azure_errors

PUBLIC_IPS = "microsoft.network/publicipaddresses"


def firewall_ip_query(address: str) -> str:
    """The public IP that has `address`, with the id of what uses it (an Azure Firewall's IP
    configuration): one query over every subscription the caller can read, so a firewall in a
    landing zone's hub subscription is found from a spoke. `address` must be an IP address."""
    ip = str(ipaddress.ip_address(address))  # never text of another kind inside the query
    return (
        f"Resources | where type =~ '{PUBLIC_IPS}' | where properties.ipAddress == '{ip}' "
        "| project id, owner = tostring(properties.ipConfiguration.id)"
    )


def query_rows(client: Any, query: str) -> list[dict[str, Any]]:
    """The first page of a query over every subscription the caller can read (a lookup that
    expects a row or two, not a fleet read)."""
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    request = QueryRequest(query=query, options=QueryRequestOptions(top=10))
    with azure_errors():  # once: the caller has a fallback, better than a wall-clock retry
        answer = client.resources(request, retry_total=0)
    return list(answer.data or [])
