"""The emulator's own reading of durations and source prefixes, as the JIT service applies them.

Written apart from jitctl's parsing and NSG evaluation on purpose (moto's rule): if the emulator
decided what Azure accepts with the client's code, a bug there would make both sides agree and
no test could catch it.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta

# ISO 8601 durations as ARM takes them for JIT: days and a time part (P1D, PT3H, PT1H30M, PT90S).
_DURATION = re.compile(
    r"P(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", re.IGNORECASE
)
_ALL = ("*", "any", "0.0.0.0/0")


def duration(text: object) -> timedelta:
    """ValueError unless `text` is an ISO 8601 duration of days, hours, minutes, seconds."""
    m = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None or not any(m.groups()):
        raise ValueError(f"'{text}' is not an ISO 8601 duration")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total > 10 * 365 * 86400:
        raise ValueError(f"'{text}' is too long")
    return timedelta(seconds=total)


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def _public(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    private = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8")
    return not any(net.version == 4 and net.subnet_of(ipaddress.IPv4Network(p)) for p in private)


def source_covered(source: str, allowed: list[str], verbatim: bool = False) -> bool:
    """Does a policy port's allowed list cover a requested source? By CIDR containment: '*'
    (any, 0.0.0.0/0) covers everything, 'Internet' covers public addresses; a wide-open request
    needs a wide-open rule of the same kind. One report suggests Azure compares verbatim
    (MicrosoftDocs/azure-docs#53026: 10.21.254.85 refused by a policy of 10.21.254.0/24, the
    block itself accepted): with `verbatim`, only a wide-open rule or the same text covers it."""
    rules = [a.strip().lower() for a in allowed if isinstance(a, str)]
    want = source.strip().lower()
    if any(a in _ALL for a in rules):
        return True
    if verbatim or want in _ALL:
        return want in rules
    if want == "internet":
        return "internet" in rules
    net = _network(want)
    if net is None:
        return want in rules
    if "internet" in rules and _public(net):
        return True
    for a in rules:
        rule_net = _network(a)
        if (
            rule_net is not None
            and rule_net.version == net.version
            and int(rule_net.network_address) <= int(net.network_address)
            and int(net.broadcast_address) <= int(rule_net.broadcast_address)
        ):
            return True
    return False


def port_number(value: object) -> int | None:
    """A port `number` as the service reads it: a JSON number, or a string of digits ("22"),
    which the service accepts too; None when it is neither (a bool is not a number here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def prefixes_of(port: dict[str, object]) -> list[str]:
    """The source prefixes of a port body: `allowedSourceAddressPrefixes` when it holds any,
    else `allowedSourceAddressPrefix` when set; the other may be absent, null or empty."""
    many = port.get("allowedSourceAddressPrefixes")
    if isinstance(many, list) and many:
        return [str(p) for p in many]
    one = port.get("allowedSourceAddressPrefix")
    return [str(one)] if one not in (None, "") else []
