"""A user's shell for the docs' examples (tests/test_docs.py): a fresh home folder, the
environment, the emulator's state file, the broker `jitctl broker serve` started; and the
effect each main example must have had there.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
import httpx
from click.testing import Result

from jitctl.app import App
from jitctl.broker.inprocess import InProcess
from jitctl.cli.commands import cli
from jitctl.clock import FakeClock
from jitctl.ids import VmRef
from jitctl.services.verify import verify

OFFLINE_ADDRESS = "203.0.113.7"  # what rdp and ssh request for when offline, on the emulator
ROOT = Path(__file__).resolve().parents[1]
ADMIN = "carol@contoso.com"  # the emulator's broker admin (EMULATOR.md): reads any request


class FakeRunner:
    """Records what rdp and ssh would start: every client is installed, ssh exits 0."""

    platform = "linux"

    def __init__(self) -> None:
        self.started: list[list[str]] = []

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}"

    def start(self, args: list[str]) -> None:
        self.started.append(list(args))

    def run(self, args: list[str]) -> int:
        self.started.append(list(args))
        return 0


class BrokerHost:
    """`jitctl broker serve` as the docs run it (App.serve_broker): the API answers at the
    address it would listen on, in-process (elsewhere nothing listens: connection refused),
    and its worker does a round whenever a client waits and after each command line, as a
    served broker's worker does every 2 seconds while a person types the next line."""

    def __init__(self) -> None:
        self.served: Any = None  # jitctl.broker.server.ServedBroker
        self.serving: App | None = None  # the App of the `broker serve` that runs
        self._api: InProcess | None = None
        self.http = httpx.Client(transport=_Listening(self))

    def start(self, app: App, served: Any) -> None:
        self.serving, self.served, self._api = app, served, InProcess(served.asgi)

    def answer(self, request: httpx.Request) -> httpx.Response:
        config = self.served.config if self.served else None
        host = {"localhost": "127.0.0.1"}.get(request.url.host, request.url.host)
        listening = config is not None and (
            (host, request.url.port or 80) == (config.host, config.port)
            and request.url.scheme == ("https" if config.tls_cert else "http")
        )
        if not listening or self._api is None:
            raise httpx.ConnectError("connection refused", request=request)
        return self._api.handle_request(request)

    def catch_up(self) -> None:
        if self.served is not None:
            self.served.worker.run_once()


class _Listening(httpx.BaseTransport):
    def __init__(self, host: BrokerHost) -> None:
        self.host = host

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.host.answer(request)


class WorkingClock(FakeClock):
    """The session's clock (the emulator's too): a client's wait is the broker's worker's
    time to do a round (the worker's own waits only move the clock)."""

    def __init__(self, broker: BrokerHost) -> None:
        super().__init__()
        self.broker, self.busy = broker, False

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if not self.busy:
            self.busy = True
            try:
                self.broker.catch_up()
            finally:
                self.busy = False


class ShellApp(App):
    """One command's App, as its process has it: the one serving the broker runs on in the
    background, its emulator state file open, after its command line has returned."""

    host: BrokerHost | None = None

    def close(self) -> None:
        if self.host is None or self.host.serving is not self:
            super().close()


@dataclass
class Session:
    """One document's run: a home folder, a working folder and an environment, as a user's
    shell has; the emulator's state is in the state file the environment names."""

    env: dict[str, str | None]
    cwd: Path
    runner: FakeRunner
    clock: FakeClock
    broker: BrokerHost
    variables: dict[str, str] = field(default_factory=dict)  # the shell's own: ID=$(...)

    def app(self) -> App:
        """A new App for each command, as a new process would make (only its clock, the
        programs it starts and the broker's listening are the test's)."""
        app = ShellApp(
            clock=self.clock, runner=self.runner, interactive=False, broker_http=self.broker.http
        )
        app.host = self.broker
        app.serve_broker = lambda served: self.broker.start(app, served)
        return app


def new_session(base: Path, offline: str) -> Session:
    """A fresh home folder and nothing of the caller's environment (conftest clears JITCTL_*,
    AZURE_*, IDENTITY_*), a state file in a temporary folder, and no way out to the internet:
    the IP echo services are at `offline`, where nothing listens. The working folder is a
    checkout's as far as the docs go: it has `policies/examples/`."""
    home, cwd = base / "home", base / "work"
    home.mkdir()
    cwd.mkdir()
    shutil.copytree(ROOT / "policies" / "examples", cwd / "policies" / "examples")
    env: dict[str, str | None] = {
        "HOME": str(home),
        "USERPROFILE": str(home),
        "JITCTL_EMULATOR_STATE": str(base / "state" / "emulator.sqlite"),
        "JITCTL_IP_ECHO_URLS": f"{offline},{offline}ip",
        "AZURE_CONFIG_DIR": None,  # az's own default: ~/.azure in the fresh home, absent
        **{name: None for name in XDG},
        **{name: None for name in PROXIES},
    }
    broker = BrokerHost()
    return Session(env, cwd, FakeRunner(), WorkingClock(broker), broker)


XDG = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@contextmanager
def environment(env: dict[str, str | None]) -> Iterator[None]:
    """os.environ as `env` says (None: unset) for the time of a check, then as it was."""
    saved = {name: os.environ.get(name) for name in env}
    try:
        for name, value in env.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


# --- effects -------------------------------------------------------------------------------


def parse(words: list[str]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The command path and its parameters, as click parses them (nothing runs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # click 8.2 renames protected_args
        return parse_args(words)


def parse_args(words: list[str]) -> tuple[tuple[str, ...], dict[str, Any]]:
    args = [w for w in words[1:] if not re.fullmatch(r"[A-Z_]+=.*", w)]
    ctx = cli.make_context("jitctl", list(args), resilient_parsing=True)
    command: click.Command = cli
    path: list[str] = []
    rest = [*ctx.protected_args, *ctx.args]
    while isinstance(command, click.Group) and rest:
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            break
        path.append(rest.pop(0))
        command = sub
        ctx = command.make_context(path[-1], rest, parent=ctx, resilient_parsing=True)
        rest = [*getattr(ctx, "protected_args", []), *ctx.args]
    return tuple(path), dict(ctx.params)


def policy_ports(app: App, ref: VmRef) -> set[int]:
    gw = app.gateway()
    return {
        p.number
        for policy in gw.list_policies(ref.subscription_id, ref.resource_group)
        for vm in policy.vms
        if vm.id.lower() == ref.id.lower()
        for p in vm.ports
    }


def check_effect(session: Session, words: list[str], result: Result) -> None:
    path, params = parse(words)
    app = session.app()
    app.emulator = True  # JITCTL_EMULATOR or --emulator: as the command ran
    given = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-s", "--subscription")]
    if given:
        app.subscription, app.subscriptions = given[0], tuple(given)
    group = params.get("resource_group")
    sub = app.default_subscription()  # also after -s repeated or --all-subscriptions

    def ref(name: str) -> VmRef:
        return VmRef(sub, group or "", name)

    ports = {int(p) for p in params.get("ports") or ()} or {3389}
    vms = params.get("vms")  # VM names, or the size of the fleet world (emulator reset --vms)
    names = [*(vms if isinstance(vms, (list, tuple)) else ()), *(params.get("names") or ())]
    params["vm"] = names[0] if names else params.get("vm")
    if path == ("enable",) and not params["dry_run"]:
        for name in names:
            assert ports <= policy_ports(app, ref(name)), f"enable: {name} not in the policy"
    elif path == ("disable",) and not params["dry_run"]:
        left = policy_ports(app, ref(params["vm"]))
        assert not (ports & left if params["ports"] else left), "disable: still in the policy"
    elif path == ("request",):
        gw = app.gateway()
        grants = [
            port
            for policy in gw.list_policies(sub, group)
            for request in policy.requests
            for vm in request.vms
            if vm.id.lower() == ref(params["vm"]).id.lower()
            for port in vm.ports
            if port.source == params["source_ip"] and port.number in ports
        ]
        assert grants, "request: no grant in the policy's requests"
        if params["wait"]:
            assert verify(gw, ref(params["vm"]), params["source_ip"], sorted(ports)).ok
    elif path == ("verify",):
        assert verify(app.gateway(), ref(params["vm"]), params["source_ip"], sorted(ports)).ok
    elif path in (("rdp",), ("ssh",)):
        # offline, on the emulator: access for the documentation address, as the notice said
        source = params["source_ip"] or OFFLINE_ADDRESS
        assert source == OFFLINE_ADDRESS or params["source_ip"], source
        port = params.get("port") or (3389 if path == ("rdp",) else 22)
        assert verify(app.gateway(), ref(params["vm"]), source, [port]).ok
        if not params["no_launch"]:
            program = session.runner.started[-1]
            assert program[0].endswith("xfreerdp3" if path == ("rdp",) else "ssh"), program
    elif path == ("policy", "export") and params.get("out"):
        assert Path(session.cwd / params["out"]).read_text().strip()
    elif path[:1] == ("broker",):
        broker_effect(session, app, path[1], params, result.stdout)
    elif path == ("emulator", "reset"):
        from jitctl.emulator.store import read_file

        kept = read_file(params["state"] or app_state_file()).settings
        assert all(getattr(kept, k) == v for k, v in params["settings"].items()), kept
        assert params["latency"] is None or kept.latency == params["latency"], kept


# What each broker command leaves behind, once the broker's worker did its round: the
# request's state, and whether the VM lets its source in (jitctl's own verify, from outside).
BROKER_EFFECTS = {
    "approve": ("active", True),
    "extend": ("active", True),
    "revoke": ("revoked", False),
    "deny": ("denied", None),
    "cancel": ("cancelled", None),
}


def broker_effect(
    session: Session, app: App, command: str, params: dict[str, Any], said: str
) -> None:
    if command == "serve":
        assert session.broker.served is not None, "broker serve: nothing served"
        return
    if command == "request" and params["wait"]:
        (request_id,) = set(re.findall(r"\b[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\b", said))
        doc = read_request(session, app, params["broker_url"], request_id)
    elif command in BROKER_EFFECTS:
        doc = read_request(session, app, params["broker_url"], params["request_id"])
    else:
        return
    state, live = BROKER_EFFECTS.get(command, ("active", True))
    assert doc["state"] == state, f"broker {command}: {doc['id']} is {doc['state']}"
    if command == "revoke":  # the worker removed the JIT allow rule, and the request says so
        assert doc["release"]["status"] == "done" and doc["release"]["removed"], doc["release"]
    if command == "extend":  # Azure took the new initiate: the new end, nothing in between
        from jitctl.parsing import parse_duration

        ends = datetime.fromisoformat(doc["ends_at"].replace("Z", "+00:00"))
        wanted = app.clock.now() + parse_duration(params["duration"])
        assert doc["extending_to"] is None and ends > wanted - timedelta(minutes=1), doc
    if live is not None:
        ref = VmRef(doc["subscription"], doc["resource_group"], doc["vm"])
        found = verify(app.gateway(), ref, doc["source"], doc["ports"], now=app.clock.now())
        assert found.ok is live, f"broker {command}: access {'not ' * live}effective: {found}"


def admin_client(session: Session, app: App, url: str | None) -> Any:
    """The broker's API as its admin reads it (the emulator signs the token)."""
    from jitctl.broker.client import BrokerClient
    from jitctl.emulator.oidc import BROKER_APP_ID

    where = url or os.environ["JITCTL_BROKER_URL"]
    return BrokerClient(
        where, lambda: app.emulator_token(ADMIN, BROKER_APP_ID), session.broker.http
    )


def read_request(session: Session, app: App, url: str | None, request_id: str) -> Any:
    return admin_client(session, app, url).call("GET", f"/requests/{request_id}")


def app_state_file() -> Path:
    from jitctl.emulator.statefile import emulator_state_file

    return emulator_state_file()
