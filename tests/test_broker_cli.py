"""`jitctl broker ...` through click's CliRunner against the broker's API in-process: exact
documents, HTTP errors back as jitctl's exit codes, and no token to a remote plain-HTTP URL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.clock import FakeClock
from tests.brokerapi import Broker

URL = "http://127.0.0.1:8765"


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    b = Broker(tmp_path, FakeClock())
    yield b
    b.close()


@pytest.fixture
def jitctl(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`jitctl ARGS` as `who` (their token in JITCTL_BROKER_TOKEN), the broker in-process."""

    def run(who: str, *args: str) -> Any:
        monkeypatch.setenv("JITCTL_BROKER_TOKEN", f"tok-{who}")
        monkeypatch.setenv("JITCTL_BROKER_URL", URL)
        app = App(clock=broker.clock, broker_http=broker.http)
        return CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)

    return run


REQUEST = ("broker", "request", "web1", "-g", "rg-prod", "--port", "22", "--reason", "deploy")
TICKET = ("--ticket", "INC42", "--source-ip", "203.0.113.7")


def test_request_approve_show_as_json_documents(jitctl, broker):
    made = jitctl("ann", *REQUEST, *TICKET, "-o", "json")
    assert made.exit_code == 0, made.output
    doc = json.loads(made.stdout)
    assert doc["state"] == "pending" and doc["source"] == "203.0.113.7"
    approved = jitctl("olga", "broker", "approve", doc["id"], "--comment", "ok", "-o", "json")
    assert approved.exit_code == 0
    assert json.loads(approved.stdout)["state"] == "approved"
    shown = jitctl("ann", "broker", "show", doc["id"])
    assert shown.exit_code == 0
    assert (
        "approved by  olga@contoso.com" in shown.stdout and "state        approved" in shown.stdout
    )


def test_http_errors_come_back_as_jitctls_exit_codes(jitctl, broker):
    rid = json.loads(jitctl("eve", *REQUEST, *TICKET, "-o", "json").stdout)["id"]
    own = jitctl("eve", "broker", "approve", rid)
    assert own.exit_code == 5
    assert own.stderr == (
        "jitctl: error: Nobody approves their own request.\n"
        "Hint: Ask one of the approvers the rules name.\n"
    )
    assert jitctl("ann", "broker", "show", rid).exit_code == 4  # not hers: not found
    no_ticket = jitctl("ann", *REQUEST, "--source-ip", "203.0.113.7")
    assert no_ticket.exit_code == 2 and "a ticket is required" in no_ticket.stderr
    refused = jitctl("mal", "broker", "request", "pci1", "-g", "rg-prod", "--reason", "x", *TICKET)
    assert refused.exit_code == 6 and "matches deny group:contractors" in refused.stderr
    assert jitctl("nobody", "broker", "list").exit_code == 3
    jitctl("eve", "broker", "cancel", rid)
    again = jitctl("eve", "broker", "cancel", rid, "-o", "json")
    assert again.exit_code == 6
    assert json.loads(again.stdout)["error"]["kind"] == "refused"
    assert len(broker.store.list_requests(limit=100)) == 1


def test_approving_an_approved_request_says_what_the_caller_may_do_in_their_words(jitctl):
    """Not 'Cannot review ... what can happen to it now: cancel, claim': the verb typed, and
    only what this person may do (the worker's claim is no one's to type)."""
    rid = json.loads(jitctl("ann", *REQUEST, *TICKET, "-o", "json").stdout)["id"]
    assert jitctl("olga", "broker", "approve", rid).exit_code == 0
    again = jitctl("olga", "broker", "approve", rid)
    assert (again.exit_code, again.stderr) == (
        6,
        "jitctl: error: Cannot approve this request: it is approved.\n"
        "Hint: Nothing is yours to do with it now.\n",
    )
    max_ = jitctl("max", "broker", "approve", rid)  # an approver who is also an admin
    assert max_.stderr.splitlines()[1] == "Hint: What you may do with it now: cancel."


def test_a_token_goes_over_plain_http_only_to_a_loopback_address(jitctl, broker):
    sent: list[httpx.Request] = []
    spy = httpx.Client(
        transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(500))
    )
    app = App(clock=broker.clock, broker_http=spy)
    for url in ("http://broker.example.com", "http://10.0.0.5:8080", "ftp://127.0.0.1"):
        got = CliRunner().invoke(
            cli,
            ["broker", "list", "--broker", url],
            obj=app,
            env={"JITCTL_BROKER_TOKEN": "tok-ann"},
        )
        assert got.exit_code == 2, (url, got.output)
    assert sent == []
    ok = jitctl("ann", "broker", "list", "--broker", "http://localhost:1")
    assert ok.exit_code == 0 and ok.stdout == "No requests.\n"


def test_no_broker_and_no_token_are_said_plainly(broker):
    app = App(clock=broker.clock, broker_http=broker.http)
    no_url = CliRunner().invoke(cli, ["broker", "list"], obj=app)
    assert no_url.exit_code == 2 and "Pass --broker URL" in no_url.stderr
    no_audience = CliRunner().invoke(cli, ["broker", "list", "--broker", URL], obj=app)
    assert no_audience.exit_code == 2 and "--broker-audience" in no_audience.stderr
    no_token = CliRunner().invoke(
        cli, ["broker", "list", "--broker", URL, "--broker-audience", "api://jit-broker"], obj=app
    )
    assert no_token.exit_code == 3 and "JITCTL_BROKER_TOKEN" in no_token.stderr


def test_list_scopes_and_the_table(jitctl, broker):
    jitctl("ann", *REQUEST, *TICKET)
    jitctl("ben", *REQUEST, *TICKET)
    mine = json.loads(jitctl("ann", "broker", "list", "-o", "json").stdout)
    assert [d["requester"] for d in mine] == ["ann@contoso.com"]
    pending = jitctl("olga", "broker", "list", "--pending")
    lines = pending.stdout.splitlines()
    assert lines[0].split() == [
        "ID",
        "STATE",
        "REQUESTER",
        "VM",
        "PORTS",
        "DURATION",
        "CREATED",
        "REASON",
    ]
    assert len(lines) == 3 and all("pending" in x for x in lines[1:])


def test_wait_polls_until_active_and_says_so(jitctl, broker, monkeypatch):
    made = jitctl("otto", *REQUEST, *TICKET, "-o", "json")  # auto-approved
    rid = json.loads(made.stdout)["id"]
    broker.activate(rid)
    waited = jitctl(
        "otto", *REQUEST[:-2], "--reason", "again", *TICKET, "--wait", "--timeout", "5s"
    )
    assert waited.exit_code == 8 and "still approved" in waited.stderr  # nobody initiates it
    assert broker.clock.slept == [1.0, 2.0, 3.0]


def test_wait_ends_on_a_denial_with_the_refused_code(jitctl, broker):
    class Denier(FakeClock):
        def sleep(self, seconds: float) -> None:
            pending = broker.store.list_requests(limit=1)[0]
            broker.call("olga", "POST", f"/requests/{pending.id}/deny", json={"reason": "no"})

    app = App(clock=Denier(), broker_http=broker.http)
    got = CliRunner().invoke(
        cli,
        [*REQUEST, *TICKET, "--wait", "--broker", URL],
        obj=app,
        env={"JITCTL_BROKER_TOKEN": "tok-ann"},
    )
    assert got.exit_code == 6 and "is denied" in got.stderr


def test_log_verify_csv_jsonl_and_explain(jitctl, broker):
    jitctl("ann", *REQUEST, *TICKET)
    verified = jitctl("adam", "broker", "log", "--verify")
    assert verified.exit_code == 0 and verified.stdout.startswith("audit log intact: 1 events")
    assert jitctl("adam", "broker", "log", "-o", "csv").stdout.startswith("seq,request_id,at,")
    assert json.loads(jitctl("adam", "broker", "log", "-o", "jsonl").stdout)["action"] == "request"
    events = json.loads(jitctl("adam", "broker", "log", "--since", "1h", "-o", "json").stdout)
    assert [e["actor"] for e in events] == ["ann@contoso.com"]
    assert jitctl("ann", "broker", "log").exit_code == 5
    broker.store.engine.dispose()
    with broker.store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE events SET reason = 'edited' WHERE seq = 1")
    broken = jitctl("adam", "broker", "log", "--verify")
    assert broken.exit_code == 1 and "content was changed" in broken.stdout
    told = jitctl(
        "ann",
        "broker",
        "explain",
        "pci1",
        "-g",
        "rg-prod",
        "--as-user",
        "x@contoso.com",
        "--group",
        "contractors",
        "--group",
        "engineers",
    )
    assert told.exit_code == 0 and told.stdout.startswith("x@contoso.com: would be refused")


def test_list_follows_the_brokers_cursor_up_to_the_limit(jitctl, broker):
    """More requests than one page: the CLI asks page by page up to --limit, newest first,
    and says on stderr (not in the JSON) when there are more."""
    made = []
    for _ in range(5):
        made.append(broker.ask("ann")["id"])
        broker.clock.advance(seconds=1)
    got = jitctl("ann", "broker", "list", "--limit", "3", "-o", "json")
    assert got.exit_code == 0, got.output
    assert [d["id"] for d in json.loads(got.stdout)] == made[::-1][:3]
    assert "The newest 3 shown; there are more: raise --limit." in got.stderr
    every = jitctl("ann", "broker", "list", "--limit", "5", "-o", "json")
    assert [d["id"] for d in json.loads(every.stdout)] == made[::-1]
    assert every.stderr == ""
