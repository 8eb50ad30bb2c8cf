"""Big ARM lists read as JSON: the same requests, pipeline and budget as the SDK's list
operations, without building an SDK model for every VM, NIC or policy.

The SDK deserialises each list item into a model and jitctl then copies the few fields it
needs into its own dataclasses; at 10,000 VMs that walk costs more than a second for each of
the VM, NIC and policy lists (issue 10's profile), and importing the network client costs
0.3 s more. Here each page goes through an `ARMPipelineClient` (azure-mgmt-core's public
client) built with the policies the generated SDK clients use (credential, retry, throttling,
logging that redacts the token, the caller's transport), `nextLink` is followed as the SDK's
pager does, and the page's JSON is read by `jitctl.arm.rows`, the same readers that serve
Resource Graph's rows. JIT policies are read and written the same way (their reads and
writes time the confirmation window of jitctl.services.writes, which grows with them); the
other single reads, initiate and the long-running operations keep the SDK clients and models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from jitctl.arm.errors import azure_errors

# The api-versions the installed SDKs send for these lists (checked by a test against the
# SDK's own request builders, so an SDK upgrade that moves them is noticed).
COMPUTE = "2026-04-01"
NETWORK = "2026-03-01"
SECURITY_JIT = "2020-01-01"
SUBSCRIPTIONS = "2022-12-01"  # Microsoft.Resources: GET /subscriptions

Send = Callable[[Any], Any]  # a pipeline client's send_request: HttpRequest -> HttpResponse


def pipeline_client(
    credential: Any, scopes: Sequence[str], hook: Any, kwargs: dict[str, Any]
) -> Any:
    """An ARM pipeline with the generated clients' policies, in their order (see any
    azure-mgmt client's __init__); `kwargs` are the SDK client kwargs (transport, logging)."""
    from azure.core.pipeline import policies as p
    from azure.mgmt.core import ARMPipelineClient
    from azure.mgmt.core.policies import (
        ARMAutoResourceProviderRegistrationPolicy,
        ARMChallengeAuthenticationPolicy,
        ARMHttpLoggingPolicy,
    )

    kwargs = {**kwargs, "sdk_moniker": "jitctl-arm"}
    redirect = p.RedirectPolicy(**kwargs)
    return ARMPipelineClient(
        base_url="",
        policies=[
            p.RequestIdPolicy(**kwargs),
            p.HeadersPolicy(**kwargs),
            p.UserAgentPolicy(**kwargs),
            p.ProxyPolicy(**kwargs),
            p.ContentDecodePolicy(**kwargs),
            ARMAutoResourceProviderRegistrationPolicy(),
            redirect,
            p.RetryPolicy(**kwargs),
            ARMChallengeAuthenticationPolicy(credential, *scopes, **kwargs),
            hook,
            p.NetworkTraceLoggingPolicy(**kwargs),
            p.DistributedTracingPolicy(**kwargs),
            p.SensitiveHeaderCleanupPolicy(**kwargs),
            ARMHttpLoggingPolicy(**kwargs),
        ],
        **kwargs,
    )


def _raise_for(response: Any) -> None:
    """An error answer as the SDK's operations raise it (ResourceNotFoundError for a 404,
    ARM's error body read), for jitctl.arm.errors to translate."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceNotFoundError,
        ResourceNotModifiedError,
        map_error,
    )
    from azure.mgmt.core.exceptions import ARMErrorFormat

    error_map = {
        401: ClientAuthenticationError,
        404: ResourceNotFoundError,
        409: ResourceExistsError,
        304: ResourceNotModifiedError,
    }
    map_error(status_code=response.status_code, response=response, error_map=error_map)
    raise HttpResponseError(response=response, error_format=ARMErrorFormat)


def items(send: Send, url: str, api_version: str) -> Iterator[dict[str, Any]]:
    """Every item of the ARM list at `url`, page after page."""
    from azure.core.rest import HttpRequest

    request = HttpRequest("GET", url, params={"api-version": api_version})
    while True:
        with azure_errors():
            response = send(request)
            if response.status_code != 200:
                _raise_for(response)
            page = response.json()
        yield from page.get("value") or []
        next_link = page.get("nextLink")
        if not next_link:
            return
        request = HttpRequest("GET", next_link)  # nextLink carries its own api-version


def call(
    send: Send, method: str, url: str, api_version: str, body: Any = None, **options: Any
) -> Any:
    """One ARM request; its JSON answer (None when it has no body). `options` go to the
    pipeline (retry_total=0: a write is sent once)."""
    from azure.core.rest import HttpRequest

    request = HttpRequest(method, url, params={"api-version": api_version}, json=body)
    with azure_errors():
        response = send(request, **options)
        if response.status_code not in (200, 201, 202, 204):
            _raise_for(response)
        return response.json() if response.content else None


def scope(subscription_id: str, resource_group: str | None) -> str:
    base = f"/subscriptions/{subscription_id}"
    return f"{base}/resourceGroups/{resource_group}" if resource_group else base
