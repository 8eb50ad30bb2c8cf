"""This machine's public IPv4 address, from independent HTTPS echo services that must agree."""

from __future__ import annotations

import ipaddress
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from jitctl.errors import JitctlError
from jitctl.nsgeval import is_internet

DEFAULT_SERVICES = (
    "https://api.ipify.org",
    "https://checkip.amazonaws.com",
    "https://icanhazip.com",
    "https://ifconfig.me/ip",
)

Fetch = Callable[[str, float], str]


class PublicIpError(JitctlError):
    pass


def services_from_env() -> tuple[str, ...]:
    raw = os.environ.get("JITCTL_IP_ECHO_URLS", "")
    urls = tuple(u.strip() for u in raw.split(",") if u.strip())
    return urls or DEFAULT_SERVICES


def http_fetch(url: str, timeout: float) -> str:
    """One echo service's answer (httpx, jitctl's HTTP client; proxies from the environment,
    the CA file as the rest of jitctl finds it)."""
    import httpx

    from jitctl.cabundle import httpx_verify

    resp = httpx.get(
        url,
        timeout=timeout,
        headers={"User-Agent": "jitctl"},
        verify=httpx_verify(),
        follow_redirects=True,
    )
    resp.raise_for_status()
    return resp.text[:100]


def _ask(fetch: Fetch, url: str, timeout: float) -> str | None:
    try:
        text = fetch(url, timeout).strip()
        ip = ipaddress.ip_address(text)
    except Exception:
        return None
    return str(ip) if ip.version == 4 and is_internet(ip) else None


def detect_public_ip(
    fetch: Fetch = http_fetch, services: Sequence[str] | None = None, timeout: float = 3.0
) -> str:
    """Ask two services at once; if they do not agree, ask the others and take a majority."""
    urls = list(services or services_from_env())
    if len(urls) < 2:
        raise PublicIpError(
            "At least two IP echo services are needed to trust the answer.",
            "Set JITCTL_IP_ECHO_URLS to two or more URLs, or pass --source-ip.",
        )
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        answers = list(pool.map(lambda u: _ask(fetch, u, timeout), urls[:2]))
        if answers[0] and answers[0] == answers[1]:
            return answers[0]
        answers += list(pool.map(lambda u: _ask(fetch, u, timeout), urls[2:]))
    valid = [a for a in answers if a]
    if not valid:
        raise PublicIpError(
            "Cannot find this machine's public IP address: no echo service answered (offline?).",
            "Pass --source-ip with your public IPv4 address.",
        )
    (best, votes), *_ = Counter(valid).most_common(1)
    if votes >= 2:
        return best
    if len(valid) == 1:
        raise PublicIpError(
            f"Only one IP echo service answered ({valid[0]}); two must agree to trust it.",
            "Pass --source-ip with your public IPv4 address, or retry.",
        )
    seen = ", ".join(f"{u} says {a or 'nothing'}" for u, a in zip(urls, answers, strict=False))
    raise PublicIpError(
        f"IP echo services disagree on this machine's address ({seen}).",
        "Pass --source-ip with the address you connect from.",
    )


# An address of the documentation range TEST-NET-3 (RFC 5737): never anyone's, and what the
# emulator's worlds and the README's examples use. Only ever a stand-in against the emulator.
DOCUMENTATION_ADDRESS = "203.0.113.7"


EMULATED_NOTE = (
    f"Emulator: requesting for {DOCUMENTATION_ADDRESS} (a documentation address: the emulated VMs "
    "see no real one, so this machine's address is not looked up). Pass --source-ip to choose "
    "another."
)


def emulated_public_ip() -> tuple[str, str]:
    """The source address for a request to the emulator, and the note to show. The emulated
    VMs see no real address, and the emulator's worlds allow the documentation ranges: asking
    echo services would only make the examples depend on the network (an online machine's
    address is outside every range the docs world allows)."""
    return DOCUMENTATION_ADDRESS, EMULATED_NOTE
