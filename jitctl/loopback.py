"""Whether a host is this machine: where plain HTTP (a token, a webhook, an SMTP password) may go."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (bracketed or not); a name that merely resolves there does
    not count, since what it resolves to can change between the check and the call."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
