"""AzureGateway: jitctl's Gateway over the real azure-mgmt clients."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from jitctl.arm import listing, rows
from jitctl.arm import translate as t
from jitctl.arm.budget import Budget, throttle_policy
from jitctl.arm.errors import azure_errors
from jitctl.arm.listing import COMPUTE, NETWORK, SECURITY_JIT, SUBSCRIPTIONS
from jitctl.clock import Clock
from jitctl.gateway import InitiatePort
from jitctl.ids import VmRef, name_of, segments
from jitctl.model import (
    AccessRequest,
    DefenderPlan,
    Firewall,
    JitPolicy,
    Nic,
    Nsg,
    Permission,
    PublicIp,
    Subnet,
    Subscription,
    Vm,
)

# ARM reads in flight by default (JITCTL_MAX_PARALLEL); jitctl.arm.budget slows them down when
# ARM's remaining-reads header runs low and stops them for a 429's Retry-After.
MAX_PARALLEL = 16


@dataclass
class Connection:
    """Where and how to reach ARM; `client_kwargs` go to every SDK client (transport, policies)."""

    credential: Any
    subscription_id: str
    endpoint: str = "https://management.azure.com"
    scopes: tuple[str, ...] = ("https://management.azure.com/.default",)
    client_kwargs: dict[str, Any] = field(default_factory=dict)
    max_parallel: int = MAX_PARALLEL  # ARM requests in flight at once (independent reads)
    clock: Clock | None = None  # ARM's Retry-After is waited out on it (None: the real time)


def _rg_name(resource_id: str, kind: str) -> tuple[str, str, str]:
    seg = segments(resource_id)
    return seg["subscriptions"], seg["resourcegroups"], seg[kind.lower()]


def _firewall_of(ip_configuration_id: str) -> str | None:
    """The Azure Firewall an IP configuration id belongs to, if it is a firewall's."""
    at = ip_configuration_id.lower().find("/azurefirewallipconfigurations/")
    if at < 0 or "/azurefirewalls/" not in ip_configuration_id.lower():
        return None
    return ip_configuration_id[:at]


ClientFactory = Callable[[str, str], Any]
VMS = "providers/Microsoft.Compute/virtualMachines"
NICS = "providers/Microsoft.Network/networkInterfaces"
VNETS = "providers/Microsoft.Network/virtualNetworks"
POLICIES = "providers/Microsoft.Security/jitNetworkAccessPolicies"
T = TypeVar("T")


class AzureGateway:
    """`factory(kind, subscription_id)` may supply the SDK clients (tests pass autospecced ones);
    kind "arm" is the pipeline client that the big lists are read through (jitctl.arm.listing).

    `parallel()` runs independent reads on a pool of `conn.max_parallel` threads. Each thread
    has its own SDK clients (the Python SDK does not promise that one client may serve threads
    at once), kept for the gateway's life so connections are reused; every request of every
    thread passes one Budget, which honours ARM's throttling (jitctl.arm.budget)."""

    def __init__(self, conn: Connection, factory: ClientFactory | None = None) -> None:
        self.conn = conn
        self.subscription_id = conn.subscription_id
        self._factory = factory or self._make_client
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        clock = conn.clock
        self.budget = (
            Budget(conn.max_parallel, clock=lambda: clock.now().timestamp(), sleep=clock.sleep)
            if clock is not None
            else Budget(conn.max_parallel)
        )

    def _client(self, kind: str, subscription_id: str) -> Any:
        clients: dict[tuple[str, str], Any] | None = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        key = (kind, subscription_id.lower())
        if key not in clients:
            clients[key] = self._factory(kind, subscription_id)
        return clients[key]

    def warm(self, subscription_id: str | None = None) -> None:
        """Import the SDKs and build this thread's clients now (about half a second, once per
        process): a server calls it before it answers, so its first request does not pay."""
        sub = subscription_id or self.subscription_id
        if sub:
            for kind in ("security", "network", "compute"):
                self._client(kind, sub)

    def parallel(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """The results of independent calls, in order, run side by side (at most
        `max_parallel` at once); the first failure (in order) is raised once all are done."""
        if len(calls) <= 1 or self.conn.max_parallel <= 1 or getattr(self._local, "worker", False):
            return [call() for call in calls]  # one call, or a call inside a pool thread
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.conn.max_parallel, "jitctl-arm", initializer=self._as_worker
                )
        futures = [self._pool.submit(call) for call in calls]
        errors = [f.exception() for f in futures]
        for err in errors:
            if err is not None:
                raise err
        return [f.result() for f in futures]

    def _as_worker(self) -> None:
        self._local.worker = True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _make_client(self, kind: str, subscription_id: str) -> Any:
        kwargs: dict[str, Any] = dict(
            base_url=self.conn.endpoint,
            credential_scopes=list(self.conn.scopes),
            custom_hook_policy=throttle_policy(self.budget),
            **self.conn.client_kwargs,
        )
        if kind == "arm":
            hook = kwargs.pop("custom_hook_policy")
            return listing.pipeline_client(
                self.conn.credential, self.conn.scopes, hook, self.conn.client_kwargs
            )
        if kind == "security":
            from azure.mgmt.security import SecurityCenter

            return SecurityCenter(self.conn.credential, subscription_id, **kwargs)
        if kind == "graph":
            from azure.mgmt.resourcegraph import ResourceGraphClient

            return ResourceGraphClient(self.conn.credential, **kwargs)
        if kind == "authorization":
            from azure.mgmt.authorization import AuthorizationManagementClient

            return AuthorizationManagementClient(self.conn.credential, subscription_id, **kwargs)
        if kind == "network":
            from azure.mgmt.network import NetworkManagementClient

            return NetworkManagementClient(self.conn.credential, subscription_id, **kwargs)
        from azure.mgmt.compute import ComputeManagementClient

        return ComputeManagementClient(self.conn.credential, subscription_id, **kwargs)

    def _jit(self, subscription_id: str) -> Any:
        return self._client("security", subscription_id).jit_network_access_policies

    # --- compute and network reads -------------------------------------------------------

    def get_vm(self, ref: VmRef) -> Vm:
        with azure_errors():
            vm = self._client("compute", ref.subscription_id).virtual_machines.get(
                ref.resource_group, ref.name
            )
        return t.vm_from_sdk(vm)

    def get_nic(self, nic_id: str) -> Nic:
        sub, rg, name = _rg_name(nic_id, "networkInterfaces")
        with azure_errors():
            return t.nic_from_sdk(self._client("network", sub).network_interfaces.get(rg, name))

    def get_subnet(self, subnet_id: str) -> Subnet:
        sub, rg, vnet = _rg_name(subnet_id, "virtualNetworks")
        with azure_errors():
            subnet = self._client("network", sub).subnets.get(rg, vnet, name_of(subnet_id))
        return t.subnet_from_sdk(subnet)

    def get_nsg(self, nsg_id: str) -> Nsg:
        sub, rg, name = _rg_name(nsg_id, "networkSecurityGroups")
        with azure_errors():
            return t.nsg_from_sdk(
                self._client("network", sub).network_security_groups.get(rg, name)
            )

    def get_public_ip(self, public_ip_id: str) -> PublicIp:
        sub, rg, name = _rg_name(public_ip_id, "publicIPAddresses")
        with azure_errors():
            pip = self._client("network", sub).public_ip_addresses.get(rg, name)
        return t.public_ip_from_sdk(pip)

    def delete_nsg_rule(self, nsg_id: str, rule_name: str) -> None:
        sub, rg, name = _rg_name(nsg_id, "networkSecurityGroups")
        with azure_errors():
            rules = self._client("network", sub).security_rules
            rules.begin_delete(rg, name, rule_name).result()

    def find_firewall(self, subscription_id: str, address: str) -> Firewall | None:
        """Resource Graph first: one query over every subscription the caller can read (a
        landing zone keeps the firewall in a hub subscription, the VMs in spokes). When it
        fails, or has no such firewall (it lags ARM), the public IPs of the VM's subscription
        through ARM. Then one GET of the firewall, for its rules as they are now."""
        from jitctl.arm.lookup import firewall_ip_query, query_rows
        from jitctl.errors import JitctlError, NotSignedIn

        try:
            rows = query_rows(self._client("graph", ""), firewall_ip_query(address))
        except NotSignedIn:
            raise
        except (JitctlError, ValueError):
            rows = []
        owners = [str(r.get("owner") or "") for r in rows]
        if not any(_firewall_of(o) for o in owners):
            with azure_errors():
                client = self._client("network", subscription_id)
                pips = list(client.public_ip_addresses.list_all())
            owners = [
                getattr(getattr(p, "ip_configuration", None), "id", None) or ""
                for p in pips
                if p.ip_address == address
            ]
        found = next((fw for o in owners if (fw := _firewall_of(o))), None)
        return self.get_firewall(found) if found else None

    def get_firewall(self, firewall_id: str) -> Firewall:
        sub, rg, name = _rg_name(firewall_id, "azureFirewalls")
        with azure_errors():
            fw = self._client("network", sub).azure_firewalls.get(rg, name)
        return t.firewall_from_sdk(fw)

    # Big lists are read as JSON through the client's own pipeline (jitctl.arm.listing): the
    # same requests and budget, without an SDK model per item.
    def _arm_send(self) -> listing.Send:
        return self._client("arm", "").send_request  # one for every subscription

    def _items(self, path: str, api_version: str) -> Any:
        return listing.items(self._arm_send(), self.conn.endpoint + path, api_version)

    def list_vms(self, subscription_id: str, resource_group: str | None = None) -> list[Vm]:
        path = f"{listing.scope(subscription_id, resource_group)}/{VMS}"
        return [rows.vm_from_arm(v) for v in self._items(path, COMPUTE)]

    def list_nics(self, subscription_id: str, resource_group: str | None = None) -> list[Nic]:
        path = f"{listing.scope(subscription_id, resource_group)}/{NICS}"
        items = self._items(path, NETWORK)
        return [rows.nic_from_arm(n) for n in items]

    def list_subnets(self, subscription_id: str, resource_group: str | None = None) -> list[Subnet]:
        """Every subnet, from one list of the virtual networks (subnets come inside them)."""
        path = f"{listing.scope(subscription_id, resource_group)}/{VNETS}"
        items = self._items(path, NETWORK)
        return [s for vnet in items for s in rows.subnets_from_arm(vnet)]

    def list_subscriptions(self) -> list[Subscription]:
        """Every subscription the credential sees (ARM's GET /subscriptions, one call a page)."""
        return [
            Subscription(
                s["subscriptionId"],
                s.get("displayName") or s["subscriptionId"],
                s.get("state") or "",
            )
            for s in self._items("/subscriptions", SUBSCRIPTIONS)
        ]

    # --- JIT policies ---------------------------------------------------------------------

    def list_policies(
        self, subscription_id: str, resource_group: str | None = None
    ) -> list[JitPolicy]:
        path = f"{listing.scope(subscription_id, resource_group)}/{POLICIES}"
        items = self._items(path, SECURITY_JIT)
        return [rows.policy_from_json(p) for p in items]

    def _policy_url(self, p: JitPolicy) -> str:
        return self.conn.endpoint + p.id

    def get_policy(
        self, subscription_id: str, resource_group: str, location: str, name: str
    ) -> JitPolicy | None:
        from jitctl.errors import NotFound

        key = JitPolicy(subscription_id, resource_group, location, name)
        try:
            body = listing.call(self._arm_send(), "GET", self._policy_url(key), SECURITY_JIT)
        except NotFound:
            return None
        return rows.policy_from_json(body)

    # Writes go out once (retry_total=0): the transport must not re-send a write whose answer
    # was lost. The services re-read to learn whether it took effect, then merge and write again.
    def put_policy(self, policy: JitPolicy) -> JitPolicy:
        out = listing.call(
            self._arm_send(),
            "PUT",
            self._policy_url(policy),
            SECURITY_JIT,
            rows.policy_to_json(policy),
            retry_total=0,
        )
        return rows.policy_from_json(out)

    def delete_policy(self, policy: JitPolicy) -> None:
        url = self._policy_url(policy)
        listing.call(self._arm_send(), "DELETE", url, SECURITY_JIT, retry_total=0)

    def initiate(
        self, policy: JitPolicy, vm_id: str, ports: list[InitiatePort], justification: str | None
    ) -> AccessRequest:
        from azure.mgmt.security.v2020_01_01 import models as m

        body = m.JitNetworkAccessPolicyInitiateRequest(
            virtual_machines=[
                m.JitNetworkAccessPolicyInitiateVirtualMachine(
                    id=vm_id,
                    ports=[
                        m.JitNetworkAccessPolicyInitiatePort(
                            number=p.number,
                            allowed_source_address_prefix=p.source,
                            end_time_utc=p.end_time,
                        )
                        for p in ports
                    ],
                )
            ],
            justification=justification,
        )
        with azure_errors():
            out = self._jit(policy.subscription_id).initiate(
                policy.resource_group, policy.location, policy.name, body, retry_total=0
            )
        return t.request_from_sdk(out)

    # --- what JIT depends on: the Defender plan, the caller's permissions ---------------------

    def get_defender_plan(self, subscription_id: str) -> DefenderPlan:
        with azure_errors():
            pricing = self._client("security", subscription_id).pricings.get(
                f"subscriptions/{subscription_id}", "VirtualMachines"
            )
        return t.defender_plan_from_sdk(pricing)

    def list_permissions(self, subscription_id: str, resource_group: str) -> list[Permission]:
        ops = self._client("authorization", subscription_id).permissions
        with azure_errors():
            return [t.permission_from_sdk(p) for p in ops.list_for_resource_group(resource_group)]
