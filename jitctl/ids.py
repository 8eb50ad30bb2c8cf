"""Azure resource ids: parse, build, compare (ids are case-insensitive in ARM)."""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class VmRef:
    subscription_id: str
    resource_group: str
    name: str

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Compute/virtualMachines/{self.name}"
        )


def segments(resource_id: str) -> dict[str, str]:
    """Map lower-cased type keys to values: {'subscriptions': 's', 'resourcegroups': 'rg', ...}."""
    return dict(_segments(resource_id))


@functools.lru_cache(maxsize=65536)  # a fleet's plan parses each VM's id several times
def _segments(resource_id: str) -> tuple[tuple[str, str], ...]:
    parts = [p for p in resource_id.strip().split("/") if p]
    out: dict[str, str] = {}
    for key, value in zip(parts[0::2], parts[1::2], strict=False):
        out.setdefault(key.lower(), value)
    return tuple(out.items())


def id_key(resource_id: str) -> str:
    """The one key a resource id is compared and indexed by: ARM ids are case-insensitive,
    and a leading or trailing slash (or space) names the same resource."""
    return resource_id.strip().strip("/").lower()


def same_id(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and id_key(a) == id_key(b)  # type: ignore[arg-type]


def name_of(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def policy_id(subscription_id: str, resource_group: str, location: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/"
        f"Microsoft.Security/locations/{location}/jitNetworkAccessPolicies/{name}"
    )
