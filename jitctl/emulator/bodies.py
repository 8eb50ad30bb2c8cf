"""The JIT service's reading of policy ports and initiate ports, leniencies included: a port
number sent as a string, a null list beside a single prefix, no source at all (the caller's
address as ARM sees it). The emulator's own code (jitctl.emulator.checks), never jitctl's."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone
from typing import Any

from jitctl.emulator.backend import ArmError, Backend
from jitctl.emulator.checks import duration, port_number, prefixes_of, source_covered
from jitctl.emulator.nsgrules import PROTOCOLS


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def parse_time(text: str) -> datetime:
    raw = text.strip().replace("Z", "+00:00")
    if "." in raw:  # Azure writes 7 fractional digits; Python takes at most 6
        head, _, tail = raw.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        raw = f"{head}.{digits[:6]}{tail[len(digits) :]}"
    t = datetime.fromisoformat(raw)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def bad(message: str, code: str = "BadRequest") -> ArmError:
    return ArmError(400, code, message)


def not_subset(pid: str) -> ArmError:
    return bad(
        f"The given access request is not a subset of policy '{pid}'. Please make sure "
        "that the access request is within the allowed policy properties."
    )


def caller_of(b: Backend, peer: str | None = None) -> str:
    """The caller's address as ARM sees it (Settings.caller_address; "peer": the TCP client's
    address, 127.0.0.1 in-process where there is no socket)."""
    setting = b.settings.caller_address
    return (peer or "127.0.0.1") if setting.strip().lower() == "peer" else setting.strip()


def validate_port(b: Backend, vm_name: str, port: dict[str, Any]) -> None:
    """A policy PUT's port, checked; a number sent as a string is stored as the number unless
    `port_numbers_as_sent`."""
    for key in ("number", "protocol", "maxRequestAccessDuration"):
        if port.get(key) in (None, ""):
            raise bad(f"Port of VM '{vm_name}' is missing the required property '{key}'.")
    number = port_number(port["number"])
    if number is None or not 1 <= number <= 65535:
        raise bad(f"Port number '{port['number']}' of VM '{vm_name}' is invalid.")
    if port["protocol"] not in PROTOCOLS:
        raise bad(f"Protocol '{port['protocol']}' is invalid. Allowed values: TCP, UDP, *.")
    try:
        longest = duration(port["maxRequestAccessDuration"])
    except Exception:
        raise bad(
            f"maxRequestAccessDuration '{port['maxRequestAccessDuration']}' is not an "
            "ISO 8601 duration."
        ) from None
    if not timedelta(minutes=5) <= longest <= timedelta(days=1):
        raise bad("maxRequestAccessDuration must be between 5 minutes and 1 day.")
    # The other of the two may be absent, null or empty (tools send `...Prefixes: null`).
    has_one = port.get("allowedSourceAddressPrefix") not in (None, "")
    has_many = bool(port.get("allowedSourceAddressPrefixes"))
    if has_one == has_many:
        raise bad(
            "Exactly one of 'allowedSourceAddressPrefix' and 'allowedSourceAddressPrefixes' "
            f"must be set for port {port['number']} of VM '{vm_name}'."
        )
    if not b.settings.port_numbers_as_sent:  # "22" is stored and answered as 22
        port["number"] = number


def initiate_port(
    b: Backend,
    pid: str,
    pvm: dict[str, Any],
    port: dict[str, Any],
    caller: str | None,
    now: datetime,
) -> tuple[int, dict[str, Any], list[str], datetime]:
    """An initiate's port against the policy's VM: (number, the policy's port, the sources, the
    end), or Azure's refusal."""
    if ("endTimeUtc" in port) == ("duration" in port):
        raise bad(
            "Only one of fields 'EndTimeUtc' and 'Duration' can be set.", "InvalidInitiateInput"
        )
    number = port_number(port.get("number"))
    rule = next((p for p in pvm["ports"] if port_number(p["number"]) == number), None)
    if number is None or rule is None:
        raise not_subset(pid)
    # No source: the caller's address, as for the portal's "My IP".
    sources = prefixes_of(port) or [caller or caller_of(b)]
    for src in sources:
        try:
            ipv6 = ipaddress.ip_network(src, strict=False).version == 6
        except ValueError:
            ipv6 = ":" in src
        if ipv6:
            raise bad(
                "The provided access request contains a source IP address in IPv6 "
                "format, which is unsupported by Just-In-Time Network Access."
            )
    verbatim = b.settings.source_match == "verbatim"
    if not all(source_covered(s, prefixes_of(rule), verbatim) for s in sources):
        raise not_subset(pid)
    try:
        end = (
            now + duration(port["duration"])
            if "duration" in port
            else parse_time(port["endTimeUtc"])
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise bad(f"Invalid end time or duration: {exc}", "InvalidInitiateInput") from None
    if end <= now or end - now > duration(rule["maxRequestAccessDuration"]) + timedelta(seconds=60):
        raise not_subset(pid)
    return number, rule, sources, end
