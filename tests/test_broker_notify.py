"""The outbox's sender against local receivers: a threaded HTTP server (Teams, Slack, JSON
webhooks) and an SMTP server (aiosmtpd, STARTTLS and login). A receiver that fails or hangs
delays only its own message; secrets never reach a log or the outbox."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from jitctl.broker.models import outbox
from jitctl.broker.notify import Notifier, NotifySettings
from jitctl.broker.rules import Ask, Decision, Outcome, Principal
from jitctl.broker.store import Store, open_engine
from jitctl.clock import FakeClock
from jitctl.errors import BadInput

VM = "/subscriptions/s1/resourceGroups/rg-prod/providers/Microsoft.Compute/virtualMachines/web1"
HOSTILE = "<!channel> fix \x1b[31m now"


class Receiver:
    """Webhooks on 127.0.0.1: records each POST; `status` per path; `hold` keeps a request
    in flight until released."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.status: dict[str, int] = {}
        self.delay = 0.0
        self.inside = threading.Event()
        self.release = threading.Event()
        self.release.set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.inside.set()
                outer.release.wait(10)
                time.sleep(outer.delay)
                outer.posts.append((self.path, body))
                self.send_response(outer.status.get(self.path, 200))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [b for p, b in self.posts if p == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.release.set()
    r.server.shutdown()


@pytest.fixture
def store(tmp_path: Any, clock: FakeClock) -> Iterator[Store]:
    s = Store(open_engine(f"sqlite:///{tmp_path / 'broker.sqlite'}"), clock)
    s.migrate()
    yield s
    s.engine.dispose()


def create(store: Store, outcome: Outcome = Outcome.NEEDS_APPROVAL, reason: str = "hotfix") -> str:
    ask = Ask(
        Principal("alice@contoso.com", frozenset({"eng"})),
        VM,
        (22,),
        timedelta(hours=1),
        store.clock.now(),
        reason=reason,
        break_glass=outcome is Outcome.BREAK_GLASS_ALLOWED,
    )
    decision = Decision(outcome, ("p.yaml:3 (approvals[0])",), (("group:ops",),), 1)
    return store.create(ask, decision, source="203.0.113.7").id


def hooks(url: str, *kinds: str) -> dict[str, str]:
    return {f"JITCTL_BROKER_{k.upper()}_WEBHOOK": f"{url}/{k}/T0/B0/s3cr3t-{k}" for k in kinds}


def last_errors(store: Store) -> list[str | None]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(outbox.c.last_error).order_by(outbox.c.id)).scalars())


def test_one_request_reaches_teams_slack_and_json_in_their_shapes(store: Store, receiver: Receiver):
    rid = create(store, reason=HOSTILE)
    env = {**hooks(receiver.url, "teams", "slack", "json"), "JITCTL_BROKER_PUBLIC_URL": "https://b"}
    result = Notifier(store, NotifySettings.from_environ(env)).send_due()
    assert (result.sent, result.failed) == (1, 0)
    (teams,) = receiver.bodies("/teams/T0/B0/s3cr3t-teams")
    card = teams["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    head, facts = card["content"]["body"]
    assert head["text"] == "New access request, waiting for approval to web1"
    assert "color" not in head  # not loud
    assert {f["title"]: f["value"] for f in facts["facts"]} == {
        "VM": "web1 (rg-prod)",
        "Requester": "alice@contoso.com",
        "Ports": "22",
        "Source": "203.0.113.7",
        "Duration": "1h",
        "Reason": "<!channel> fix \\x1b[31m now",  # escape sequences shown, not run
        "State": "pending",
        "Request": rid,
    }
    assert card["content"]["actions"][0]["url"] == f"https://b/requests/{rid}"
    (slack,) = receiver.bodies("/slack/T0/B0/s3cr3t-slack")
    assert slack["text"] == "New access request, waiting for approval to web1"
    assert slack["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "New access request, waiting for approval to web1"},
    }
    reason = next(f for f in slack["blocks"][1]["fields"] if f["text"].startswith("*Reason*"))
    assert reason["text"] == "*Reason*\n&lt;!channel&gt; fix \\x1b[31m now"  # no mention
    (plain,) = receiver.bodies("/json/T0/B0/s3cr3t-json")
    assert (plain["event"], plain["request"]["id"], plain["loud"]) == (
        "request.created",
        rid,
        False,
    )
    assert plain["facts"]["VM"] == "web1 (rg-prod)"
    assert Notifier(store, NotifySettings.from_environ(env)).send_due().sent == 0  # sent once


def test_a_failing_receiver_is_retried_with_backoff_and_only_it(
    store: Store, receiver: Receiver, clock: FakeClock
):
    create(store)
    receiver.status["/json/T0/B0/s3cr3t-json"] = 500
    notifier = Notifier(store, NotifySettings.from_environ(hooks(receiver.url, "slack", "json")))
    result = notifier.send_due()
    assert (result.sent, result.failed) == (0, 1)
    assert last_errors(store) == ["json webhook 1 (127.0.0.1): HTTP 500"]
    assert len(receiver.posts) == 2
    clock.advance(seconds=23)  # the first retry comes 24 to 30 s later (jittered)
    assert notifier.send_due().sent == 0 and len(receiver.posts) == 2
    del receiver.status["/json/T0/B0/s3cr3t-json"]
    clock.advance(seconds=8)
    assert notifier.send_due().sent == 1
    assert [p for p, _ in receiver.posts[2:]] == ["/json/T0/B0/s3cr3t-json"]  # not slack again


def test_backoff_doubles_up_to_an_hour(store: Store):
    n = Notifier(store, NotifySettings())
    assert [n.backoff(a) <= timedelta(seconds=30 * 2**a) for a in range(5)] == [True] * 5
    assert n.backoff(3) >= timedelta(seconds=240 * 0.8)
    assert timedelta(minutes=48) <= n.backoff(20) <= timedelta(hours=1)


def test_a_hanging_receiver_blocks_no_decision_and_times_out(
    store: Store, receiver: Receiver, clock: FakeClock
):
    rid = create(store)
    receiver.release.clear()  # the receiver holds the request
    settings = NotifySettings.from_environ(
        {**hooks(receiver.url, "json"), "JITCTL_BROKER_NOTIFY_TIMEOUT": "0.3"}
    )
    out: list[Any] = []
    sender = threading.Thread(target=lambda: out.append(Notifier(store, settings).send_due()))
    sender.start()
    assert receiver.inside.wait(5)
    start = time.monotonic()
    decided = store.approve(rid, Principal("bob@contoso.com", frozenset({"ops"})))
    assert decided.state.value == "approved" and time.monotonic() - start < 0.5
    sender.join(5)
    assert out[0].failed == 1 and out[0].errors[0].endswith(
        "json webhook 1 (127.0.0.1): no answer in time"
    )
    receiver.release.set()
    clock.advance(minutes=2)
    assert Notifier(store, settings).send_due().sent == 2  # the request and its approval
    assert store.get(rid).state.value == "approved"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    def __init__(self) -> None:
        self.mail: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes, policy

        msg = message_from_bytes(envelope.original_content, policy=policy.default)
        self.mail.append((envelope.rcpt_tos, msg, session.authenticated))
        return "250 OK"


@pytest.fixture
def smtp(tmp_path: Any) -> Iterator[tuple[Inbox, int, str]]:
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from jitctl.emulator.server import self_signed_cert

    cert, key = self_signed_cert(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = (data.login, data.password) == (b"broker", b"pa55-w0rd")
        return AuthResult(success=ok)

    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=ctx,
        require_starttls=True,
        authenticator=check,
        auth_require_tls=True,
    )
    controller.start()
    yield inbox, port, str(cert)
    controller.stop()


def test_mail_goes_over_starttls_with_login_and_no_secret_is_logged(
    store: Store, smtp: tuple[Inbox, int, str], receiver: Receiver, caplog: Any
):
    inbox, port, cafile = smtp
    env = {
        "JITCTL_BROKER_SMTP_HOST": f"localhost:{port}",
        "JITCTL_BROKER_SMTP_STARTTLS": "1",
        "JITCTL_BROKER_SMTP_USER": "broker",
        "JITCTL_BROKER_SMTP_PASSWORD": "pa55-w0rd",
        "JITCTL_BROKER_SMTP_FROM": "jit-broker@contoso.com",
        "JITCTL_BROKER_SMTP_TO": "ops-leads@contoso.com",
        **hooks(receiver.url, "slack"),
        "SSL_CERT_FILE": cafile,
    }
    caplog.set_level(logging.DEBUG)
    rid = create(store, Outcome.BREAK_GLASS_ALLOWED, reason="datacenter on fire")
    receiver.status["/slack/T0/B0/s3cr3t-slack"] = 403
    result = Notifier(store, NotifySettings.from_environ(env), environ=env).send_due()
    assert result.failed == 1  # slack refused; the mail went
    ((to, mail, authenticated),) = inbox.mail
    assert authenticated and to == ["ops-leads@contoso.com", "alice@contoso.com"]
    assert mail["Subject"] == "[BREAK-GLASS] Break-glass access, self-approved to web1"
    assert (mail["Importance"], mail["X-Priority"]) == ("high", "1")
    assert "Reason: datacenter on fire\r\n" in mail.get_content()
    assert mail.get_content().endswith(f"Request: {rid}\r\n")
    (slack,) = receiver.bodies("/slack/T0/B0/s3cr3t-slack")
    assert slack["text"] == "<!channel> :rotating_light: Break-glass access, self-approved to web1"
    ours = [r.getMessage() for r in caplog.records if r.name != "mail.log"]  # not the receiver's
    logged = " ".join(ours + [str(e) for e in last_errors(store)])
    assert "slack webhook 1 (127.0.0.1): HTTP 403" in logged
    assert "s3cr3t" not in logged and "pa55-w0rd" not in logged
    assert any("POST" in m for m in ours)  # httpx did log its request, without the secret


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"JITCTL_BROKER_SLACK_WEBHOOK": "http://hooks.example.com/x"},
            "JITCTL_BROKER_SLACK_WEBHOOK: webhook 1 is not an https:// URL.",
        ),
        (
            {
                "JITCTL_BROKER_SMTP_HOST": "mail.contoso.com",
                "JITCTL_BROKER_SMTP_USER": "u",
                "JITCTL_BROKER_SMTP_FROM": "b@contoso.com",
            },
            "JITCTL_BROKER_SMTP_USER is set without TLS: the password would cross the network in clear.",
        ),
        (
            {"JITCTL_BROKER_SMTP_HOST": "mail.contoso.com"},
            "JITCTL_BROKER_SMTP_HOST is set but JITCTL_BROKER_SMTP_FROM is not.",
        ),
        ({"JITCTL_BROKER_NOTIFY_TIMEOUT": "0"}, "JITCTL_BROKER_NOTIFY_TIMEOUT is '0'."),
    ],
)
def test_settings_that_would_leak_or_cannot_work_are_bad_input(env: dict[str, str], says: str):
    with pytest.raises(BadInput) as err:
        NotifySettings.from_environ(env)
    assert err.value.message == says


def test_no_receiver_configured_drains_the_outbox(store: Store):
    create(store)
    assert Notifier(store, NotifySettings.from_environ({})).send_due().sent == 1


def test_webhooks_trust_the_same_ca_file_as_sign_in_when_both_variables_are_set(
    tmp_path: Any,
) -> None:
    """REQUESTS_CA_BUNDLE before SSL_CERT_FILE, for the identity provider and for receivers:
    one choice, so a private CA set for one is never ignored by the other."""
    from jitctl.broker.notify import tls_context
    from jitctl.cabundle import ca_bundle
    from jitctl.emulator.server import self_signed_cert

    cert, _ = self_signed_cert(tmp_path)
    environ = {"REQUESTS_CA_BUNDLE": str(cert), "SSL_CERT_FILE": str(tmp_path / "absent.pem")}
    assert ca_bundle(environ) == str(cert)
    trusted = tls_context(environ).get_ca_certs()
    assert [dict(x[0] for x in c["subject"]).get("commonName") for c in trusted] == [
        "jitctl emulator"
    ]
