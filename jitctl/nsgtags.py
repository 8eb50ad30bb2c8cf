"""The service tags NSG evaluation resolves offline (pure logic, no I/O).

VirtualNetwork is the VNet's prefixes and, standing for peered VNets and on-premises ranges
behind a gateway that jitctl does not read, the private ranges. Internet is what lies outside
those, Azure's load balancer and the special ranges. AzureLoadBalancer is one address.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

AZURE_LOAD_BALANCER = ipaddress.ip_network("168.63.129.16/32")
PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)
# Besides the virtual network, the Internet tag leaves out Azure's load balancer and what
# ipaddress calls loopback, link-local, multicast or unspecified (as ranges, so that audit can
# split the address space where the tag's answer changes).
NOT_INTERNET = (
    AZURE_LOAD_BALANCER,
    *(
        ipaddress.ip_network(n)
        for n in (
            *("0.0.0.0/32", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4"),
            *("::/128", "::1/128", "fe80::/10", "ff00::/8"),
        )
    ),
)


@functools.lru_cache(maxsize=16384)
def network(prefix: str) -> Network:
    """A prefix's network, parsed once (an audit evaluates the same rules for many VMs)."""
    return ipaddress.ip_network(prefix, strict=False)


def virtual_network(vnet_prefixes: tuple[str, ...]) -> tuple[Network, ...]:
    return (*(network(p) for p in vnet_prefixes), *PRIVATE)


def in_virtual_network(ip: IPAddress, vnet_prefixes: tuple[str, ...]) -> bool:
    if ip.version == 4:
        return _in_space(int(ip), _v4_space(vnet_prefixes, False))
    return any(ip in n for n in virtual_network(vnet_prefixes))


def in_internet(ip: IPAddress, vnet_prefixes: tuple[str, ...]) -> bool:
    if ip.version == 4:
        return not _in_space(int(ip), _v4_space(vnet_prefixes, True))
    return not any(ip in n for n in (*virtual_network(vnet_prefixes), *NOT_INTERNET))


# audit asks for the tags of every piece of the source space: a search, not a scan
@functools.lru_cache(maxsize=1024)
def _v4_space(vnet_prefixes: tuple[str, ...], not_internet: bool) -> tuple[list[int], list[int]]:
    """The VirtualNetwork tag's IPv4 addresses, or all that the Internet tag leaves out, as
    sorted disjoint ranges: (firsts, lasts)."""
    merged: list[list[int]] = []
    for first, last in sorted(
        (int(n.network_address), int(n.broadcast_address))
        for n in (*virtual_network(vnet_prefixes), *(NOT_INTERNET if not_internet else ()))
        if n.version == 4
    ):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return [m[0] for m in merged], [m[1] for m in merged]


def _in_space(address: int, space: tuple[list[int], list[int]]) -> bool:
    firsts, lasts = space
    at = bisect.bisect_right(firsts, address) - 1
    return at >= 0 and address <= lasts[at]
