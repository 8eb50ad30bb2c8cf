"""`jitctl demo --broker`: the approval flow offline, in one process, step by step.

A broker (its JSON API in-process, its store in a temporary SQLite file, the emulator as the
identity provider that signs the people's tokens) and its worker act on a fresh emulated world:
alice asks through the broker's client (the code the `jitctl broker` commands run), bob
approves, the worker initiates with the broker's own identity and waits until access is live,
jitctl's verify proves it, and the audit log is read back and its hash chain checked.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from jitctl.app import App
from jitctl.demo import DemoStep, Progress, timed_step
from jitctl.ids import VmRef
from jitctl.model import PortRule

REQUESTER = "alice@contoso.com"  # the emulator's test users (EMULATOR.md)
APPROVER = "bob@contoso.com"
ADMIN = "carol@contoso.com"
VM = "vm-win01"
PORT = 3389


def rules_yaml(subscription: str, group: str) -> str:
    """The demo's approval rules: engineers ask, ops leads approve, a reason is required."""
    return (
        f"subscriptions: [{subscription}]\n"
        "targets:\n"
        f"  - resourceGroup: {group}\n"
        f"    names: [{VM}]\n"
        f"    ports: [{PORT}]\n"
        "approvals:\n"
        f"  - match: {{resourceGroup: {group}}}\n"
        '    requesters: ["group:engineers"]\n'
        '    approvers: ["group:ops-leads"]\n'
        "    minApprovals: 1\n"
        "    maxDuration: 3h\n"
        "    reasonRequired: true\n"
    )


@dataclass(frozen=True)
class DemoBroker:
    """The broker's parts, as `jitctl broker serve` wires them, minus the port."""

    store: Any
    http: Any
    worker: Any
    folder: Path

    def as_user(self, app: App, upn: str) -> Any:
        """The broker's client (as the CLI builds it) with `upn`'s token from the emulator."""
        from jitctl.broker.client import BrokerClient
        from jitctl.emulator.oidc import BROKER_APP_ID

        return BrokerClient(
            "http://127.0.0.1:8080", lambda: app.emulator_token(upn, BROKER_APP_ID), self.http
        )


def start_broker(app: App, folder: Path, subscription: str, group: str) -> DemoBroker:
    from jitctl.broker.api import Settings, create_app
    from jitctl.broker.azureside import JitCheck, VmTags
    from jitctl.broker.inprocess import client_for
    from jitctl.broker.server import FolderRules
    from jitctl.broker.store import Store
    from jitctl.broker.views import Access
    from jitctl.broker.worker import Worker, WorkerSettings

    (folder / "policies").mkdir()
    (folder / "policies" / "approvals.yaml").write_text(rules_yaml(subscription, group))
    store = Store.open(f"sqlite:///{folder / 'broker.sqlite'}", app.clock)
    store.migrate()
    gw = app.gateway()

    settings = Settings(
        access=Access(admins=("group:broker-admins",)),
        subscription=subscription,
        vm_tags=VmTags(gw),
        jit_check=JitCheck(gw),
    )
    asgi = create_app(
        store, FolderRules(folder / "policies"), app.token_verifier(None, None), settings
    )
    worker = Worker(store, gw, app.clock, name="broker-demo", settings=WorkerSettings())
    return DemoBroker(store, client_for(asgi), worker, folder)


def run_broker_demo(
    app: App, source_ip: str, timeout: float = 60.0, progress: Progress | None = None
) -> Iterator[DemoStep]:
    """Yields each step as it completes. `app`: an App on a freshly seeded emulator."""
    from jitctl.emulator.seeder import DEMO_GROUP, DEMO_SUBSCRIPTION
    from jitctl.services.firewall import firewall_address
    from jitctl.services.policies import enable
    from jitctl.services.verify import verify

    gw = app.gateway()
    ref = VmRef(DEMO_SUBSCRIPTION, DEMO_GROUP, VM)

    step = partial(timed_step, app)

    with tempfile.TemporaryDirectory(prefix="jitctl-broker-demo-") as tmp:
        yield step(
            f"Enable JIT on {VM} (RDP {PORT}, 3 hours max)",
            lambda: enable(gw, [ref], [PortRule(PORT)], clock=app.clock),
            "An admin's step; from here on only the broker's identity may initiate.",
        )
        broker = start_broker(app, Path(tmp), DEMO_SUBSCRIPTION, DEMO_GROUP)
        try:
            yield step(
                "Start a broker: its API in-process, SQLite in a temporary folder",
                lambda: rules_yaml(DEMO_SUBSCRIPTION, DEMO_GROUP),
                "The emulator is the identity provider: it signs each person's token, and the "
                "broker checks them as it checks Entra ID's. The approval rules:",
            )
            asked = step(
                f"{REQUESTER} asks for {PORT} on {VM} from {source_ip}",
                lambda: broker.as_user(app, REQUESTER).call(
                    "POST",
                    "/requests",
                    {
                        "vm": VM,
                        "resource_group": DEMO_GROUP,
                        "ports": [PORT],
                        "duration": "1h",
                        "reason": "INC42: restart the print spooler",
                        "source": source_ip,
                    },
                ),
                f"jitctl --emulator --as {REQUESTER} broker request {VM} -g {DEMO_GROUP} "
                f"--port {PORT} --duration 1h --reason 'INC42: restart the print spooler' "
                f"--source-ip {source_ip}",
            )
            yield asked
            rid = asked.result["id"]
            yield step(
                f"{APPROVER} approves it",
                lambda: broker.as_user(app, APPROVER).call(
                    "POST", f"/requests/{rid}/approve", {"comment": "ok, INC42"}
                ),
                f"jitctl --emulator --as {APPROVER} broker approve {rid} --comment 'ok, INC42'",
            )

            def work() -> Any:
                label = f"the broker's worker: initiate, wait until {VM} lets {source_ip} in"
                with progress(label) if progress else nullcontext(None):
                    return broker.worker.run_once()

            round_ = step(
                "The broker's worker initiates (its own identity) and waits until access is live",
                work,
                "The initiate is sent once, marked broker:<id> in the policy's history.",
            )
            yield DemoStep(
                round_.title,
                round_.arm_calls,
                round_.seconds,
                [
                    {"id": i.request_id, "state": i.state.value, "detail": i.detail}
                    for i in round_.result.initiated
                ],
                round_.note,
            )
            yield step(
                f"{REQUESTER} sees it active",
                lambda: broker.as_user(app, REQUESTER).call("GET", f"/requests/{rid}"),
                f"jitctl --emulator --as {REQUESTER} broker show {rid}",
            )
            yield step(
                f"Verify from the request's source (RDP on {VM})",
                lambda: verify(
                    gw,
                    ref,
                    source_ip,
                    [PORT],
                    require_jit=True,
                    firewall=firewall_address(gw, ref),
                    now=app.clock.now(),
                ),
            )
            yield step(
                "Verify from another address (must be denied)",
                lambda: verify(
                    gw,
                    ref,
                    "198.51.100.99",
                    [PORT],
                    firewall=firewall_address(gw, ref),
                    now=app.clock.now(),
                ),
            )
            yield step(
                "The audit log",
                lambda: _events(broker.as_user(app, ADMIN).call("GET", "/log", text=True)),
                f"jitctl --emulator --as {ADMIN} broker log",
            )
            yield step(
                "The audit log's hash chain",
                lambda: broker.as_user(app, ADMIN).call("GET", "/log/verify"),
                f"jitctl --emulator --as {ADMIN} broker log --verify",
            )
        finally:
            broker.http.close()
            broker.store.engine.dispose()


def _events(jsonl: str) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in jsonl.splitlines() if line.strip()]
