"""What revoking did in Azure, told truly: `release` in the request's JSON (pending until the
broker's worker removed the JIT allow rules, then done, not needed or failed), `show` without
"time left" once closed, and `broker revoke --wait` exiting non-zero when nothing was removed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.clock import FakeClock
from tests.brokerapi import Broker

URL = "http://127.0.0.1:8765"
FORBIDDEN = {
    "type": "Forbidden",
    "message": "The broker may not delete security rules of nsg-web1",
    "hint": "Give it the broker role.",
}


class WorkerClock(FakeClock):
    """A client's wait is the worker's time to do its round (`work`)."""

    work: Callable[[], None] = staticmethod(lambda: None)

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.work()


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    b = Broker(tmp_path, WorkerClock())
    yield b
    b.close()


def release(broker: Broker, data: dict[str, Any], reason: str) -> None:
    """The worker's release as it records it (jitctl.broker.worker.Worker.release)."""
    for rec in broker.store.claim_releases("w1"):
        broker.store.finish_release(rec.id, "w1", reason=reason, data=data)


def active(broker: Broker) -> str:
    rid = broker.ask()["id"]
    assert broker.call("olga", "POST", f"/requests/{rid}/approve", json={}).status_code == 200
    broker.activate(rid)
    return rid


def jitctl(broker: Broker, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("JITCTL_BROKER_TOKEN", "tok-ann")
    monkeypatch.setenv("JITCTL_BROKER_URL", URL)
    app = App(clock=broker.clock, broker_http=broker.http)
    return CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)


def test_show_says_the_release_is_pending_then_what_it_removed(broker, monkeypatch):
    rid = active(broker)
    before = jitctl(broker, monkeypatch, "broker", "show", rid)
    assert "ends         2026-" in before.stdout and "left)" in before.stdout
    revoked = jitctl(broker, monkeypatch, "broker", "revoke", rid, "-o", "json")
    doc = json.loads(revoked.stdout)
    assert doc["state"] == "revoked" and doc["release"] == {
        "status": "pending",
        "at": None,
        "removed": [],
        "detail": "the broker has not removed the JIT allow rules yet: the source may still get in",
    }
    release(
        broker,
        {"removed": ["nsg-web1/JIT-22"], "note": "..."},
        "Removed 1 JIT allow rule(s); open connections survive.",
    )
    shown = jitctl(broker, monkeypatch, "broker", "show", rid)
    lines = [x for x in shown.stdout.splitlines() if x.startswith(("release", "revoked", "ends"))]
    assert "left)" not in shown.stdout
    assert lines == [
        f"revoked      {broker.clock.now():%Y-%m-%d %H:%M} UTC",
        "release      done: Removed 1 JIT allow rule(s); open connections survive. (removed "
        "nsg-web1/JIT-22)",
    ]
    listed = broker.call("ann", "GET", "/requests").json()["requests"][0]
    assert listed["release"]["status"] == "done" and listed["release"]["at"] is not None


def test_revoke_wait_exits_7_when_the_broker_could_not_remove_the_rules(broker, monkeypatch):
    rid = active(broker)
    broker.clock.work = lambda: release(  # type: ignore[method-assign]
        broker, {"removed": [], "error": FORBIDDEN}, "The allow rules were not removed: ..."
    )
    got = jitctl(broker, monkeypatch, "broker", "revoke", rid, "--wait", "-o", "json")
    assert got.exit_code == 7, got.output
    doc, _ = json.JSONDecoder().raw_decode(got.stdout)  # the request, then the error
    assert doc["release"]["status"] == "failed"
    assert got.stderr.splitlines()[0] == (
        f"jitctl: error: Request {rid} is revoked but its access was not removed: The broker "
        "may not delete security rules of nsg-web1."
    )


def test_revoke_wait_says_what_it_removed_and_exits_0(broker, monkeypatch):
    rid = active(broker)
    broker.clock.work = lambda: release(  # type: ignore[method-assign]
        broker, {"removed": ["nsg-web1/JIT-22"]}, "Removed 1 JIT allow rule(s)."
    )
    got = jitctl(broker, monkeypatch, "broker", "revoke", rid, "--wait")
    assert got.exit_code == 0, got.output
    assert "release      done: Removed 1 JIT allow rule(s). (removed nsg-web1/JIT-22)" in got.stdout
    never = active(broker)
    broker.clock.work = lambda: None  # type: ignore[method-assign]
    got = jitctl(broker, monkeypatch, "broker", "revoke", never, "--wait", "--timeout", "10s")
    assert got.exit_code == 8
