"""The broker's API when what it depends on fails: a database that stops answering in the
middle of a write (503, a clear message, nothing half-written), and a notification receiver
that is down (the decision stands; the message waits in the outbox for its retry)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from jitctl.broker.models import approvals, events, outbox, requests
from jitctl.broker.notify import Notifier, NotifySettings
from jitctl.clock import FakeClock
from tests.brokerapi import ASK, Broker


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    b = Broker(tmp_path, FakeClock())
    yield b
    b.close()


def rows(broker: Broker) -> tuple[Any, ...]:
    with broker.store.engine.connect() as conn:
        return tuple(
            tuple(tuple(r) for r in conn.execute(select(t)).all())
            for t in (requests, approvals, events, outbox)
        )


class Outage:
    """The database drops the connection when a statement touches `table`: after the
    transaction's first writes, before its audit event (or outbox row) is in."""

    def __init__(self, broker: Broker, table: str) -> None:
        self.engine, self.table, self.hits = broker.store.engine, table, 0

    def _fail(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")) and self.table in statement:
            self.hits += 1
            raise OperationalError(statement, {}, Exception("server closed the connection"))

    def __enter__(self) -> Outage:
        event.listen(self.engine, "before_cursor_execute", self._fail)
        return self

    def __exit__(self, *exc: Any) -> None:
        event.remove(self.engine, "before_cursor_execute", self._fail)


@pytest.mark.parametrize("table", ["events", "outbox"])
def test_a_database_lost_mid_create_is_503_and_nothing_is_half_written(broker, table):
    before = rows(broker)
    with Outage(broker, table) as outage:
        answer = broker.call("ann", "POST", "/requests", json=ASK)
    assert outage.hits == 1
    assert answer.status_code == 503
    assert answer.json()["error"] == {
        "code": "store_unavailable",
        "message": "The broker's database did not answer (Exception); nothing was written.",
        "hint": "Check that the database is up and reachable, then try again.",
    }
    assert rows(broker) == before  # no request without its audit event, nor the reverse
    assert broker.store.verify_log().ok


@pytest.mark.parametrize(
    ("path", "body"),
    [("approve", {}), ("deny", {"reason": "no"}), ("cancel", {})],
)
def test_a_database_lost_mid_decision_leaves_the_request_as_it_was(broker, path, body):
    rid = broker.ask("ann")["id"]
    who = "ann" if path == "cancel" else "olga"
    before = rows(broker)
    with Outage(broker, "events"):
        answer = broker.call(who, "POST", f"/requests/{rid}/{path}", json=body)
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "store_unavailable"
    assert rows(broker) == before and broker.store.get(rid).state.value == "pending"
    # the database back, the same call goes through
    assert broker.call(who, "POST", f"/requests/{rid}/{path}", json=body).status_code == 200


def dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_receiver_down_leaves_the_decision_standing_and_the_message_waiting(broker):
    url = f"http://127.0.0.1:{dead_port()}/hook"
    notifier = Notifier(
        broker.store, NotifySettings.from_environ({"JITCTL_BROKER_JSON_WEBHOOK": url})
    )
    rid = broker.ask("ann")["id"]
    approved = broker.call("olga", "POST", f"/requests/{rid}/approve", json={"comment": "ok"})
    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    sent = notifier.send_due()
    assert (sent.sent, sent.failed) == (0, 2)  # the new request and the approval
    shown = broker.call("ann", "GET", f"/requests/{rid}").json()
    assert shown["state"] == "approved" and shown["approved_by"] == ["olga@contoso.com"]
    with broker.store.engine.connect() as conn:
        waiting = conn.execute(select(outbox.c.kind, outbox.c.sent_at)).all()
    assert len(waiting) == 2 and all(at is None for _, at in waiting)  # kept for the retry
    assert broker.store.verify_log().ok
