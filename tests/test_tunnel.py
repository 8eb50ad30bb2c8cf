"""ssh-proxy, tunnel and keep-alive: real sockets on 127.0.0.1, a local server standing in for
the VM (the `loopback` world's vm-local is at 127.0.0.1), the emulator's fake clock."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from jitctl.cli.commands import cli
from jitctl.emulator import FakeClock
from jitctl.emulator.settings import Fault
from jitctl.emulator.worlds import LOOPBACK_GROUP
from jitctl.ids import VmRef
from jitctl.model import PortRule
from jitctl.relay import Tunnel, relay_stdio
from jitctl.services.connect import AccessRequest, ensure_access
from jitctl.services.keepalive import KeepAlive, renew_margin
from jitctl.services.policies import enable
from jitctl.services.verify import verify
from tests.support import SUB, vm_ref

PAYLOAD = bytes(range(256)) * 2048  # 512 KiB, every byte value
SOURCE = "198.51.100.7"


# --- a local server standing in for the VM ----------------------------------------------------


class Server:
    """Per connection: read until the client half-closes, answer b"got N:" + the bytes
    reversed, then close. So an answer proves the half-close reached it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.served = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        conn.sendall(b"got %d:" % len(data) + data[::-1])
        conn.close()
        self.served += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def answer(data: bytes) -> bytes:
    return b"got %d:" % len(data) + data[::-1]


def talk(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := c.recv(65536):
            out += chunk
        return out


# --- the relay ---------------------------------------------------------------------------------


def test_relay_stdio_binary_both_half_closes(server):
    sock = socket.create_connection(("127.0.0.1", server.port))
    sink = io.BytesIO()
    ended = []
    moved = relay_stdio(sock, io.BytesIO(PAYLOAD), sink, lambda: ended.append(True))
    assert sink.getvalue() == answer(PAYLOAD)
    assert (moved.sent, moved.received) == (len(PAYLOAD), len(answer(PAYLOAD)))
    assert ended == [True] and sock.fileno() == -1  # the socket is closed afterwards


def test_relay_waits_for_both_directions(server):
    """The VM's answer comes only after stdin ends; the relay runs until then."""
    r, w = os.pipe()
    source = os.fdopen(r, "rb")
    sink = io.BytesIO()
    done = threading.Event()
    sock = socket.create_connection(("127.0.0.1", server.port))
    thread = threading.Thread(
        target=lambda: (relay_stdio(sock, source, sink), done.set()), daemon=True
    )
    thread.start()
    os.write(w, b"hello ")
    assert not done.wait(0.2)  # stdin still open: the relay goes on
    os.write(w, b"world")
    os.close(w)
    assert done.wait(10)
    assert sink.getvalue() == answer(b"hello world")
    source.close()


def test_relay_ends_when_the_vm_resets(server):
    """A server that closes at once with unread data resets the connection: the relay ends."""
    quick = socket.socket()
    quick.bind(("127.0.0.1", 0))
    quick.listen(1)

    def reset():
        conn, _ = quick.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()

    threading.Thread(target=reset, daemon=True).start()
    sock = socket.create_connection(quick.getsockname())
    sink = io.BytesIO()
    relay_stdio(sock, io.BytesIO(PAYLOAD), sink)  # returns: nothing hangs
    assert sink.getvalue() == b""
    quick.close()


# --- the tunnel --------------------------------------------------------------------------------


def test_tunnel_loopback_only_several_connections_then_closed(server):
    t = Tunnel("127.0.0.1", server.port)
    host, port = t.start()
    assert host == "127.0.0.1" and port > 0
    results: dict[int, bytes] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, talk(port, PAYLOAD[i:])))
        for i in range(4)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert results == {i: answer(PAYLOAD[i:]) for i in range(4)}
    assert t.connections == 4
    t.close()
    with pytest.raises(OSError):
        talk(port, b"x")


def test_tunnel_says_when_the_vm_does_not_answer():
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    dead = free.getsockname()[1]
    free.close()
    said: list[str] = []
    t = Tunnel("127.0.0.1", dead, on_event=said.append, connect_timeout=2)
    _, port = t.start()
    assert talk(port, b"") == b""  # closed: the VM did not answer
    t.close()
    assert t.failures == 1 and said[0].startswith(f"Cannot reach 127.0.0.1:{dead}:")


# --- keep-alive through the emulator, on the fake clock ----------------------------------------

LNX = vm_ref("vm-lnx01")


@pytest.fixture
def lnx(app, backend):
    backend.settings.propagation_delay = 30
    enable(app.gateway(), [LNX], [PortRule(22)], clock=app.clock)
    return app.gateway()


def keep_for(gw, clock, ready, **kwargs):
    said: list[str] = []
    req = AccessRequest(LNX, SOURCE, 22, **kwargs)
    keep = KeepAlive(gw, req, clock, ready.end_time, on_event=said.append, step=600)
    return keep, said


def test_keep_alive_renews_before_the_end_and_access_never_lapses(lnx, clock):
    ready = ensure_access(lnx, AccessRequest(LNX, SOURCE, 22, duration=timedelta(hours=1)), clock)
    start = clock.now()
    keep, said = keep_for(lnx, clock, ready, duration=timedelta(hours=1), justification="INC-7")
    checks: list[bool] = []

    def running():  # the client runs 2.5 hours; access is checked at each look
        checks.append(verify(lnx, LNX, SOURCE, [22]).effective)
        return clock.now() < start + timedelta(hours=2, minutes=30)

    report = keep.run(running)
    assert all(checks) and len(checks) > 10
    assert not report.ended and len(report.renewals) == 2
    assert all(r.continuous and r.until for r in report.renewals)
    # each renewal is made when less than the margin (6 min of 1 h) is left
    first = report.renewals[0]
    assert first.at == ready.end_time - renew_margin(timedelta(hours=1))
    assert report.end_time == report.renewals[-1].until > start + timedelta(hours=2, minutes=30)
    assert said == [
        f"Renewed access to vm-lnx01 until {r.until:%H:%M} UTC." for r in report.renewals
    ]
    requests = lnx.get_policy(SUB, "rg-jit-demo", "westeurope", "default").requests
    assert [r.justification for r in requests[1:]] == ["INC-7", "INC-7"]
    reasons = [r.vms[0].ports[0].status_reason for r in requests]
    assert reasons[:2] == ["NewerRequestInitiated", "NewerRequestInitiated"]  # superseded


def test_keep_alive_stays_within_the_policy_maximum(lnx, clock, app):
    enable(app.gateway(), [LNX], [PortRule(22, max_duration=timedelta(minutes=30))], clock=clock)
    ready = ensure_access(
        lnx, AccessRequest(LNX, SOURCE, 22, duration=timedelta(minutes=30)), clock
    )
    keep, _ = keep_for(lnx, clock, ready, duration=timedelta(hours=2))  # more than allowed
    report = keep.run(lambda: not keep_for_done(clock, ready))
    assert report.renewals and all(
        r.until - r.at <= timedelta(minutes=30) for r in report.renewals if r.until
    )


def keep_for_done(clock, ready):
    return clock.now() >= ready.end_time + timedelta(minutes=10)


def test_keep_alive_sees_a_gap_when_the_switch_is_late(lnx, clock, backend):
    """The newer rule comes after the older one ended: said, and the renewal still counts."""
    ready = ensure_access(
        lnx, AccessRequest(LNX, SOURCE, 22, duration=timedelta(minutes=10)), clock
    )
    backend.settings.propagation_delay = 200  # renewal at 8 min, applied at 11m20s
    keep, said = keep_for(lnx, clock, ready, duration=timedelta(minutes=10))
    keep.step = 30
    report = keep.run(lambda: clock.now() < ready.end_time + timedelta(minutes=2))
    first = report.renewals[0]
    assert not first.continuous and first.until is not None
    assert "was not effective during the switch to the newer grant." in said[-1]


def test_keep_alive_failure_is_said_and_the_session_goes_on_until_the_end(lnx, clock, backend):
    ready = ensure_access(
        lnx, AccessRequest(LNX, SOURCE, 22, duration=timedelta(minutes=20)), clock
    )
    backend.faults.append(Fault(403, match="initiate", method="POST", times=100))
    keep, said = keep_for(lnx, clock, ready, duration=timedelta(minutes=20))
    keep.step = 30
    report = keep.run(lambda: True)  # the client would run for ever: the end stops renewing
    assert report.ended and report.end_time == ready.end_time
    assert clock.now() >= ready.end_time
    assert said[0].startswith("Could not renew access to vm-lnx01:")
    assert said[0].endswith(f"It lasts until {ready.end_time:%H:%M} UTC; trying again in a minute.")
    assert len(report.renewals) == 2  # 2 min margin, one try a minute
    assert said[-1] == (
        f"Access to vm-lnx01 ended at {ready.end_time:%H:%M} UTC: new connections are refused; "
        "established ones stay."
    )


# --- the commands, against vm-local at 127.0.0.1 ----------------------------------------------

LOCAL = VmRef(SUB, LOOPBACK_GROUP, "vm-local")
G = ["-g", LOOPBACK_GROUP, "--source-ip", SOURCE]


@pytest.fixture
def world():
    return "loopback"


@pytest.fixture
def local_app(app, backend, server, tmp_path):
    backend.settings.propagation_delay = 20
    enable(app.gateway(), [LOCAL], [PortRule(server.port), PortRule(22)], clock=app.clock)
    app.data_dir = tmp_path / "data"
    return app


def invoke(app, *args, **kwargs):
    return CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False, **kwargs)


def test_ssh_proxy_relays_only_the_connection_on_stdout(local_app, server):
    port = str(server.port)
    r = invoke(local_app, "-o", "json", "ssh-proxy", "vm-local", *G, "--port", port, input=PAYLOAD)
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == answer(PAYLOAD)  # not one byte more: ssh reads it as the connection
    assert r.stderr.startswith(f"Requested port {port} for {SOURCE} until ")


def test_ssh_proxy_keep_alive_while_relaying(local_app, server, monkeypatch):
    # The fake clock jumps at each sleep: paced by a millisecond of real time, hours of fake
    # time take seconds, so the one-byte relay always ends long before a renewal is due (on a
    # loaded machine the unpaced loop could reach it first).
    fake_sleep = local_app.clock.sleep

    def paced(seconds: float) -> None:
        time.sleep(0.001)
        fake_sleep(seconds)

    monkeypatch.setattr(local_app.clock, "sleep", paced)
    port = str(server.port)
    r = invoke(local_app, "ssh-proxy", "vm-local", *G, "--port", port, "--keep-alive", input=b"x")
    assert r.exit_code == 0 and r.stdout_bytes == answer(b"x")
    assert "Keeping access to vm-local open while the client runs." in r.stderr
    assert "keep-alive stopped after 0 renewal(s)" in r.stderr


def test_ssh_proxy_errors_go_to_stderr_only(local_app, server):
    r = invoke(local_app, "-o", "json", "ssh-proxy", "vm-ghost", *G, "--port", str(server.port))
    assert r.exit_code == 4 and r.stdout_bytes == b""
    assert r.stderr.startswith("jitctl: error: ")
    r = invoke(local_app, "ssh-proxy", "vm-local", *G, "--port", "22")  # nothing listens there
    assert r.exit_code == 1 and r.stdout_bytes == b""
    assert "Access to vm-local is effective, but 127.0.0.1:22 did not answer" in r.stderr


@dataclass
class ClientChild:
    """A client started through the runner: on its first poll it talks through the tunnel
    (the address from the .rdp file it was given), then exits."""

    args: list[str]
    said: list[bytes] = field(default_factory=list)

    def poll(self):
        if not self.said:
            text = Path(self.args[-1]).read_text(encoding="utf-8")
            port = int(text.split("full address:s:127.0.0.1:")[1].splitlines()[0])
            self.said.append(talk(port, b"rdp bytes"))
        return 0

    def wait(self):
        return 0


@dataclass
class SpawningRunner:
    platform: str = "win32"
    spawned: list[ClientChild] = field(default_factory=list)

    def which(self, name):
        return None

    def start(self, args):
        raise AssertionError("a client on a tunnel is waited for, not detached")

    def run(self, args):
        raise AssertionError("not used")

    def spawn(self, args):
        assert isinstance(args, list)
        self.spawned.append(ClientChild(args))
        return self.spawned[-1]


def test_tunnel_rdp_windows_branch_through_the_runner(local_app, server):
    local_app.runner = SpawningRunner()
    r = invoke(local_app, "tunnel", "vm-local", *G, "--port", str(server.port), "--rdp")
    assert r.exit_code == 0, r.output
    child = local_app.runner.spawned[0]
    rdp_file = local_app.data_dir / "rdp" / "vm-local.rdp"
    assert child.args == ["mstsc", str(rdp_file)]
    assert child.said == [answer(b"rdp bytes")]
    line = r.stdout.splitlines()[0]
    assert line.startswith("Connect to 127.0.0.1:") and f"127.0.0.1:{server.port}" in line
    assert r.stderr.endswith("Press Ctrl-C to stop.\nThe client exited; tunnel closed.\n")


class InterruptingClock:
    """The emulator's clock, and Ctrl-C after a client has used the tunnel on `port`."""

    def __init__(self, inner, port):
        self.inner, self.port, self.answers = inner, port, []

    def now(self):
        return self.inner.now()

    def sleep(self, seconds):
        self.inner.sleep(seconds)
        self.answers.append(talk(self.port, b"db query"))
        raise KeyboardInterrupt


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_tunnel_until_ctrl_c(local_app, server, backend):
    local = free_port()
    backend.settings.propagation_delay = 0  # no wait for access: the first sleep is the tunnel's
    local_app.clock = InterruptingClock(backend.clock, local)
    args = ["tunnel", "vm-local", *G, "--port", str(server.port), "--local-port"]
    r = invoke(local_app, "-o", "json", *args, str(local))
    assert r.exit_code == 0, r.output
    assert local_app.clock.answers == [answer(b"db query")]
    data = json.loads(r.stdout)
    assert (data["local_address"], data["local_port"]) == ("127.0.0.1", local)
    assert data["remote_host"] == "127.0.0.1" and data["remote_port"] == server.port
    assert r.stderr.endswith("Press Ctrl-C to stop.\nTunnel closed.\n")
    r = invoke(local_app, *args, str(server.port))  # taken by the server
    assert r.exit_code == 6 and f"Cannot listen on 127.0.0.1:{server.port}" in r.stderr


@dataclass
class TimedChild:
    """A client that runs until the fake clock reaches `until`."""

    clock: FakeClock
    until: object

    def poll(self):
        return None if self.clock.now() < self.until else 0

    def wait(self):
        return 3


def test_ssh_keep_alive_renews_while_ssh_runs(app, backend, clock, lnx):
    spawned = []

    class Runner(SpawningRunner):
        def which(self, name):
            return f"/usr/bin/{name}"

        def spawn(self, args):
            spawned.append(args)
            return TimedChild(clock, clock.now() + timedelta(hours=6))

    app.runner = Runner(platform="linux")
    r = invoke(app, "ssh", "vm-lnx01", "-g", "rg-jit-demo", "--source-ip", SOURCE, "--keep-alive")
    assert r.exit_code == 3  # ssh's own status
    assert spawned == [
        ["/usr/bin/ssh", "-p", "22", "--", "vm-lnx01-demo.westeurope.cloudapp.azure.com"]
    ]
    renewed = [line for line in r.stderr.splitlines() if line.startswith("Renewed access")]
    assert len(renewed) == 2  # 3 h grants, renewed 18 min before each end, for 6 hours
    assert r.stderr.splitlines()[-1].startswith(
        "Client ended; keep-alive stopped after 2 renewal(s)."
    )


def test_rdp_keep_alive_windows_waits_for_mstsc(app, backend, clock, lnx, tmp_path):
    enable(app.gateway(), [vm_ref("vm-win01")], [PortRule(3389)], clock=clock)
    spawned = []

    class Runner(SpawningRunner):
        def spawn(self, args):
            spawned.append(args)
            return TimedChild(clock, clock.now() + timedelta(minutes=30))

    app.runner, app.data_dir = Runner(platform="win32"), tmp_path / "data"
    r = invoke(app, "rdp", "vm-win01", "-g", "rg-jit-demo", "--source-ip", SOURCE, "--keep-alive")
    assert r.exit_code == 0, r.output
    assert spawned == [["mstsc", str(tmp_path / "data" / "rdp" / "vm-win01.rdp")]]
    assert r.stdout.startswith("vm-win01: rdp to 20.61.15.10:3389")
    assert "keep-alive stopped after 0 renewal(s)" in r.stderr
