"""HTTP <-> backend: a route table of ARM paths, paging, long-running writes, faults, the log."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from jitctl.emulator import defender, jit, power
from jitctl.emulator.answers import FAULT_ANSWERS, Reply, cloud_metadata
from jitctl.emulator.backend import ArmError, Backend
from jitctl.emulator.graph import ResourceGraph
from jitctl.emulator.settings import Fault, LogEntry

SUB = r"/subscriptions/(?P<sub>[^/]+)"
RG = SUB + r"/resourcegroups/(?P<rg>[^/]+)"
JIT_BASE = r"/providers/microsoft\.security(?:/locations/(?P<loc>[^/]+))?/jitnetworkaccesspolicies"
NET = RG + r"/providers/microsoft\.network"


Handler = Callable[["Request"], Reply]


@dataclass
class Request:
    method: str
    url: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    params: dict[str, str]
    peer: str | None = None  # the TCP client's address, when there is a socket

    @property
    def base(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


class Router:
    """Maps (method, path) to backend calls; one instance per backend."""

    def __init__(self, backend: Backend, rng: random.Random | None = None) -> None:
        self.backend = backend
        self.rng = rng or random.Random(7)
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.graph = ResourceGraph(backend)
        self._add_routes()

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(f"^{pattern}/?$", re.IGNORECASE), handler))

    # --- entry point ------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        raw: bytes | None,
        peer: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        hdrs = {k.lower(): v for k, v in headers.items()}
        b = self.backend
        with b.lock:
            faults = self._pick_faults(method.upper(), parts.path)
        delay = b.settings.latency + sum(f.latency for f in faults)
        if delay:
            time.sleep(delay)  # outside the lock: parallel clients wait side by side
        with b.lock:
            before = next((f for f in faults if f.status and not f.after), None)
            lost = next((f for f in faults if f.status and f.after), None)
            try:
                if before is not None:
                    raise self._fault_error(before, method.upper(), parts.path)
                reply = self._dispatch(method.upper(), url, parts.path, query, hdrs, raw, peer)
                if lost is not None:  # done, but the answer is an error
                    raise self._fault_error(lost, method.upper(), parts.path)
            except ArmError as err:
                reply = Reply(err.status, err.body(), err.headers)
            b.log.append(
                LogEntry(method.upper(), parts.path, query.get("api-version"), reply.status)
            )
        out_headers = {
            "Content-Type": "application/json; charset=utf-8",
            "x-ms-request-id": f"{len(b.log):08d}-e000-4000-8000-000000000000",
            **(reply.headers or {}),
        }
        body = b"" if reply.body is None else json.dumps(reply.body).encode()
        return reply.status, out_headers, body

    def _scope_exists(self, params: dict[str, Any]) -> None:
        """As ARM's front door: a request under a resource group that does not exist is answered
        ResourceGroupNotFound (SubscriptionNotFound for a subscription) before it reaches the
        provider; creating the group itself goes through."""
        if params.get("rg") is not None:
            self.backend.group(params["sub"], params["rg"])

    def _dispatch(
        self,
        method: str,
        url: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        raw: bytes | None,
        peer: str | None = None,
    ) -> Reply:
        if path.rstrip("/").lower() == "/metadata/endpoints":  # unauthenticated, as in Azure
            return Reply(200, cloud_metadata(f"{urlsplit(url).scheme}://{urlsplit(url).netloc}"))
        if not headers.get("authorization", "").lower().startswith("bearer "):
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                {
                    "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token"'
                },
            )
        if "api-version" not in query:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            raise ArmError(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized.",
            ) from None
        jit.tick(self.backend)
        self._caller_may(method, path)
        allowed_methods = set()
        for m, pattern, handler in self.routes:
            match = pattern.match(path)
            if match:
                allowed_methods.add(m)
                if m == method:
                    if handler != self._put_group:
                        self._scope_exists(match.groupdict())
                    return handler(
                        Request(method, url, path, query, headers, body, match.groupdict(), peer)
                    )
        if allowed_methods:
            raise ArmError(
                405, "MethodNotAllowed", f"The requested method {method} is not allowed for {path}."
            )
        raise ArmError(
            404,
            "InvalidResourceType",
            f"The resource type for '{path}' could not be found in the emulator.",
        )

    def _caller_may(self, method: str, path: str) -> None:
        """ARM's authorization, for the subscriptions where the caller holds no role."""
        parts = path.split("/")
        if (
            len(parts) > 2
            and parts[1].lower() == "subscriptions"
            and not self.backend.readable(parts[2])
        ):
            code, message = FAULT_ANSWERS[403]
            raise ArmError(403, code, message.format(method=method, path=path))

    def _pick_faults(self, method: str, path: str) -> list[Fault]:
        """The faults that apply to this request (each used up once when counted by times)."""
        picked = []
        for fault in list(self.backend.faults):
            if fault.match.lower() not in path.lower() or (
                fault.method and fault.method.upper() != method
            ):
                continue
            if fault.rate:
                if self.rng.random() >= fault.rate:
                    continue
            else:
                fault.times -= 1
                if fault.times <= 0:
                    self.backend.faults.remove(fault)
            picked.append(fault)
        return picked

    @staticmethod
    def _fault_error(fault: Fault, method: str, path: str) -> ArmError:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        code, message = FAULT_ANSWERS.get(fault.status, ("Fault", "Injected fault."))
        return ArmError(fault.status, code, message.format(method=method, path=path), headers)

    # --- helpers ---------------------------------------------------------------------------

    def _page(self, req: Request, items: Sequence[Any]) -> Reply:
        size = max(1, self.backend.settings.page_size)
        start = int(req.query.get("$skiptoken", "0") or 0)
        page: dict[str, Any] = {"value": items[start : start + size]}
        if start + size < len(items):
            query = dict(req.query, **{"$skiptoken": str(start + size)})
            page["nextLink"] = f"{req.base}{req.path}?{urlencode(query)}"
        return Reply(200, page)

    def _lro(
        self, req: Request, resource: Any, created: bool, location: str | None = None
    ) -> Reply:
        """Network and compute writes answer 201/200 with Azure-AsyncOperation, like Azure."""
        op_url = self._operation_url(req, location or resource.get("location"))
        body = json.loads(json.dumps(resource))
        body.get("properties", {})["provisioningState"] = "Updating"
        return Reply(
            201 if created else 200, body, {"Azure-AsyncOperation": op_url, "Retry-After": "0"}
        )

    def accepted(self, req: Request, location: str | None) -> Reply:
        """A long-running action (a VM's deallocate, start): 202 with Azure-AsyncOperation."""
        op_url = self._operation_url(req, location)
        return Reply(202, None, {"Azure-AsyncOperation": op_url, "Retry-After": "0"})

    def _operation_url(self, req: Request, location: str | None) -> str:
        b = self.backend
        op_id = f"{b.next_id():08d}-0000-4000-8000-00000000a51c"
        b.state["operations"][op_id] = {"polls_left": b.settings.lro_polls}
        provider = (
            "Microsoft.Compute"
            if "/microsoft.compute/" in req.path.lower()
            else "Microsoft.Network"
        )
        loc = (location or "westus").replace(" ", "").lower()
        return (
            f"{req.base}/subscriptions/{req.params['sub']}/providers/{provider}/locations/"
            f"{loc}/operations/{op_id}?api-version={req.query['api-version']}"
        )

    def _operation(self, req: Request) -> Reply:
        op = self.backend.state["operations"].get(req.params["op"])
        if op is None:
            raise ArmError(404, "OperationNotFound", "The operation was not found.")
        if op["polls_left"] > 0:
            op["polls_left"] -= 1
            return Reply(200, {"status": "InProgress"}, {"Retry-After": "0"})
        return Reply(200, {"status": "Succeeded"})

    # --- routes ------------------------------------------------------------------------------

    def _add_routes(self) -> None:
        b = self.backend
        r = self.route
        r("GET", "/subscriptions", lambda q: self._page(q, b.visible_subscriptions()))
        r("GET", SUB, lambda q: Reply(200, b.subscription(q.params["sub"])))
        r("GET", RG, lambda q: Reply(200, b.group(q.params["sub"], q.params["rg"])))
        r("PUT", RG, self._put_group)
        r(
            "POST",
            r"/providers/microsoft\.resourcegraph/resources",
            lambda q: Reply(200, *self.graph.query(q.body)),
        )
        r(
            "GET",
            SUB
            + r"/providers/(?P<prov>microsoft\.(?:network|compute))/locations/[^/]+/operations/(?P<op>[^/]+)",
            self._operation,
        )
        # JIT policies
        r(
            "GET",
            SUB + JIT_BASE,
            lambda q: self._page(q, jit.list_policies(b, q.params["sub"], None, q.params["loc"])),
        )
        r(
            "GET",
            RG + JIT_BASE,
            lambda q: self._page(
                q, jit.list_policies(b, q.params["sub"], q.params["rg"], q.params["loc"])
            ),
        )
        item = (
            RG
            + r"/providers/microsoft\.security/locations/(?P<loc>[^/]+)/jitnetworkaccesspolicies/(?P<name>[^/]+)"
        )
        r("GET", item, lambda q: Reply(200, jit.get_policy(b, *self._jit_args(q))))
        r("PUT", item, lambda q: Reply(200, jit.put_policy(b, *self._jit_args(q), q.body or {})))
        r("DELETE", item, lambda q: Reply(200 if jit.delete_policy(b, *self._jit_args(q)) else 204))
        r("POST", item + "/initiate", self._initiate)  # any letter case, as every route
        defender.add_routes(self, SUB, RG)
        power.add_routes(self, RG)
        # compute and network resources
        for kind, provider in (
            ("virtualMachines", "microsoft\\.compute"),
            ("networkInterfaces", "microsoft\\.network"),
            ("networkSecurityGroups", "microsoft\\.network"),
            ("virtualNetworks", "microsoft\\.network"),
            ("publicIPAddresses", "microsoft\\.network"),
            ("azureFirewalls", "microsoft\\.network"),
        ):
            self._resource_routes(kind, provider)
        nsg = NET + r"/networksecuritygroups/(?P<nsg>[^/]+)"
        r(
            "GET",
            nsg + "/securityrules",
            lambda q: self._page(q, b.rules(self._parent(q, "/securityrules"))),
        )
        r("GET", nsg + "/securityrules/(?P<name>[^/]+)", self._get_rule)
        r("PUT", nsg + "/securityrules/(?P<name>[^/]+)", self._put_rule)
        r("DELETE", nsg + "/securityrules/(?P<name>[^/]+)", self._delete_rule)
        r(
            "GET",
            nsg + "/defaultsecurityrules",
            lambda q: self._page(
                q,
                b.get(self._parent(q, "/defaultsecurityrules"))["properties"][
                    "defaultSecurityRules"
                ],
            ),
        )
        vnet = NET + r"/virtualnetworks/(?P<vnet>[^/]+)"
        r(
            "GET",
            vnet + "/subnets",
            lambda q: self._page(
                q, b.get(self._parent(q, "/subnets"))["properties"].get("subnets", [])
            ),
        )
        r(
            "GET",
            vnet + "/subnets/(?P<name>[^/]+)",
            lambda q: Reply(200, b.subnet(self._canonical(q))),
        )
        r(
            "PUT",
            vnet + "/subnets/(?P<name>[^/]+)",
            lambda q: self._lro(q, *b.put_subnet(self._canonical(q), q.body or {})),
        )

    def _initiate(self, q: Request) -> Reply:
        b = self.backend
        body = q.body or {}
        return Reply(202, jit.initiate(b, *self._jit_args(q), body, jit.caller_of(b, q.peer)))

    @staticmethod
    def _jit_args(q: Request) -> tuple[str, str, str, str]:
        return q.params["sub"], q.params["rg"], q.params["loc"], q.params["name"]

    @staticmethod
    def _canonical(q: Request) -> str:
        return q.path.rstrip("/")

    @staticmethod
    def _parent(q: Request, suffix: str) -> str:
        return q.path.rstrip("/")[: -len(suffix)]

    def _put_group(self, q: Request) -> Reply:
        existed = (
            f"/subscriptions/{q.params['sub']}/resourcegroups/{q.params['rg']}".lower()
            in self.backend.state["groups"]
        )
        group = self.backend.put_group(
            q.params["sub"], q.params["rg"], (q.body or {}).get("location", "westus")
        )
        return Reply(200 if existed else 201, group)

    def _resource_routes(self, kind: str, provider: str) -> None:
        b = self.backend
        one = RG + f"/providers/{provider}/{kind.lower()}/(?P<name>[^/]+)"
        self.route("GET", one, lambda q: Reply(200, b.get(self._canonical(q))))
        self.route("PUT", one, lambda q: self._lro(q, *b.put(self._canonical(q), q.body or {})))
        self.route("DELETE", one, lambda q: Reply(200 if b.delete(self._canonical(q)) else 204))
        self.route(
            "GET",
            RG + f"/providers/{provider}/{kind.lower()}",
            lambda q: self._page(
                q,
                b.list_of(
                    f"/subscriptions/{q.params['sub']}/resourceGroups/{q.params['rg']}",
                    kind.lower(),
                ),
            ),
        )
        self.route(
            "GET",
            SUB + f"/providers/{provider}/{kind.lower()}",
            lambda q: self._page(q, b.list_of(f"/subscriptions/{q.params['sub']}", kind.lower())),
        )

    def _get_rule(self, q: Request) -> Reply:
        for rule in self.backend.rules(self._parent(q, "/securityrules/" + q.params["name"])):
            if rule["name"].lower() == q.params["name"].lower():
                return Reply(200, rule)
        raise ArmError(404, "NotFound", f"Resource {q.path} not found.")

    def _put_rule(self, q: Request) -> Reply:
        nsg_id = self._parent(q, "/securityrules/" + q.params["name"])
        rule, created = self.backend.put_rule(nsg_id, dict(q.body or {}, name=q.params["name"]))
        return self._lro(q, rule, created, self.backend.get(nsg_id).get("location"))

    def _delete_rule(self, q: Request) -> Reply:
        nsg_id = self._parent(q, "/securityrules/" + q.params["name"])
        return Reply(200 if self.backend.delete_rule(nsg_id, q.params["name"]) else 204)
