"""The outbox's sender: webhooks (Teams, Slack, plain JSON) and e-mail, retried with backoff.

A notification is written with the decision that causes it (the store's outbox), so sending
happens after commit and a receiver that is slow or down can neither block nor lose a
decision: each send has a short timeout, and a failed one is tried again later (exponential
backoff), only to the receivers that did not take it.

Configured from the environment (secrets only there, never logged, not with --debug either):

    JITCTL_BROKER_TEAMS_WEBHOOK   Teams (Workflows) webhook URL(s), space-separated
    JITCTL_BROKER_SLACK_WEBHOOK   Slack incoming webhook URL(s)
    JITCTL_BROKER_JSON_WEBHOOK    URL(s) that take the plain JSON event
    JITCTL_BROKER_SMTP_HOST       host[:port] (587 with STARTTLS, 465 implicit TLS, else 25)
    JITCTL_BROKER_SMTP_STARTTLS   1: STARTTLS before anything else is said
    JITCTL_BROKER_SMTP_USER / JITCTL_BROKER_SMTP_PASSWORD
    JITCTL_BROKER_SMTP_FROM       the sender address
    JITCTL_BROKER_SMTP_TO         the team's address(es), comma-separated; requesters are
                                  written to as well about their own requests
    JITCTL_BROKER_PUBLIC_URL      the broker's address people open (links in messages)
    JITCTL_BROKER_NOTIFY_TIMEOUT  seconds a receiver may take (default 5)
"""

from __future__ import annotations

import hashlib
import logging
import random
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from jitctl.broker.database import Note
from jitctl.broker.errors import RequestNotFound
from jitctl.broker.messages import EVENTS, Message, email_message, recipients, webhook_body
from jitctl.broker.records import RequestRecord
from jitctl.broker.work import WorkQueue
from jitctl.cabundle import ca_bundle
from jitctl.errors import BadInput
from jitctl.ids import name_of, segments
from jitctl.loopback import is_loopback
from jitctl.parsing import format_human_duration
from jitctl.textsafe import printable

log = logging.getLogger("jitctl.broker.notify")

ENV = "JITCTL_BROKER_"
WEBHOOK_KINDS = ("teams", "slack", "json")


def tls_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    """Outbound TLS trusts the CA file the rest of jitctl trusts (cabundle.ca_bundle)."""
    return ssl.create_default_context(cafile=ca_bundle(environ))


@dataclass(frozen=True)
class Receiver:
    kind: str  # teams | slack | json | email
    address: str = field(repr=False)  # a webhook URL holds its secret: never shown
    label: str = ""  # what logs and errors name instead: "slack webhook 1 (hooks.slack.com)"

    @property
    def key(self) -> str:
        """Which receiver took a notification, stored in the outbox: a hash, not the URL."""
        return hashlib.sha256(f"{self.kind}|{self.address}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    to: tuple[str, ...]
    starttls: bool = False
    user: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class NotifySettings:
    webhooks: tuple[Receiver, ...] = ()
    smtp: SmtpSettings | None = None
    public_url: str | None = None
    timeout: float = 5.0
    backoff_first: float = 30.0
    backoff_max: float = 3600.0

    @property
    def secrets(self) -> tuple[str, ...]:
        found = [r.address for r in self.webhooks]
        if self.smtp and self.smtp.password:
            found.append(self.smtp.password)
        return tuple(s for s in found if s)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> NotifySettings:
        hooks: list[Receiver] = []
        for kind in WEBHOOK_KINDS:
            var = f"{ENV}{kind.upper()}_WEBHOOK"
            for n, url in enumerate(environ.get(var, "").split(), start=1):
                parts = urlsplit(url)
                host = parts.hostname or ""
                if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(host)):
                    raise BadInput(
                        f"{var}: webhook {n} is not an https:// URL.",
                        "A webhook URL carries its secret: give its https:// address "
                        "(plain http only to this machine).",
                    )
                hooks.append(Receiver(kind, url, f"{kind} webhook {n} ({host})"))
        timeout = _number(environ, f"{ENV}NOTIFY_TIMEOUT", 5.0)
        return cls(tuple(hooks), _smtp(environ), environ.get(f"{ENV}PUBLIC_URL") or None, timeout)


def _number(environ: Mapping[str, str], var: str, default: float) -> float:
    text = environ.get(var, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 0 < value <= 60:
        raise BadInput(
            f"{var} is {text!r}.", f"Give seconds, more than 0 and at most 60, e.g. {var}=5."
        )
    return value


def _smtp(environ: Mapping[str, str]) -> SmtpSettings | None:
    hostport = environ.get(f"{ENV}SMTP_HOST", "").strip()
    if not hostport:
        return None
    host, _, port_text = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    starttls = environ.get(f"{ENV}SMTP_STARTTLS", "").strip().lower() in ("1", "true", "yes")
    try:
        port = int(port_text) if port_text else (587 if starttls else 25)
    except ValueError:
        raise BadInput(
            f"{ENV}SMTP_HOST is {hostport!r}.", "Give host or host:port, e.g. smtp.contoso.com:587."
        ) from None
    to = tuple(a.strip() for a in environ.get(f"{ENV}SMTP_TO", "").split(",") if a.strip())
    sender = environ.get(f"{ENV}SMTP_FROM", "").strip()
    if not sender:
        raise BadInput(
            f"{ENV}SMTP_HOST is set but {ENV}SMTP_FROM is not.",
            f"Set {ENV}SMTP_FROM to the address the broker's mail comes from.",
        )
    user = environ.get(f"{ENV}SMTP_USER") or None
    password = environ.get(f"{ENV}SMTP_PASSWORD") or None
    if user and not (starttls or port == 465 or is_loopback(host)):
        raise BadInput(
            f"{ENV}SMTP_USER is set without TLS: the password would cross the network in clear.",
            f"Set {ENV}SMTP_STARTTLS=1 (or use port 465).",
        )
    return SmtpSettings(host, port, sender, to, starttls, user, password)


@dataclass(frozen=True)
class SendResult:
    sent: int = 0
    failed: int = 0
    errors: tuple[str, ...] = ()  # "note 3: slack webhook 1 (hooks.slack.com): HTTP 500"


class _Redact(logging.Filter):
    """Keeps the secrets out of every log record of the HTTP stack (httpx names the URL it
    posts to at DEBUG level, and a webhook URL holds its secret)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(s in text for s in self.secrets):
            for s in sorted(self.secrets, key=len, reverse=True):
                text = text.replace(s, "<secret>")
            record.msg, record.args = text, ()
        return True


_REDACT = _Redact()  # one filter for every notifier of the process
for _name in ("httpx", "httpcore", log.name):
    logging.getLogger(_name).addFilter(_REDACT)


class Notifier:
    """`http`: an httpx.Client (tests may pass one with their own transport)."""

    def __init__(
        self,
        store: WorkQueue,
        settings: NotifySettings,
        *,
        name: str = "broker",
        http: Any = None,
        environ: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        import httpx

        self.store = store
        self.settings = settings
        self.name = name
        self._tls = tls_context(environ or {})
        self.http = http or httpx.Client(
            timeout=httpx.Timeout(settings.timeout), verify=self._tls, follow_redirects=False
        )
        self.rng = rng or random.Random()
        _REDACT.secrets.update(settings.secrets)

    # --- the round ----------------------------------------------------------------------------

    def send_due(self, limit: int = 10) -> SendResult:
        receivers = len(self.settings.webhooks) + (1 if self.settings.smtp else 0)
        # the lease outlasts the batch, each receiver taking its whole timeout
        lease = timedelta(seconds=60 + limit * max(1, receivers) * self.settings.timeout * 2)
        sent = failed = 0
        errors: list[str] = []
        for note_id, note in self.store.claim_notes(self.name, limit=limit, lease=lease):
            problems, delivered = self._deliver(self.message(note), set(note.delivered))
            if problems:
                failed += 1
                text = "; ".join(problems)
                errors.append(f"note {note_id}: {text}")
                log.warning("notification %s not delivered: %s", note_id, text)
                self.store.note_failed(
                    note_id, self.name, text, self.backoff(note.attempts), delivered
                )
            else:
                sent += 1
                self.store.note_sent(note_id, self.name)
        return SendResult(sent, failed, tuple(errors))

    def backoff(self, attempts: int) -> timedelta:
        """30 s, 1 min, 2 min... up to an hour, jittered so replicas do not retry in step."""
        s = self.settings
        limit = min(s.backoff_first * 2**attempts, s.backoff_max)
        return timedelta(seconds=self.rng.uniform(limit * 0.8, limit))

    def _deliver(self, msg: Message, delivered: set[str]) -> tuple[list[str], set[str]]:
        problems: list[str] = []
        for r in self.settings.webhooks:
            if r.key in delivered:
                continue
            try:
                response = self.http.post(r.address, json=webhook_body(r.kind, msg))
                if response.status_code >= 300:
                    raise _Failed(f"HTTP {response.status_code}")
                delivered.add(r.key)
            except Exception as err:  # any failure: retried later, the decision stands
                problems.append(f"{r.label}: {describe(err)}")
        smtp = self.settings.smtp
        if smtp:
            mail = Receiver("email", f"{smtp.host}:{smtp.port}", f"e-mail via {smtp.host}")
            to = recipients(smtp.to, msg)
            if to and mail.key not in delivered:
                try:
                    self._mail(smtp, email_message(smtp.sender, to, msg))
                    delivered.add(mail.key)
                except Exception as err:
                    problems.append(f"{mail.label}: {describe(err)}")
        return problems, delivered

    def _mail(self, smtp: SmtpSettings, mail: EmailMessage) -> None:
        timeout = self.settings.timeout
        client: smtplib.SMTP
        if smtp.port == 465:
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=self._tls)
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
        with client:
            if smtp.starttls and smtp.port != 465:
                client.starttls(context=self._tls)
            if smtp.user:
                client.login(smtp.user, smtp.password or "")
            client.send_message(mail)

    # --- what a notification says ---------------------------------------------------------

    def message(self, note: Note) -> Message:
        """The note, with the request's facts as the store has them now."""
        p = note.payload
        rec: RequestRecord | None = None
        if p.get("id"):
            try:
                rec = self.store.get(str(p["id"]))
            except RequestNotFound:
                rec = None
        facts: list[tuple[str, str]] = []

        def add(name: str, value: Any) -> None:
            if value not in (None, "", [], ()):
                facts.append((name, printable(value)))

        vm_id = rec.vm_id if rec else p.get("vm_id")
        if vm_id:
            seg = segments(str(vm_id))
            add("VM", f"{name_of(str(vm_id))} ({seg.get('resourcegroups', '?')})")
        add("Requester", rec.requester if rec else p.get("requester"))
        if rec:
            add("Ports", ", ".join(str(n) for n in rec.ports))
            add("Source", rec.source)
            add("Duration", format_human_duration(rec.duration))
            add("Reason", rec.reason)
            add("Ticket", rec.ticket)
            add("State", rec.state.value)
            if rec.ends_at:
                add("Until", rec.ends_at.strftime("%Y-%m-%d %H:%M UTC"))
        add("By", p.get("by"))
        if not rec or p.get("reason") != rec.reason:
            add("Why", p.get("reason"))  # the decision's own words
        add("Request", p.get("id"))
        loud = note.kind == "break_glass"
        what = EVENTS.get(note.kind, note.kind)
        vm = f" to {printable(name_of(str(vm_id)))}" if vm_id else ""
        link = None
        if self.settings.public_url and p.get("id"):
            link = f"{self.settings.public_url.rstrip('/')}/requests/{p['id']}"
        return Message(
            note.kind,
            f"{what}{vm}",
            tuple(facts),
            loud,
            link,
            p,
            (rec.requester if rec else p.get("requester")) or None,
        )


class _Failed(Exception):
    pass


def describe(err: BaseException) -> str:
    """A failure in words that hold no secret (an httpx error's text names the URL)."""
    import httpx

    if isinstance(err, _Failed):
        return str(err)
    if isinstance(err, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(err, httpx.ConnectError):
        return "could not connect"
    if isinstance(err, smtplib.SMTPResponseException):
        return f"SMTP {err.smtp_code}"
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        return "SMTP: recipients refused"
    if isinstance(err, OSError) and err.strerror:
        return f"{type(err).__name__}: {err.strerror}"
    return type(err).__name__
