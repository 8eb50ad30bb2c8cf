"""FleetReader: many subscriptions in a few calls, with Azure Resource Graph.

VMs with their NICs, virtual networks, NSGs and public IPs come from Resource Graph queries
(1,000 rows a page, paged by `$skipToken`, the queries run side by side); subscriptions from
ARM's GET /subscriptions (outside Resource Graph's quota); JIT policies, which Resource Graph
does not index, from one list per subscription, in parallel. Resource Graph's per-user quota
(`x-ms-user-quota-remaining`, `x-ms-user-quota-resets-after`) is honored: when it is used up,
the next query waits for the window to reset instead of being throttled.

Resource Graph lags ARM by seconds to minutes: nothing here is used where freshness matters.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from jitctl.arm.errors import azure_errors
from jitctl.arm.gateway import Connection
from jitctl.arm.rows import nic_from_row, nsg_from_row, subnets_from_row, vm_from_row
from jitctl.clock import Clock  # re-exported: callers import it from here
from jitctl.errors import AzureError
from jitctl.fleet import Inventory
from jitctl.model import JitPolicy, Nic, Subscription, Vm

PAGE = 1000  # Resource Graph's largest page
SCOPE_LIMIT = 1000  # subscriptions per query
THROTTLED_TRIES = 4
# Queries sent before an answer has told the quota left: Azure's default is 15 a window, and
# a query throttled because an earlier command used the window up waits for it and is sent again.
FIRST_BURST = 4

VMS = "microsoft.compute/virtualmachines"
NICS = "microsoft.network/networkinterfaces"
VNETS = "microsoft.network/virtualnetworks"
NSGS = "microsoft.network/networksecuritygroups"
PUBLIC_IPS = "microsoft.network/publicipaddresses"


# Only what jitctl reads, so pages stay small (Azure's default NSG rules are fixed: nsgeval
# knows them). Nested values come as JSON text (KQL's tostring), which json.loads reads many
# times faster than the SDK walks an object. VMs come with their NICs (mv-expand, then a join on
# the NIC's id, lower-cased as ARM ids may differ in case): a row per NIC of each VM, so the
# VMs and NICs of 10,000 VMs take 10 pages, not 20; virtual networks, NSGs and public IPs share
# a query. Within Resource Graph's per-user quota (15 queries per 5 s) a fleet of 10,000 VMs
# then reads without waiting for the window (the subscriptions come from ARM, not from Resource
# Graph). The emulator serves exactly these shapes (EMULATOR.md).
VM_NICS = (
    f"Resources | where type =~ '{VMS}' "
    "| mv-expand nic = properties.networkProfile.networkInterfaces "
    "| project id, name, location, tags, "
    "nics = tostring(properties.networkProfile.networkInterfaces), "
    "nicKey = tolower(tostring(nic.id)) "
    f"| join kind=leftouter (Resources | where type =~ '{NICS}' "
    "| project nicKey = tolower(id), nicId = id, nsg = properties.networkSecurityGroup.id, "
    "ipConfigurations = tostring(properties.ipConfigurations)) on nicKey"
)
NETWORKS = (
    f"Resources | where type in~ ('{VNETS}', '{NSGS}', '{PUBLIC_IPS}') | project id, type, "
    "subnets = tostring(properties.subnets), securityRules = tostring(properties.securityRules), "
    "ipAddress = properties.ipAddress"
)


def _resets_after(text: str | None) -> float:
    """'hh:mm:ss' (as Resource Graph writes it) in seconds; 0 when absent or unreadable."""
    try:
        h, m, s = (float(x) for x in (text or "").split(":"))
    except ValueError:
        return 0.0
    return h * 3600 + m * 60 + s


class QuotaGate:
    """Holds queries back while the known quota is used up, until its window resets."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.remaining: int | None = None  # None: unknown, assume some
        self.resets_at: datetime | None = None
        self.in_flight = 0
        self.waits: list[float] = []

    def acquire(self) -> None:
        while True:
            with self.lock:
                if self.remaining is None:
                    if self.in_flight < FIRST_BURST:  # then learn the quota from the answers
                        self.in_flight += 1
                        return
                    wait = 0.01
                elif self.remaining - self.in_flight > 0:
                    self.in_flight += 1
                    return
                else:
                    now = self.clock.now()
                    wait = (self.resets_at - now).total_seconds() if self.resets_at else 0.0
                    if wait <= 0:
                        self.remaining = None
                        continue
                    self.waits.append(wait)
            self._sleep(wait)

    def _sleep(self, wait: float) -> None:
        if wait < 0.05:  # another query is learning the quota: a short wall-clock wait
            import time

            time.sleep(wait)
            return
        self.clock.sleep(wait)
        with self.lock:
            if self.resets_at is not None and self.clock.now() >= self.resets_at:
                self.remaining = None

    def throttled(self, headers: Any) -> None:
        """A 429: no quota left until the window resets (Retry-After when no quota headers)."""
        headers = headers or {}
        with self.lock:
            self.remaining = 0
            reset = _resets_after(headers.get("x-ms-user-quota-resets-after"))
            if not reset:
                try:
                    reset = float(headers.get("Retry-After") or 1)
                except ValueError:
                    reset = 1.0
            self.resets_at = self.clock.now() + timedelta(seconds=reset)

    def release(self, headers: Any) -> None:
        with self.lock:
            self.in_flight -= 1
            left = (headers or {}).get("x-ms-user-quota-remaining")
            if left is None:
                if self.remaining is None:
                    self.remaining = 1_000_000  # Azure did not say: no known limit
                return
            try:
                self.remaining = int(left)
            except ValueError:
                return
            reset = _resets_after(headers.get("x-ms-user-quota-resets-after"))
            self.resets_at = self.clock.now() + timedelta(seconds=reset)


# --- the reader ------------------------------------------------------------------------------


Parallel = Callable[[Sequence[Callable[[], Any]]], list[Any]]


def _in_order(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    return [call() for call in calls]


class FleetReader:
    """jitctl's FleetGateway over Resource Graph. `list_policies(subscription_id)` lists one
    subscription's JIT policies and `list_subscriptions()` every subscription (the gateway's);
    `parallel` runs independent calls side by side (the gateway's pool); `client` may be an
    autospecced ResourceGraphClient (else one per thread)."""

    def __init__(
        self,
        conn: Connection,
        list_policies: Callable[[str], list[JitPolicy]],
        clock: Clock,
        parallel: Parallel = _in_order,
        client: Any = None,
        *,
        list_subscriptions: Callable[[], list[Subscription]],
    ) -> None:
        self.conn = conn
        self._list_policies = list_policies
        self._list_subscriptions = list_subscriptions
        self._parallel = parallel
        self._given = client
        self._local = threading.local()
        self.gate = QuotaGate(clock)
        self.queries = 0  # Resource Graph pages asked for

    def client(self) -> Any:
        if self._given is not None:
            return self._given
        client = getattr(self._local, "client", None)
        if client is None:  # one per thread: the SDK does not promise clients are thread-safe
            from azure.mgmt.resourcegraph import ResourceGraphClient

            client = self._local.client = ResourceGraphClient(
                self.conn.credential,
                base_url=self.conn.endpoint,
                credential_scopes=list(self.conn.scopes),
                **self.conn.client_kwargs,
            )
        return client

    def _page(self, query: str, subscriptions: Sequence[str] | None, token: str | None) -> Any:
        from azure.core.exceptions import HttpResponseError
        from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

        request = QueryRequest(
            subscriptions=list(subscriptions) if subscriptions else None,
            query=query,
            options=QueryRequestOptions(top=None if token else PAGE, skip_token=token),
        )
        for attempt in range(THROTTLED_TRIES):
            self.gate.acquire()
            headers: Any = None
            try:
                with azure_errors():
                    try:
                        # Retried here, not by the SDK (which sleeps on the wall clock for a
                        # 429's Retry-After): a 429 waits in the gate for the quota window.
                        answer, headers = self.client().resources(
                            request,
                            cls=lambda resp, body, _: (body, resp.http_response.headers),
                            retry_total=0,
                        )
                        return answer
                    except HttpResponseError as err:
                        status = err.status_code or 0
                        last = attempt == THROTTLED_TRIES - 1
                        if last or not (status == 429 or status >= 500):
                            raise
                        headers = getattr(err.response, "headers", None)
                        if status == 429:
                            self.gate.throttled(headers)
                        else:
                            self.gate.clock.sleep(0.5 * 2**attempt)
            finally:
                self.gate.release(headers)
                self.queries += 1
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def rows(self, query: str, subscriptions: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Every row of a query over the subscriptions (all the credential sees when None)."""
        scopes: list[Sequence[str] | None] = (
            [subscriptions[i : i + SCOPE_LIMIT] for i in range(0, len(subscriptions), SCOPE_LIMIT)]
            if subscriptions
            else [None]
        )
        out: list[dict[str, Any]] = []
        for scope in scopes:
            token = None
            while True:
                answer = self._page(query, scope, token)
                out.extend(answer.data or [])
                token = answer.skip_token
                cut = getattr(answer.result_truncated, "value", answer.result_truncated)
                if not token and str(cut).lower() == "true":  # the SDK's enum, or its text
                    # Cut without a way to the rest: an audit of part of a fleet would pass
                    # for the whole of it.
                    raise AzureError(
                        f"Resource Graph cut its answer at {len(out)} rows and gave no "
                        "$skipToken for the rest.",
                        "Retry; if it persists, choose fewer subscriptions with -s.",
                    )
                if not token:
                    break
        return out

    def subscriptions(self) -> list[Subscription]:
        """The enabled subscriptions, by name."""
        subs = self._list_subscriptions()
        return sorted(
            (s for s in subs if s.state.lower() == "enabled"), key=lambda s: s.name.lower()
        )

    def inventory(self, subscription_ids: Sequence[str]) -> Inventory:
        """Resource Graph's VMs with their NICs, its networks, and the JIT policies (one list
        per subscription), all side by side."""
        subs = list(subscription_ids)
        # Each query pages in two streams, over each half of the subscriptions: half as many
        # pages one after another, about as many in all.
        halves = [h for h in (subs[: (len(subs) + 1) // 2], subs[(len(subs) + 1) // 2 :]) if h]
        queries: list[Callable[[], Any]] = [
            *(functools.partial(self.rows, q, h) for q in (VM_NICS, NETWORKS) for h in halves)
        ]
        lists = [functools.partial(self._list_policies, s) for s in subs]
        results = self._parallel([*queries, *lists])
        pages = results[: len(halves)]
        networks = [r for part in results[len(halves) : len(queries)] for r in part]
        found = results[len(queries) :]
        vms: dict[str, Vm] = {}
        nics: dict[str, Nic] = {}
        for row in (r for part in pages for r in part):
            key = row["id"].lower()
            if key not in vms:  # a row per NIC: the VM's columns repeat
                vms[key] = vm_from_row(row)
            if row.get("nicId"):
                nics[row["nicId"].lower()] = nic_from_row({**row, "id": row["nicId"]})
        of_type: dict[str, list[dict[str, Any]]] = {}
        for row in networks:
            of_type.setdefault(str(row.get("type")).lower(), []).append(row)
        subnets = [s for row in of_type.get(VNETS, []) for s in subnets_from_row(row)]
        return Inventory(
            subscriptions=tuple(subs),
            vms=tuple(vms.values()),
            nics=nics,
            subnets={s.id.lower(): s for s in subnets},
            nsgs={r["id"].lower(): nsg_from_row(r) for r in of_type.get(NSGS, [])},
            policies=tuple(p for policies in found for p in policies),
            public_ips={
                r["id"].lower(): r["ipAddress"]
                for r in of_type.get(PUBLIC_IPS, [])
                if r.get("ipAddress")
            },
        )

    def policies(self, subscription_ids: Sequence[str]) -> list[JitPolicy]:
        calls = [functools.partial(self._list_policies, s) for s in subscription_ids]
        return [p for policies in self._parallel(calls) for p in policies]
