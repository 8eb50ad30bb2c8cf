"""A broker's API in-process for tests: a SQLite store, the issue's approval rules, and a
verifier that knows a few tokens (the real one checks JWTs; the API needs only its method)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import httpx

from jitctl.broker.api import Settings, create_app
from jitctl.broker.errors import Unauthenticated
from jitctl.broker.inprocess import InProcess
from jitctl.broker.rules import Principal, RuleSet
from jitctl.broker.store import Store, open_engine
from jitctl.broker.views import Access
from jitctl.clock import FakeClock
from jitctl.errors import NotFound
from jitctl.policyfile import load_file

SUB = "00000000-0000-0000-0000-000000000001"
POLICY = f"subscriptions: [{SUB}]\n" + textwrap.dedent(
    """\
    targets:
      - resourceGroup: rg-prod
        names: ['*']
        ports: [22, 3389]
    approvals:
      - match: {resourceGroup: rg-prod}
        requesters: ["group:engineers"]
        approvers: ["group:ops-leads", "user:lead@contoso.com"]
        minApprovals: 1
        maxDuration: 3h
        pendingTtl: 1h
        reasonRequired: true
        ticketPattern: "^INC[0-9]+$"
        autoApprove: {requesters: ["group:oncall"], maxDuration: 1h}
        breakGlass: {requesters: ["group:sre"]}
      - match: {resourceGroup: rg-prod, tags: {env: pci}}
        deny: {requesters: ["group:contractors"]}
    """
)
OID_IVY = "1c0ffee0-0000-4000-8000-000000000001"
OID_OZ = "1c0ffee0-0000-4000-8000-000000000002"
PEOPLE = {
    "ann": Principal("ann@contoso.com", frozenset({"engineers"})),
    "ben": Principal("ben@contoso.com", frozenset({"engineers"})),
    "olga": Principal("olga@contoso.com", frozenset({"ops-leads"})),
    "lead": Principal("lead@contoso.com", frozenset()),
    "eve": Principal("eve@contoso.com", frozenset({"engineers", "ops-leads"})),
    "otto": Principal("otto@contoso.com", frozenset({"engineers", "oncall"})),
    "mal": Principal("mal@contoso.com", frozenset({"engineers", "contractors"})),
    "adam": Principal("adam@contoso.com", frozenset({"broker-admins"})),
    # requesters who also run the broker (and one who also approves others' requests)
    "ada": Principal("ada@contoso.com", frozenset({"engineers", "broker-admins"})),
    "max": Principal("max@contoso.com", frozenset({"engineers", "ops-leads", "broker-admins"})),
    # the same people as their tokens' object ids say, under a name changed since (or a
    # preferred_username someone set): who is who goes by the oid
    "ivy": Principal("ivy@contoso.com", frozenset({"engineers", "ops-leads"}), oid=OID_IVY),
    "ivy2": Principal("ivy.new@contoso.com", frozenset({"ops-leads"}), oid=OID_IVY),
    "oz": Principal("oz@contoso.com", frozenset({"ops-leads"}), oid=OID_OZ),
    "oz2": Principal("oz.renamed@contoso.com", frozenset({"ops-leads"}), oid=OID_OZ.upper()),
    "oz3": Principal("ivy@contoso.com", frozenset({"ops-leads"}), oid=OID_OZ),  # took ivy's name
    "audrey": Principal("audrey@contoso.com", frozenset({"auditors"})),
}
VMS = {  # what the VM lookup knows: name -> tags
    "web1": (),
    "vm-web01": (),
    "pci1": (("env", "pci"),),
}
ASK = {
    "vm": "web1",
    "resource_group": "rg-prod",
    "ports": [22],
    "duration": "1h",
    "reason": "deploy hotfix",
    "ticket": "INC42",
    "source": "203.0.113.7",
}


class FakeVerifier:
    """Token 'tok-<name>' is PEOPLE[name]; anything else is refused as the real one does."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def verify(self, token: str) -> Principal:
        self.seen.append(token)
        name = token.removeprefix("tok-")
        if not token.startswith("tok-") or name not in PEOPLE:
            raise Unauthenticated("The token was refused: bad signature.", "Sign in again.")
        return PEOPLE[name]


def vm_tags(vm_id: str) -> tuple[tuple[str, str], ...]:
    name = vm_id.rsplit("/", 1)[-1]
    if name not in VMS:
        raise NotFound(f"VM {name} was not found.", "Check the name and resource group.")
    return VMS[name]


def rules_in(folder: Path, text: str = POLICY) -> RuleSet:
    path = folder / "approvals.yaml"
    path.write_text(text)
    loaded, problems = load_file(path, "approvals.yaml")
    assert problems == [] and loaded is not None
    return RuleSet.from_files([loaded])


def settings() -> Settings:
    return Settings(
        access=Access(admins=("group:broker-admins",), auditors=("group:auditors",)),
        subscription=SUB,
        vm_tags=vm_tags,
    )


def make_store(tmp_path: Path, clock: FakeClock) -> Store:
    store = Store(open_engine(f"sqlite:///{tmp_path / 'broker.sqlite'}"), clock)
    store.migrate()
    return store


class Broker:
    """The API in-process, with a way to call it as each person."""

    def __init__(
        self,
        tmp_path: Path,
        clock: FakeClock,
        policy: str = POLICY,
        options: Settings | None = None,
    ) -> None:
        self.clock = clock
        self.store = make_store(tmp_path, clock)
        ruleset = rules_in(tmp_path, policy)
        self.verifier = FakeVerifier()
        self.app = create_app(self.store, lambda: ruleset, self.verifier, options or settings())
        self.http = httpx.Client(transport=InProcess(self.app), base_url="http://127.0.0.1:8765")

    def call(self, who: str | None, method: str, path: str, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer tok-{who}"} if who else {}
        return self.http.request(method, f"/api/v1{path}", headers=headers, **kw)

    def ask(self, who: str = "ann", **changes: Any) -> dict[str, Any]:
        answer = self.call(who, "POST", "/requests", json={**ASK, **changes})
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def activate(self, request_id: str) -> None:
        """What the worker does once Azure took the initiate and verify found access live."""
        claimed = self.store.claim_initiates("w1")
        assert request_id in [c.id for c in claimed]
        ends = self.clock.now() + next(c.duration for c in claimed if c.id == request_id)
        self.store.finish_initiate(request_id, "w1", ok=True, azure={"status": 202}, ends_at=ends)

    def close(self) -> None:
        self.http.close()
        self.store.engine.dispose()
