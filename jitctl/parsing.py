"""Parsing and validation of what users type: durations, source addresses, ports, protocols."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta

from jitctl.errors import BadInput

MIN_DURATION = timedelta(minutes=5)
MAX_DURATION = timedelta(hours=24)

# Sources that open a port to the whole Internet; refused unless asked for explicitly.
ANY_SOURCES = frozenset({"*", "0.0.0.0/0", "internet", "any", "0.0.0.0"})

_SHORT = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$", re.IGNORECASE)
_ISO = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


def parse_iso_duration(text: str) -> timedelta:
    """Parse an ISO 8601 duration of days, hours, minutes and seconds (PT3H, P1D, PT1H30M)."""
    m = _ISO.match(text.strip())
    if not m or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        raise BadInput(f"'{text}' is not an ISO 8601 duration.", "Use a form such as PT3H.")
    return timedelta(
        days=int(m["d"] or 0),
        hours=int(m["h"] or 0),
        minutes=int(m["m"] or 0),
        seconds=float(m["s"] or 0),
    )


def format_iso_duration(value: timedelta) -> str:
    """Format as Azure writes it: PT3H, PT1H30M, P1D."""
    total = int(value.total_seconds())
    if total and total % 86400 == 0:
        return f"P{total // 86400}D"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    out = "PT"
    if hours:
        out += f"{hours}H"
    if minutes:
        out += f"{minutes}M"
    if seconds or out == "PT":
        out += f"{seconds}S"
    return out


def format_human_duration(value: timedelta) -> str:
    """Format for people: 3h, 1h30m, 45m, 20s."""
    total = max(0, int(value.total_seconds()))
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if not hours and not minutes:
        parts.append(f"{seconds}s")
    return "".join(parts)


def parse_duration(
    text: str, *, minimum: timedelta = MIN_DURATION, maximum: timedelta = MAX_DURATION
) -> timedelta:
    """Parse 90m, 1h, 1h30m or ISO 8601 (PT1H) and check it lies in [minimum, maximum]."""
    raw = text.strip()
    m = _SHORT.match(raw)
    if raw and m and any(m.groupdict().values()):
        value = timedelta(
            hours=int(m["h"] or 0), minutes=int(m["m"] or 0), seconds=int(m["s"] or 0)
        )
    elif raw[:1].upper() == "P":
        value = parse_iso_duration(raw)
    else:
        raise BadInput(
            f"'{text}' is not a duration.", "Use 90m, 1h, 1h30m or ISO 8601 such as PT1H."
        )
    if not minimum <= value <= maximum:
        raise BadInput(
            f"Duration {text} is out of range.",
            f"Use between {format_human_duration(minimum)} and {format_human_duration(maximum)}.",
        )
    return value


def parse_port(value: str | int) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise BadInput(
            f"'{value}' is not a port number.", "Use a number from 1 to 65535."
        ) from None
    if not 1 <= port <= 65535:
        raise BadInput(f"Port {port} is out of range.", "Use a number from 1 to 65535.")
    return port


_PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "any": "*", "*": "*"}


def parse_protocol(value: str) -> str:
    """Map tcp|udp|any to the JIT policy's protocol values (TCP, UDP, *)."""
    try:
        return _PROTOCOLS[value.strip().lower()]
    except KeyError:
        raise BadInput(f"'{value}' is not a protocol.", "Use tcp, udp or any.") from None


def is_any_source(value: str) -> bool:
    return value.strip().lower() in ANY_SOURCES


def parse_source(value: str, *, allow_any: bool = False) -> str:
    """Validate a source address: an IPv4 address or CIDR; wide-open only with allow_any.

    Returns the canonical text Azure is sent ('*' for any source).
    """
    raw = value.strip()
    if is_any_source(raw):
        if not allow_any:
            raise BadInput(
                f"Source '{value}' opens the port to the whole Internet.",
                "Give your address or range, or pass --allow-any-source if you really mean it.",
            )
        return "*"
    try:
        net = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise BadInput(
            f"'{value}' is not an IPv4 address or CIDR.",
            "Use a form such as 203.0.113.7 or 203.0.113.0/24.",
        ) from None
    if net.version == 6:
        raise BadInput(
            f"Source '{value}' is IPv6, which Just-In-Time access does not support.",
            "Use your public IPv4 address.",
        )
    if net.prefixlen == 0:
        if not allow_any:
            raise BadInput(
                f"Source '{value}' opens the port to the whole Internet.",
                "Give your address or range, or pass --allow-any-source if you really mean it.",
            )
        return "*"
    if "/" in raw and net.prefixlen != 32:
        return str(net)
    return str(net.network_address)
