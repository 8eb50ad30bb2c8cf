"""The API's request bodies and query parameters, checked: anything wrong is BadInput (400)
naming the field, and every value passes jitctl's own parsers (VM names, ports, sources,
durations, free text), so the broker stores and forwards only what `jitctl request` would send.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from jitctl.broker.rules import MAX_TICKET
from jitctl.errors import BadInput
from jitctl.parsing import (
    check_justification,
    format_human_duration,
    parse_duration,
    parse_port,
    parse_source,
    parse_vm,
)
from jitctl.textsafe import printable

DEFAULT_DURATION = timedelta(hours=1)
DEFAULT_PORTS = (3389,)  # as `jitctl request`
MAX_LIMIT = 1000

M = TypeVar("M", bound=BaseModel)


def human(value: timedelta) -> str:
    return format_human_duration(value)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _text(value: str | None) -> str | None:
    """Free text shown to other people and sent to Azure: one printable line, bounded."""
    if value is None:
        return None
    return check_justification(value.strip() or None)


class Target(_Body):
    vm: str
    resource_group: str | None = None
    subscription: str | None = None
    ports: tuple[int, ...] = DEFAULT_PORTS
    duration: timedelta | None = None
    reason: str | None = None
    ticket: str | None = None
    break_glass: bool = False
    source: str | None = None  # explain: optional; the rules may limit it

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, v: Any) -> Any:
        # one address or range: JIT opens the port for it; the whole Internet is not asked
        return parse_source(v) if isinstance(v, str) else v

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or not v:
            raise ValueError("a list of port numbers, at least one")
        return tuple(dict.fromkeys(parse_port(p) for p in v))

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if v is None:
            return None
        if not isinstance(v, str):
            raise ValueError("a duration such as 90m, 1h or PT1H")
        return parse_duration(v)

    @field_validator("reason", mode="before")
    @classmethod
    def _reason(cls, v: Any) -> Any:
        return _text(v) if isinstance(v, str) or v is None else v

    @field_validator("ticket", mode="before")
    @classmethod
    def _ticket(cls, v: Any) -> Any:
        if isinstance(v, str) and len(v) > MAX_TICKET:
            raise ValueError(f"at most {MAX_TICKET} characters")
        return _text(v) if isinstance(v, str) or v is None else v

    def vm_id(self, default_subscription: str | None) -> str:
        return parse_vm(
            self.vm,
            resource_group=self.resource_group,
            subscription_id=self.subscription or default_subscription,
        ).id


class NewRequest(Target):
    """A request to store: the API refuses one without `source` (with what to send)."""


class Explain(Target):
    as_user: str | None = None
    groups: tuple[str, ...] | None = None


class Comment(_Body):
    comment: str | None = None

    @field_validator("comment", mode="before")
    @classmethod
    def _comment(cls, v: Any) -> Any:
        return _text(v) if isinstance(v, str) or v is None else v


class Reason(_Body):
    reason: str

    @field_validator("reason", mode="before")
    @classmethod
    def _reason(cls, v: Any) -> Any:
        text = _text(v) if isinstance(v, str) else v
        if isinstance(v, str) and not text:
            raise ValueError("say why")
        return text


class Extension(Comment):
    duration: timedelta

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if not isinstance(v, str):
            raise ValueError("a duration such as 90m, 1h or PT1H")
        return parse_duration(v)


def parse(model: type[M], data: dict[str, Any]) -> M:
    """`data` as `model`, or BadInput naming each field that is wrong. A jitctl parser's own
    BadInput, raised in a validator, passes through as it is (pydantic wraps only ValueError)."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        parts = []
        for e in err.errors(include_url=False):
            where = ".".join(str(p) for p in e["loc"]) or "body"
            what = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
            parts.append(f"{printable(where)}: {what.removeprefix('Value error, ')}")
        raise BadInput("; ".join(parts) + ".", "Fix the request and send it again.") from None


def limit(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise BadInput(f"limit '{printable(value)}' is not 1-{MAX_LIMIT}.", "Give a number.")
    return int(value)


def since(value: str | None, now: datetime) -> datetime | None:
    """An ISO 8601 time (UTC when it names no zone), or a duration back from now (24h, 7d)."""
    if not value:
        return None
    text = value.strip()
    days = text[:-1] if text.endswith("d") else None
    if days is not None and days.isdigit() and 0 < int(days) <= 3660:
        return now - timedelta(days=int(days))
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            return now - parse_duration(
                text, minimum=timedelta(seconds=1), maximum=timedelta(days=3660)
            )
        except BadInput:
            raise BadInput(
                f"since '{printable(value)}' is neither a time nor a duration.",
                "Use an ISO 8601 time such as 2026-01-05T09:00:00Z, or 24h, 7d.",
            ) from None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)
