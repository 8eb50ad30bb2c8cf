"""Parsing and validation of what users type: durations, sources, ports, protocols, names.

Everything here is checked locally, before any call to Azure, and fails with BadInput (exit 2).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from datetime import timedelta

from jitctl.errors import BadInput
from jitctl.ids import VmRef, segments
from jitctl.textsafe import has_unsafe, printable

MIN_DURATION = timedelta(minutes=5)
MAX_DURATION = timedelta(hours=24)
# Digits a duration part may have before it is out of range whatever its unit: checked before
# any arithmetic, so 99999999999999h is "out of range", not an OverflowError.
_MAX_DIGITS = 9

_SHORT = re.compile(r"^(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?$", re.IGNORECASE)
_ISO = re.compile(
    r"^P(?:(?P<d>[0-9]+)D)?(?:T(?:(?P<h>[0-9]+)H)?(?:(?P<m>[0-9]+)M)?"
    r"(?:(?P<s>[0-9]+(?:\.[0-9]+)?)S)?)?$",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def _seconds(parts: dict[str, str | None]) -> float | None:
    """Total seconds of the matched parts, or None when a part has too many digits."""
    total = 0.0
    for unit, text in parts.items():
        if text is None:
            continue
        if len(text.split(".")[0]) > _MAX_DIGITS:
            return None
        total += float(text) * _UNIT_SECONDS[unit]
    return total


def _out_of_range(text: str, minimum: timedelta, maximum: timedelta) -> BadInput:
    return BadInput(
        f"Duration {text} is out of range.",
        f"Use between {format_human_duration(minimum)} and {format_human_duration(maximum)}.",
    )


def _iso_parts(text: str) -> dict[str, str | None]:
    raw = text.strip()
    m = _ISO.match(raw)
    if not m or raw.upper() in ("P", "PT") or raw.upper().endswith("T"):
        raise BadInput(
            f"'{printable(text)}' is not an ISO 8601 duration.", "Use a form such as PT3H."
        )
    return m.groupdict()


def parse_iso_duration(text: str) -> timedelta:
    """Parse an ISO 8601 duration of days, hours, minutes and seconds (PT3H, P1D, PT1H30M)."""
    seconds = _seconds(_iso_parts(text))
    if seconds is None or seconds > timedelta.max.total_seconds() / 2:
        raise _out_of_range(text, MIN_DURATION, MAX_DURATION)
    return timedelta(seconds=seconds)


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
    """Parse 90m, 1h, 1h30m or ISO 8601 (PT1H) and check it lies in [minimum, maximum].

    The range is checked on the digits before any timedelta is built, so no input overflows.
    """
    raw = text.strip() if isinstance(text, str) else ""
    m = _SHORT.match(raw)
    if raw and m and any(m.groupdict().values()):
        parts = m.groupdict()
    elif raw[:1].upper() == "P":
        parts = _iso_parts(raw)
    else:
        raise BadInput(
            f"'{printable(text)}' is not a duration.",
            "Use 90m, 1h, 1h30m or ISO 8601 such as PT1H.",
        )
    seconds = _seconds(parts)
    if seconds is None or not minimum.total_seconds() <= seconds <= maximum.total_seconds():
        raise _out_of_range(printable(text), minimum, maximum)
    return timedelta(seconds=seconds)


def check_duration(
    value: timedelta | float,
    *,
    minimum: timedelta = MIN_DURATION,
    maximum: timedelta = MAX_DURATION,
) -> timedelta:
    """A duration from a library caller (a timedelta, or seconds): parse_duration's range."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not minimum.total_seconds() <= seconds <= maximum.total_seconds():
        whole = 1 <= seconds < 1e9  # as 1h30m; else as seconds (-60s, 1e+300s)
        shown = format_human_duration(timedelta(seconds=seconds)) if whole else f"{seconds:g}s"
        raise _out_of_range(shown, minimum, maximum)
    return timedelta(seconds=seconds)


_PORT = re.compile(r"[0-9]{1,5}")


def parse_port(value: str | int) -> int:
    """A port number 1-65535: an int (not a bool, not a float) or ASCII digits only."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        shown = str(value).lower() if isinstance(value, bool) else printable(value)
        raise BadInput(f"'{shown}' is not a port number.", "Use a number from 1 to 65535.")
    text = value.strip() if isinstance(value, str) else str(value)
    if not _PORT.fullmatch(text):
        if re.fullmatch(r"-?[0-9]+", text):
            raise BadInput(f"Port {text} is out of range.", "Use a number from 1 to 65535.")
        raise BadInput(
            f"'{printable(value)}' is not a port number.", "Use a number from 1 to 65535."
        )
    port = int(text)
    if not 1 <= port <= 65535:
        raise BadInput(f"Port {port} is out of range.", "Use a number from 1 to 65535.")
    return port


_PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "any": "*", "*": "*"}


def parse_protocol(value: str) -> str:
    """Map tcp|udp|any to the JIT policy's protocol values (TCP, UDP, *)."""
    try:
        return _PROTOCOLS[value.strip().lower()]
    except (KeyError, AttributeError):
        raise BadInput(f"'{printable(value)}' is not a protocol.", "Use tcp, udp or any.") from None


def canonical_protocol(value: str) -> str:
    """One spelling per protocol, for comparing rules: Azure's enum names (TCP, UDP, *); any
    other case of them (Tcp, tcp) is the same protocol; an unknown value is compared in upper
    case."""
    return _PROTOCOLS.get(value.strip().lower(), value.strip().upper())


# --- "any source": the one definition (STYLE.md: it used to be five that disagreed) ----------
#
# Two kinds of source are wide open, and both are refused unless asked for explicitly
# (--allow-any-source, allowAnySource: true):
# - every address: '*' (Azure's wildcard), 'Any' (the portal's label for '*'), a /0 CIDR;
# - the service tag 'Internet': every address outside the virtual network and the private
#   ranges. Azure evaluates it differently from '*' ('*' also matches VirtualNetwork sources),
#   so it is kept as the tag, never widened to '*'.
# Matching is case-insensitive and ignores surrounding spaces. Azure is sent '*' for '*' and
# 'Any', 'Internet' for the tag, and the CIDR (canonical form) for an IPv4 /0 CIDR.
EVERY_ADDRESS = "*"
INTERNET = "Internet"
_EVERY_ADDRESS_SPELLINGS = frozenset({"*", "any"})


def wide_open(prefix: str) -> str | None:
    """'*' when `prefix` means every address, 'Internet' for the Internet tag, else None."""
    return _wide_open(prefix) if isinstance(prefix, str) else None


@functools.lru_cache(maxsize=4096)  # a fleet repeats a few prefixes thousands of times
def _wide_open(prefix: str) -> str | None:
    raw = prefix.strip()
    low = raw.lower()
    if low in _EVERY_ADDRESS_SPELLINGS:
        return EVERY_ADDRESS
    if low == "internet":
        return INTERNET
    if "/" in raw:
        try:
            net = ipaddress.ip_network(raw, strict=False)
        except ValueError:
            return None
        if net.version == 4 and net.prefixlen == 0:  # ::/0 is IPv6, refused as such
            return EVERY_ADDRESS
    return None


def is_any_source(value: str) -> bool:
    """Does `value` open a port to every address or to the whole Internet?"""
    return wide_open(value) is not None


@functools.lru_cache(maxsize=4096)
def canonical_source(prefix: str) -> str:
    """One spelling per meaning, for comparing prefixes: '*', 'internet', an address or CIDR
    in canonical form (203.0.113.7/32 is 203.0.113.7), or a service tag in lower case."""
    kind = wide_open(prefix)
    if kind is not None:
        return kind.lower()
    raw = prefix.strip()
    try:
        net = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        return raw.lower()
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


_ANY_REFUSED = "Give your address or range, or pass --allow-any-source if you really mean it."


def parse_source(value: str, *, allow_any: bool = False) -> str:
    """Validate a source address: an IPv4 address or CIDR; wide-open only with allow_any.

    Returns the text Azure is sent: '*', 'Internet', or the address or CIDR in canonical form.
    """
    if not isinstance(value, str):
        raise BadInput(
            f"'{printable(value)}' is not an IPv4 address or CIDR.",
            "Use a form such as 203.0.113.7 or 203.0.113.0/24.",
        )
    raw = value.strip()
    kind = wide_open(raw)
    if kind is not None:
        if not allow_any:
            raise BadInput(
                f"Source '{printable(value)}' opens the port to the whole Internet.", _ANY_REFUSED
            )
        if kind == EVERY_ADDRESS and "/" in raw:
            return str(ipaddress.ip_network(raw, strict=False))
        return kind
    if "%" in raw:  # an IPv6 zone id (fe80::1%eth0) names a local interface, never a source
        raise BadInput(
            f"Source '{printable(value)}' has a zone id; JIT takes a public IPv4 address.",
            "Use your public IPv4 address.",
        )
    try:
        net = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise BadInput(
            f"'{printable(value)}' is not an IPv4 address or CIDR.",
            "Use a form such as 203.0.113.7 or 203.0.113.0/24.",
        ) from None
    if net.version == 6:
        raise BadInput(
            f"Source '{printable(value)}' is IPv6, which Just-In-Time access does not support.",
            "Use your public IPv4 address.",
        )
    if net.network_address.is_unspecified:
        raise BadInput(
            f"Source '{printable(value)}' is the unspecified address, not a source.",
            "Give your address or range; for every address use '*' with --allow-any-source.",
        )
    if "/" in raw and net.prefixlen != 32:
        return str(net)
    return str(net.network_address)


def checkable_address(source: str) -> str:
    """The address `verify` evaluates for a source already parsed by parse_source: the address,
    or a CIDR's network address. A wide-open source names no address to check."""
    if is_any_source(source):
        raise BadInput(
            f"Source '{printable(source)}' is not an address, so access for it cannot be checked.",
            "Request for your address or range to use --wait, or leave --wait out.",
        )
    return source.split("/")[0]


# --- names and free text sent to Azure ---------------------------------------------------------

# Azure's naming rules ("Naming rules and restrictions for Azure resources"): a resource group
# is 1-90 letters, digits, '_', '(', ')', '-' and '.', not ending in '.'; a VM name is 1-64
# characters without spaces, control characters or ~!@#$%^&*()=+[]{}\|;:'",<>/? and does not
# end in '.' or '-'.
_GROUP = re.compile(r"[\w().-]{1,90}")
_VM_FORBIDDEN = set("~!@#$%^&*()=+[]{}\\|;:'\",<>/?")
# No documented limit for a JIT request's justification; this one keeps history readable.
MAX_JUSTIFICATION = 1024


_SUBSCRIPTION = re.compile(r"[A-Za-z0-9-]{1,64}")


def check_subscription(subscription_id: str) -> str:
    """A subscription id (a GUID in Azure): letters, digits and '-' only, so nothing else can
    reach a request path."""
    if not _SUBSCRIPTION.fullmatch(subscription_id):
        raise BadInput(
            f"'{printable(subscription_id)}' is not a subscription id.",
            "Use the subscription's id, such as 00000000-0000-0000-0000-000000000000.",
        )
    return subscription_id


def check_resource_group(name: str) -> str:
    if not _GROUP.fullmatch(name) or name.endswith("."):
        raise BadInput(
            f"'{printable(name)}' is not a resource group name.",
            "Use 1-90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'.",
        )
    return name


def check_scope(subscription_id: str, resource_group: str | None) -> None:
    """A subscription, and a resource group when one is given."""
    check_subscription(subscription_id)
    if resource_group is not None:
        check_resource_group(resource_group)


_VM_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}[A-Za-z0-9_]|[A-Za-z0-9]")


def check_vm_name(name: str) -> str:
    if _VM_PLAIN.fullmatch(name):  # the common spelling, at a regex's speed (fleets of ids)
        return name
    if (
        not 1 <= len(name) <= 64
        or any(c in _VM_FORBIDDEN or c.isspace() or not c.isprintable() for c in name)
        or name[-1] in ".-"
        or name[0] in "_-"
    ):
        raise BadInput(
            f"'{printable(name)}' is not a virtual machine name.",
            "Use 1-64 letters, digits, '-', '_' or '.', or the VM's full resource id.",
        )
    return name


def check_justification(text: str | None) -> str | None:
    """Free text kept in the policy's history and shown to other users: printable, bounded."""
    if text is None:
        return None
    if has_unsafe(text):
        raise BadInput(
            f"The justification '{printable(text)}' holds control characters.",
            "Use plain text on one line.",
        )
    if len(text) > MAX_JUSTIFICATION:
        raise BadInput(
            f"The justification is {len(text)} characters long.",
            f"Use at most {MAX_JUSTIFICATION}.",
        )
    return text


def parse_vm(value: str, *, resource_group: str | None, subscription_id: str | None) -> VmRef:
    """A VM by full resource id, or by name with a resource group."""
    if value.startswith("/"):
        seg = segments(value)
        if (
            "virtualmachines" not in seg
            or "resourcegroups" not in seg
            or "subscriptions" not in seg
        ):
            raise BadInput(
                f"'{value}' is not a virtual machine resource id.",
                "Use /subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/NAME.",
            )
        return VmRef(
            check_subscription(seg["subscriptions"]),
            check_resource_group(seg["resourcegroups"]),
            check_vm_name(seg["virtualmachines"]),
        )
    if not resource_group:
        raise BadInput(
            f"VM '{value}' is named without its resource group.",
            "Pass --resource-group/-g, or give the VM's full resource id.",
        )
    if not subscription_id:
        raise BadInput(
            "No subscription given.", "Pass --subscription or set AZURE_SUBSCRIPTION_ID."
        )
    return VmRef(
        check_subscription(subscription_id),
        check_resource_group(resource_group),
        check_vm_name(value),
    )
