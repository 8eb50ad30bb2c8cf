"""`rdp`, `ssh`, `ssh-proxy`, `tunnel --via-broker`: a requester without Azure rights connects
in one command. The broker's API in-process (tests/brokerapi.py) with its worker on the
emulator (the loopback world: vm-local answers at 127.0.0.1), the launcher faked."""

from __future__ import annotations

import itertools
import json
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jitctl.app import App
from jitctl.broker.api import Settings
from jitctl.broker.views import Access
from jitctl.broker.worker import Worker, WorkerSettings
from jitctl.cli.commands import cli
from jitctl.clock import FakeClock
from jitctl.emulator.worlds import LOOPBACK_GROUP
from jitctl.errors import NotEffective
from jitctl.ids import VmRef
from jitctl.model import PortRule
from jitctl.services.policies import enable
from tests.brokerapi import Broker
from tests.support import SUB
from tests.test_connect import FakeRunner
from tests.test_tunnel import Server, answer, talk

URL = "http://127.0.0.1:8765"
SOURCE = "198.51.100.7"
LOCAL = VmRef(SUB, LOOPBACK_GROUP, "vm-local")
RULES = f"subscriptions: [{SUB}]\n" + textwrap.dedent(
    f"""\
    targets:
      - resourceGroup: {LOOPBACK_GROUP}
        names: ['*']
        ports: [22]
    approvals:
      - match: {{resourceGroup: {LOOPBACK_GROUP}}}
        requesters: ["group:engineers", "group:oncall"]
        approvers: ["group:ops-leads"]
        reasonRequired: true
        autoApprove: {{requesters: ["group:oncall"], maxDuration: 1h}}
    """
)
FAST = WorkerSettings(wait_timeout=30, claim_stale_after=timedelta(minutes=10), parallel=1)


@pytest.fixture
def world() -> str:
    return "loopback"


@pytest.fixture
def server() -> Any:
    s = Server()
    yield s
    s.close()


@pytest.fixture
def broker(tmp_path: Path, app: App, clock: FakeClock, server: Server) -> Any:
    enable(app.gateway(), [LOCAL], [PortRule(server.port), PortRule(22)], clock=clock)
    options = Settings(access=Access(admins=("group:broker-admins",)), subscription=SUB)
    b = Broker(tmp_path, clock, RULES, options)
    b.worker = Worker(b.store, app.gateway(), clock, name="w1", settings=FAST)  # type: ignore[attr-defined]
    yield b
    b.close()


class WorkingClock(FakeClock):
    """The requester's clock: while they wait, the broker's worker does a round (and `then`,
    if given, plays a person deciding)."""

    def __init__(self, broker: Broker, then: Any = None) -> None:
        super().__init__()
        self.broker, self.then = broker, then

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if self.then is not None:
            self.then()
        self.broker.worker.run_once()  # type: ignore[attr-defined]


def requester(broker: Broker, tmp_path: Path, clock: FakeClock | None = None) -> App:
    """A requester's jitctl: the broker's API and nothing of Azure (no gateway, no backend)."""
    return App(
        clock=clock or WorkingClock(broker),
        broker_http=broker.http,
        runner=FakeRunner(),
        data_dir=tmp_path / "data",
    )


def jitctl(app: App, who: str, *args: str, **kw: Any) -> Any:
    env = {"JITCTL_BROKER_TOKEN": f"tok-{who}", "JITCTL_BROKER_URL": URL, "JITCTL_VIA_BROKER": "1"}
    return CliRunner().invoke(cli, list(args), obj=app, env=env, **kw)


def at(server: Server, *more: str, source: str = SOURCE) -> list[str]:
    port = str(server.port)
    return ["vm-local", "-g", LOOPBACK_GROUP, "--source-ip", source, "--port", port, *more]


def test_rdp_via_the_broker_asks_waits_and_writes_the_rdp_file_for_the_brokers_address(
    broker, tmp_path, server, backend
):
    app = requester(broker, tmp_path)
    got = jitctl(
        app, "otto", "rdp", *at(server, "--justification", "INC42", "--no-launch"), "-o", "json"
    )
    assert got.exit_code == 0, got.output
    ready = json.loads(got.stdout)["ready"]
    assert (ready["connect_host"], ready["connect_port"], ready["via"]) == (
        "127.0.0.1",
        server.port,
        "public",
    )
    assert ready["reused"] is False and ready["verification"]["effective"] is True
    (rec,) = broker.store.list_requests(limit=10)
    assert (rec.state.value, rec.requester, rec.source, rec.ports) == (
        "active",
        "otto@contoso.com",
        SOURCE,
        (server.port,),
    )
    assert ready["request_id"] == rec.id
    rdp = (tmp_path / "data" / "rdp" / "vm-local.rdp").read_text()
    assert f"full address:s:127.0.0.1:{server.port}" in rdp
    initiates = [e for e in backend.log if e.path.endswith("/initiate")]
    assert len(initiates) == 1
    # the same VM, port and source again: the active grant is reused, nothing asked or sent
    again = jitctl(app, "otto", "rdp", *at(server, "--justification", "x", "--no-launch"))
    assert again.exit_code == 0, again.output
    assert "(reused grant)" in again.stdout and "Reusing broker request" in again.stderr
    assert len(broker.store.list_requests(limit=10)) == 1
    assert len([e for e in backend.log if e.path.endswith("/initiate")]) == 1
    # another source is another grant
    other = jitctl(
        app,
        "otto",
        "rdp",
        *at(server, "--no-launch", "--justification", "y", source="198.51.100.8"),
    )
    assert other.exit_code == 0, other.output
    assert len(broker.store.list_requests(limit=10)) == 2


def test_the_direct_path_and_the_broker_agree_on_where_to_connect(broker, tmp_path, server, app):
    via = jitctl(
        requester(broker, tmp_path),
        "otto",
        "ssh",
        *at(server, "--justification", "a", "--no-launch"),
        "-o",
        "json",
    )
    assert via.exit_code == 0, via.output
    app.data_dir = tmp_path / "direct"
    direct = CliRunner().invoke(cli, ["ssh", *at(server, "--no-launch"), "-o", "json"], obj=app)
    assert direct.exit_code == 0, direct.output
    mine, theirs = json.loads(via.stdout), json.loads(direct.stdout)
    assert mine["command"] == theirs["command"]
    assert theirs["ready"]["reused"] is True  # the grant the broker opened, seen directly


def test_ssh_via_the_broker_runs_ssh_and_exits_with_its_status(broker, tmp_path, server):
    app = requester(broker, tmp_path)
    app.runner = FakeRunner(installed={"ssh": "/usr/bin/ssh"}, status=3)
    got = jitctl(app, "otto", "ssh", *at(server, "--justification", "a", "--user", "azureuser"))
    assert got.exit_code == 3, got.output
    assert app.runner.ran == [["/usr/bin/ssh", "-p", str(server.port), "--", "azureuser@127.0.0.1"]]


def test_ssh_proxy_via_the_broker_relays_to_the_vm(broker, tmp_path, server):
    app = requester(broker, tmp_path)
    got = jitctl(app, "otto", "ssh-proxy", *at(server, "--justification", "a"), input=b"hello")
    assert got.exit_code == 0, got.output
    assert got.stdout_bytes == answer(b"hello")


class CtrlC(WorkingClock):
    """The worker's rounds while waiting; once the tunnel is up (the first sleep after
    access), a client talks through it and Ctrl-C follows."""

    def __init__(self, broker: Broker, port: int) -> None:
        super().__init__(broker)
        self.port, self.said = port, []

    def sleep(self, seconds: float) -> None:
        if self.broker.store.list_requests(limit=1)[0].state.value == "active":
            self.said.append(talk(self.port, b"db query"))
            raise KeyboardInterrupt
        super().sleep(seconds)


def test_tunnel_via_the_broker_forwards_to_the_vm(broker, tmp_path, server):
    from tests.test_tunnel import free_port

    local = free_port()
    clock = CtrlC(broker, local)
    app = requester(broker, tmp_path, clock)
    got = jitctl(
        app,
        "otto",
        "tunnel",
        *at(server, "--justification", "a", "--local-port", str(local)),
        "-o",
        "json",
    )
    assert got.exit_code == 0, got.output
    assert clock.said == [answer(b"db query")]
    doc = json.loads(got.stdout)
    assert (doc["remote_host"], doc["remote_port"]) == ("127.0.0.1", server.port)


def test_pending_past_the_timeout_exits_8_with_the_request_id_and_what_to_do(
    broker, tmp_path, server
):
    app = requester(broker, tmp_path)
    got = jitctl(
        app, "ann", "rdp", *at(server, "--justification", "a", "--no-launch", "--timeout", "3s")
    )
    assert got.exit_code == 8, got.output
    (rec,) = broker.store.list_requests(limit=10)
    assert rec.state.value == "pending"
    assert f"waiting for approval of request {rec.id}" in got.stderr
    assert got.stderr.endswith(
        f"jitctl: error: Request {rec.id} is still pending.\n"
        f"Hint: See where it is with: jitctl broker show {rec.id}\n"
    )


def test_approved_while_waiting_then_connects(broker, tmp_path, server):
    def approve() -> None:
        for rec in broker.store.list_requests(limit=10):
            if rec.state.value == "pending":
                broker.call("olga", "POST", f"/requests/{rec.id}/approve", json={})

    app = requester(broker, tmp_path, WorkingClock(broker, approve))
    got = jitctl(app, "ann", "ssh", *at(server, "--justification", "a", "--no-launch"))
    assert got.exit_code == 0, got.output
    assert got.stdout.startswith(f"vm-local: ssh to 127.0.0.1:{server.port} (public address)")


def test_denied_exits_6_and_nothing_is_connected(broker, tmp_path, server, backend):
    def deny() -> None:
        rec = broker.store.list_requests(limit=1)[0]
        broker.call("olga", "POST", f"/requests/{rec.id}/deny", json={"reason": "use staging"})

    app = requester(broker, tmp_path, WorkingClock(broker, deny))
    app.runner = FakeRunner(installed={"ssh": "/usr/bin/ssh"})
    got = jitctl(app, "ann", "ssh", *at(server, "--justification", "a"))
    assert got.exit_code == 6, got.output
    assert "is denied" in got.stderr and app.runner.ran == []
    assert not [e for e in backend.log if e.path.endswith("/initiate")]


def test_bad_combinations_are_bad_input_before_anything_is_asked(broker, tmp_path, server):
    app = requester(broker, tmp_path)
    no_reason = jitctl(app, "otto", "ssh", *at(server, "--no-launch"))
    assert no_reason.exit_code == 2, no_reason.output
    ticket = CliRunner().invoke(cli, ["ssh", *at(server, "--ticket", "INC1")], obj=app)
    assert ticket.exit_code == 2 and "--via-broker" in ticket.stderr
    assert broker.store.list_requests(limit=10) == []


def test_direct_overrides_the_env_default(broker, tmp_path, server, app):
    """JITCTL_VIA_BROKER=1 makes the broker the default; --direct asks Azure itself."""
    app.data_dir = tmp_path / "direct"
    got = jitctl(app, "otto", "ssh", *at(server, "--direct", "--no-launch"))
    assert got.exit_code == 0, got.output
    assert broker.store.list_requests(limit=10) == []


def test_broker_request_wait_prints_the_proof_as_request_wait_does(broker, tmp_path, server, app):
    """`broker request --wait`: once active, the request and the broker's verify verdict,
    the same line `jitctl verify` writes for that grant; exit 0 as it is effective."""
    mine = requester(broker, tmp_path)
    port = str(server.port)
    args = ["broker", "request", "vm-local", "-g", LOOPBACK_GROUP, "--port", port]
    got = jitctl(mine, "otto", *args, "--reason", "INC42", "--source-ip", SOURCE, "--wait")
    assert got.exit_code == 0, got.output
    direct = CliRunner().invoke(cli, ["verify", *at(server)], obj=app, catch_exceptions=False)
    assert direct.exit_code == 0, direct.output
    verdict = direct.stdout.splitlines()[0]
    assert verdict == f"EFFECTIVE: {SOURCE} -> vm-local 127.0.0.1:{port}/tcp"
    lines = got.stdout.splitlines()
    assert lines[-1] == verdict and "state        active" in got.stdout
    doc = json.loads(
        jitctl(
            mine, "otto", "broker", "show", broker.store.list_requests(limit=1)[0].id, "-o", "json"
        ).stdout
    )
    assert doc["access"]["verification"]["effective"] is True
    assert doc["access"]["connect"] == [
        {"port": server.port, "host": "127.0.0.1", "connect_port": server.port, "via": "public"}
    ]


def test_broker_request_wait_exits_non_zero_when_the_proof_is_not_effective(
    broker, tmp_path, server
):
    """An active request whose stored proof says not effective (a broker that got it wrong,
    or a document edited in the store) is no exit 0."""
    mine = requester(broker, tmp_path)
    got = jitctl(
        mine,
        "otto",
        "broker",
        "request",
        *at(server)[:3],
        "--port",
        str(server.port),
        "--reason",
        "x",
        "--source-ip",
        SOURCE,
        "--wait",
        "-o",
        "json",
    )
    assert got.exit_code == 0, got.output
    rid = json.loads(got.stdout)["id"]
    from jitctl.broker.models import requests

    doc = json.loads(got.stdout)
    doc["access"]["verification"]["effective"] = False
    doc["access"]["verification"]["ports"][0]["effective"] = False
    with broker.store.engine.begin() as conn:
        conn.execute(
            requests.update().where(requests.c.id == rid).values(access=json.dumps(doc["access"]))
        )
    from jitctl.cli.broker_calls import show_live

    app = requester(broker, tmp_path)
    app.output = "json"
    with pytest.raises(NotEffective) as err:
        show_live(app, json.loads(jitctl(mine, "otto", "broker", "show", rid, "-o", "json").stdout))
    assert rid in err.value.hint


class Spawning(FakeRunner):
    """ssh as a child that runs until the requester's clock reaches `until`."""

    def __init__(self, clock: FakeClock, until: Any) -> None:
        super().__init__(installed={"ssh": "/usr/bin/ssh"})
        self.clock, self.until, self.spawned = clock, until, []

    def spawn(self, args: list[str]) -> Any:
        self.spawned.append(args)
        clock, until = self.clock, self.until

        class Child:
            def poll(self) -> int | None:
                return None if clock.now() < until else 0

            def wait(self) -> int:
                return 0

        return Child()


class SharedClock(WorkingClock):
    """The requester's clock is the broker's (and Azure's), a minute a look."""

    def __init__(self, broker: Broker, shared: FakeClock, then: Any = None) -> None:
        super().__init__(broker, then)
        self.shared = shared

    def now(self) -> Any:
        return self.shared.now()

    def sleep(self, seconds: float) -> None:
        self.shared.sleep(max(seconds, 60.0))
        if self.then is not None:
            self.then()
        self.broker.worker.run_once()  # type: ignore[attr-defined]


def initiates(backend: Any) -> int:
    return len([e for e in backend.log if e.path.endswith("/initiate")])


def test_keep_alive_via_the_broker_renews_with_new_requests_the_rules_auto_approve(
    broker, tmp_path, server, clock, backend
):
    mine = SharedClock(broker, clock)
    start = mine.now()
    app = requester(broker, tmp_path, mine)
    app.runner = Spawning(mine, start + timedelta(minutes=50))
    args = at(server, "--justification", "INC42", "--duration", "30m", "--keep-alive")
    got = jitctl(app, "otto", "ssh", *args)
    assert got.exit_code == 0, got.output
    recs = sorted(broker.store.list_requests(limit=10), key=lambda r: r.created_at)
    # at 50 min: each renewal's newer initiate superseded the older grant in Azure
    assert [r.state.value for r in recs] == ["expired", "expired", "active"]
    ended = broker.store.events_of([recs[1].id])[-1]
    assert ended["action"] == "expire"
    assert ended["reason"].startswith(f"Superseded by request {recs[2].id} at ")
    assert ended["reason"].endswith("Z (Azure: NewerRequestInitiated).")
    assert {(r.reason, r.source, r.ports) for r in recs} == {("INC42", SOURCE, (server.port,))}
    assert initiates(backend) == 3  # each renewal is a newer initiate, superseding the older
    renewed = [x for x in got.stderr.splitlines() if x.startswith("Renewed access")]
    assert renewed == [
        f"Renewed access to vm-local until {r.ends_at:%H:%M} UTC (broker request {r.id})."
        for r in recs[1:]
    ]
    # asked 10 minutes before each end (max(3 min, min(10 min, half the grant)))
    for older, newer in itertools.pairwise(recs):
        early = older.ends_at - newer.created_at
        assert timedelta(minutes=9) <= early <= timedelta(minutes=10), early
    assert "Client ended; keep-alive stopped after 2 renewal(s)." in got.stderr


@pytest.mark.parametrize("approver", [None, "deny"])
def test_keep_alive_via_the_broker_says_when_the_renewal_waits_and_ends_cleanly(
    broker, tmp_path, server, clock, backend, approver
):
    first: list[str] = []

    def decide() -> None:
        recs = sorted(broker.store.list_requests(limit=10), key=lambda r: r.created_at)
        if recs and recs[0].state.value == "pending":  # the first request: approved
            first.append(recs[0].id)
            broker.call("olga", "POST", f"/requests/{recs[0].id}/approve", json={})
        elif len(recs) == 2 and recs[1].state.value == "pending" and approver == "deny":
            broker.call("olga", "POST", f"/requests/{recs[1].id}/deny", json={"reason": "no"})

    mine = SharedClock(broker, clock, decide)
    app = requester(broker, tmp_path, mine)
    app.runner = Spawning(mine, mine.now() + timedelta(minutes=45))
    args = at(server, "--justification", "INC42", "--duration", "30m", "--keep-alive")
    got = jitctl(app, "ann", "ssh", *args)
    assert got.exit_code == 0, got.output
    recs = sorted(broker.store.list_requests(limit=10), key=lambda r: r.created_at)
    assert len(recs) == 2 and recs[0].id == first[0]  # asked once again, never more
    renewal = recs[1]
    assert initiates(backend) == 1
    lines = got.stderr.splitlines()
    assert f"Asked the broker to renew access: request {renewal.id} is pending." in lines
    end = recs[0].ends_at
    if approver is None:
        assert renewal.state.value == "cancelled"
        assert (
            f"Renewal request {renewal.id} waits for approval (the rules ask for it); access "
            f"lasts until {end:%H:%M} UTC. Approvers: jitctl broker approve {renewal.id}"
        ) in lines
        assert (
            f"Access to vm-local ended at {end:%H:%M} UTC before renewal request {renewal.id} "
            "was approved: new connections are refused; established ones stay."
        ) in lines
        assert f"Cancelled renewal request {renewal.id}: access ended." in lines
    else:
        assert renewal.state.value == "denied"
        assert (
            f"Renewal request {renewal.id} is denied: access to vm-local ends at {end:%H:%M} "
            "UTC; not asking again."
        ) in lines
        assert (
            f"Access to vm-local ended at {end:%H:%M} UTC: new connections are refused; "
            "established ones stay."
        ) in lines


def broker_request(app: App, server: Server, *more: str) -> Any:
    port = str(server.port)
    return jitctl(
        app,
        "otto",
        "broker",
        "request",
        "vm-local",
        "-g",
        LOOPBACK_GROUP,
        "--port",
        port,
        "--reason",
        "INC42",
        "--source-ip",
        SOURCE,
        "--wait",
        *more,
    )


def test_broker_request_wait_says_azure_has_not_applied_it_yet_and_later_it_goes_live(
    broker, tmp_path, server, clock, backend
):
    """Azure took the initiate and applies it after the wait (no SLA): `--wait` exits 8 saying
    so, not 7; the broker keeps checking, and the request goes live when Azure applies it."""
    backend.settings.propagation_delay = 600
    app = requester(broker, tmp_path, SharedClock(broker, clock))
    got = broker_request(app, server, "--timeout", "10s")  # each look: a minute, a round
    (rec,) = broker.store.list_requests(limit=5)
    assert (got.exit_code, rec.state.value) == (8, "activating")
    assert got.stderr.endswith(
        f"jitctl: error: Request {rec.id} is still activating: the broker sent the initiate "
        "(or is sending it) and access is not live yet; Azure promises no time to apply it, and "
        "the broker keeps checking until access is live, Azure says it failed, or its end time "
        f"passes.\nHint: See where it is with: jitctl broker show {rec.id}\n"
    )
    clock.advance(minutes=10)  # Azure has applied it by now
    broker.worker.run_once()
    assert broker.store.get(rec.id).state.value == "active"
    assert initiates(backend) == 1


def test_broker_request_wait_exits_7_when_azure_could_not_apply_it(
    broker, tmp_path, server, clock, backend
):
    backend.settings.initiate_fate = "fail"
    app = requester(broker, tmp_path, SharedClock(broker, clock))
    got = broker_request(app, server, "--timeout", "10s")
    (rec,) = broker.store.list_requests(limit=5)
    assert (got.exit_code, rec.state.value) == (7, "failed")
    said = got.stderr.splitlines()
    assert said[-2].startswith(
        f"jitctl: error: Request {rec.id} failed: Azure took the initiate but could not apply it:"
    )
    assert said[-2].endswith("(SecurityRulesLimitReached).")  # Azure's reason, in words
    assert said[-1] == f"Hint: The log has Azure's answer: jitctl broker show {rec.id}"
    shown = json.loads(jitctl(app, "otto", "broker", "show", rec.id, "-o", "json").stdout)
    assert shown["failure"]["reason"] == said[-2].split(" failed: ", 1)[1]
    table = jitctl(app, "otto", "broker", "show", rec.id).stdout
    assert "\nfailed       Azure took the initiate but could not apply it" in table
