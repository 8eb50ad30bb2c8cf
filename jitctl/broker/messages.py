"""What a notification says, in each receiver's shape: Teams (Adaptive Card), Slack (`text`
and `blocks`), plain JSON, and e-mail. Requesters' text arrives escaped (jitctl.textsafe)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

# What each notification says happened (the store's note kinds).
EVENTS = {
    "request.created": "New access request, waiting for approval",
    "request.approved": "Access request approved",
    "request.denied": "Access request denied",
    "request.cancelled": "Access request cancelled",
    "request.pending_expired": "Access request expired undecided",
    "request.active": "Access is live",
    "request.failed": "Access request failed",
    "request.expired": "Access ended",
    "request.revoked": "Access revoked",
    "request.extended": "Access extended",
    "request.extend_failed": "Extension not granted: access ends at the earlier time",
    "break_glass": "Break-glass access, self-approved",
}
# The requester hears about their own request from here on (they know they asked).
TO_REQUESTER = set(EVENTS) - {"request.created"}


@dataclass(frozen=True)
class Message:
    kind: str
    title: str
    facts: tuple[tuple[str, str], ...]
    loud: bool
    link: str | None
    payload: dict[str, Any]
    requester: str | None


def recipients(team: Sequence[str], msg: Message) -> tuple[str, ...]:
    """The team's addresses; the requester too about their own request (every time on
    break-glass: everyone hears of it)."""
    to = list(team)
    who = msg.requester or ""
    if "@" in who and msg.kind in TO_REQUESTER and who.lower() not in (a.lower() for a in to):
        to.append(who)
    return tuple(to)


def email_message(sender: str, to: Sequence[str], msg: Message) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = ("[BREAK-GLASS] " if msg.loud else "[jitctl] ") + msg.title
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    if msg.loud:
        mail["Importance"] = "high"
        mail["X-Priority"] = "1"
    lines = [msg.title, ""] + [f"{k}: {v}" for k, v in msg.facts]
    if msg.link:
        lines += ["", msg.link]
    mail.set_content("\n".join(lines) + "\n")
    return mail


def _slack_text(text: str) -> str:
    """Slack's own escaping: a hostile reason cannot write a mention (<!channel>) or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_body(kind: str, msg: Message) -> dict[str, Any]:
    if kind == "teams":
        return _teams(msg)
    if kind == "slack":
        return _slack(msg)
    return {
        "event": msg.kind,
        "title": msg.title,
        "loud": msg.loud,
        "url": msg.link,
        "facts": dict(msg.facts),
        "request": msg.payload,
    }


def _teams(msg: Message) -> dict[str, Any]:
    """An Adaptive Card in a message, as Teams' Workflows webhooks take it."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": msg.title,
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            **({"color": "Attention"} if msg.loud else {}),
        },
        {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in msg.facts]},
    ]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if msg.link:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open in the broker", "url": msg.link}
        ]
    return {
        "type": "message",
        "summary": msg.title,
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def _slack(msg: Message) -> dict[str, Any]:
    title = _slack_text(msg.title)
    text = f"<!channel> :rotating_light: {title}" if msg.loud else title
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{_slack_text(v)}"} for k, v in msg.facts]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": msg.title[:150]}}
    ]
    if msg.loud:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    for start in range(0, len(fields), 10):  # Slack takes at most 10 fields a section
        blocks.append({"type": "section", "fields": fields[start : start + 10]})
    if msg.link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in the broker"},
                        "url": msg.link,
                    }
                ],
            }
        )
    return {"text": text, "blocks": blocks}
