"""The `approvals:` entries of a policy file: their model, checked as the rest of the file is.

policyfile.PolicyFile holds a list of `Approval`; errors come back as `file:line: key: what`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from jitctl import fieldchecks
from jitctl.textsafe import printable

# A pending request waits at least a minute and at most a week for its approvers.
MIN_PENDING_TTL = timedelta(minutes=1)
MAX_PENDING_TTL = timedelta(days=7)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PRINCIPAL = re.compile(r"(group|user):(\S+)")
_HOURS = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]|24):([0-5][0-9])")


def check_principal(value: str) -> str:
    if not isinstance(value, str) or not _PRINCIPAL.fullmatch(value.strip()):
        raise ValueError(
            f"'{printable(value)}' is not a principal: write 'group:<id or name>' or 'user:<upn>'"
        )
    return value.strip()


def _principals(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if not value:
        raise ValueError("list at least one 'group:...' or 'user:...', or leave the key out")
    return [check_principal(v) for v in value]


def _access_duration(value: str | None) -> str | None:
    return fieldchecks.duration(value)


def _widest(value: Any) -> Any:
    """A prefix length, 1..32, written 28 or '/28'."""
    if value is None:
        return None
    text = str(value).strip() if isinstance(value, (int, str)) and value is not True else ""
    text = text.removeprefix("/")
    if not text.isdigit() or not 1 <= int(text) <= 32:
        raise ValueError(
            f"'{printable(value)}' is not a prefix length: write /32 (one address) to /1"
        )
    return int(text)


def _prefixes(value: list[str] | None) -> list[str] | None:
    """IPv4 ranges (CIDR) or addresses, in their canonical spelling."""
    import ipaddress

    if value is None:
        return None
    if not value:
        raise ValueError("list at least one range such as 203.0.113.0/24, or leave the key out")
    out = []
    for v in value:
        try:
            net = ipaddress.ip_network(str(v).strip(), strict=False)
        except ValueError:
            raise ValueError(
                f"'{printable(v)}' is not an IPv4 address or range such as 203.0.113.0/24"
            ) from None
        if net.version != 4:
            raise ValueError(f"'{printable(v)}' is IPv6: Just-In-Time access takes IPv4 only")
        out.append(str(net))
    return out


def _pattern(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"'{printable(value)}' is not a regular expression: {err}") from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Match(_Strict):
    """Which VMs an entry governs; every key given must hold (no key: every VM of the file's
    subscriptions, or of every subscription when the file names none)."""

    subscription: str | None = Field(None, description="One subscription id")
    subscriptions: list[str] | None = Field(None, description="Subscription ids")
    resourceGroup: str | None = Field(None, description="Resource group name")
    names: list[str] | None = Field(None, description="VM name globs, e.g. web-*")
    ids: list[str] | None = Field(None, description="Full VM resource ids")
    tags: dict[str, str] | None = Field(
        None, description="Every tag must match (value '*' for any)"
    )

    _sub = field_validator("subscription")(staticmethod(fieldchecks.subscription))
    _subs = field_validator("subscriptions")(staticmethod(fieldchecks.subscriptions))
    _group = field_validator("resourceGroup")(staticmethod(fieldchecks.resource_group))
    _ids = field_validator("ids")(staticmethod(fieldchecks.vm_ids))

    @model_validator(mode="after")
    def _one_way(self) -> Match:
        if self.subscription and self.subscriptions:
            raise ValueError("give 'subscription' or 'subscriptions', not both")
        return self

    def subscription_ids(self) -> list[str] | None:
        if self.subscription:
            return [self.subscription]
        return self.subscriptions


class AutoApprove(_Strict):
    """Conditions that approve a request without a person; all given must hold."""

    requesters: list[str] | None = Field(None, description="Who is approved automatically")
    maxDuration: str | None = Field(None, description="Longest duration approved automatically")
    ports: list[StrictInt] | None = Field(None, description="Every port asked must be listed")
    hours: str | None = Field(None, description="Time of day, e.g. 08:00-18:00 (may wrap midnight)")
    days: list[str] | None = Field(None, description="Days of the week: mon..sun")
    timezone: str = Field("UTC", description="IANA time zone of hours and days")
    ticketPattern: str | None = Field(
        None, description="Regular expression the whole ticket matches"
    )
    sourcePrefixes: list[str] | None = Field(
        None, description="The request's source must lie within one of these IPv4 ranges"
    )
    widestSource: int | None = Field(
        None,
        description="Widest source approved automatically, as a prefix length (default /32: "
        "one address; /28: up to 16 addresses)",
    )

    _requesters = field_validator("requesters")(staticmethod(_principals))
    _max = field_validator("maxDuration")(staticmethod(_access_duration))
    _ticket = field_validator("ticketPattern")(staticmethod(_pattern))
    _sources = field_validator("sourcePrefixes")(staticmethod(_prefixes))
    _wide = field_validator("widestSource", mode="before")(staticmethod(_widest))

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, v: Any) -> Any:
        return fieldchecks.ports(v)

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str | None) -> str | None:
        if v is not None:
            m = _HOURS.fullmatch(v.strip())
            if (
                not m
                or m.group(1, 2) == m.group(3, 4)
                or (m.group(3) == "24" and m.group(4) != "00")
            ):
                raise ValueError(
                    f"'{printable(v)}' is not a time window: write HH:MM-HH:MM, e.g. 08:00-18:00"
                )
        return v

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str] | None) -> list[str] | None:
        for day in v or []:
            if str(day).lower() not in DAYS:
                raise ValueError(f"'{printable(day)}' is not a day: use {', '.join(DAYS)}")
        return [d.lower() for d in v] if v is not None else None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"'{printable(v)}' is not an IANA time zone, e.g. Europe/Paris"
            ) from None
        return v


class Requesters(_Strict):
    requesters: list[str] = Field(min_length=1)

    _requesters = field_validator("requesters")(staticmethod(_principals))


class Approval(_Strict):
    """Who may ask for access to the matched VMs, who approves, and on what terms."""

    name: str | None = Field(None, description="A label shown by explain and on the pages")
    match: Match = Field(default_factory=lambda: Match.model_validate({}))
    requesters: list[str] | None = Field(None, description="Who may ask; leave out for anyone")
    approvers: list[str] | None = Field(None, description="Who may approve (never the requester)")
    minApprovals: StrictInt | None = Field(
        None, ge=1, le=10, description="Distinct approvers needed (default 1)"
    )
    maxDuration: str | None = Field(None, description="Longest access that may be asked for")
    pendingTtl: str | None = Field(
        None, description="How long a request waits for approval (default 24h)"
    )
    reasonRequired: bool = False
    ticketPattern: str | None = Field(
        None, description="Regular expression the whole ticket matches"
    )
    sourcePrefixes: list[str] | None = Field(
        None, description="Every request's source must lie within one of these IPv4 ranges"
    )
    widestSource: int | None = Field(
        None,
        description="Widest source that may be asked for, as a prefix length (e.g. /24; "
        "default: any the request allows)",
    )
    autoApprove: AutoApprove | None = None
    breakGlass: Requesters | None = Field(
        None, description="Who may approve their own request in an emergency"
    )
    deny: Requesters | None = Field(None, description="Who may never ask")

    _requesters = field_validator("requesters", "approvers")(staticmethod(_principals))
    _max = field_validator("maxDuration")(staticmethod(_access_duration))
    _ticket = field_validator("ticketPattern")(staticmethod(_pattern))
    _sources = field_validator("sourcePrefixes")(staticmethod(_prefixes))
    _wide = field_validator("widestSource", mode="before")(staticmethod(_widest))

    @field_validator("pendingTtl")
    @classmethod
    def _ttl(cls, v: str | None) -> str | None:
        return fieldchecks.duration(v, MIN_PENDING_TTL, MAX_PENDING_TTL)

    @model_validator(mode="after")
    def _coherent(self) -> Approval:
        if not (self.approvers or self.autoApprove or self.breakGlass or self.deny):
            raise ValueError(
                "say what the entry does: give 'approvers', 'autoApprove', 'breakGlass' or 'deny'"
            )
        if self.minApprovals is not None and not self.approvers:
            raise ValueError("'minApprovals' needs 'approvers'")
        users = self.approvers or []
        if (
            self.minApprovals
            and all(p.startswith("user:") for p in users)
            and len({p.lower() for p in users}) < self.minApprovals
        ):
            raise ValueError(
                f"minApprovals {self.minApprovals} can never be met: 'approvers' names "
                f"{len({p.lower() for p in users})} user(s) and no group"
            )
        return self
