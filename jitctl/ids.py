"""Azure resource ids: parse, build, compare (ids are case-insensitive in ARM)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from jitctl.errors import BadInput
from jitctl.parsing import check_resource_group, check_subscription, check_vm_name


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


def policy_id(subscription_id: str, resource_group: str, location: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/"
        f"Microsoft.Security/locations/{location}/jitNetworkAccessPolicies/{name}"
    )
