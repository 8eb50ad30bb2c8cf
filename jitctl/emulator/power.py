"""Deallocate and start a VM: what a dynamic public IP does then.

A public IP with `publicIPAllocationMethod: Dynamic` loses its address when the VM it is on is
deallocated, and gets a new one when the VM starts again; a static one keeps its address
(learn.microsoft.com, "Public IP addresses": "dynamic IP addresses are released when the
resource is stopped (deallocated)"). Which address Azure hands out is its own: the emulator
one from 20.61.200.0/18 by its own counter. Both operations answer 202 with `Azure-AsyncOperation`, as Azure
does; the VM's power state is kept only as far as this needs (`powerState` in its
`instanceView`, not otherwise modelled).
"""

from __future__ import annotations

from typing import Any

from jitctl.emulator.backend import Backend


def _public_ips(b: Backend, vm: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for ref in vm["properties"].get("networkProfile", {}).get("networkInterfaces", []):
        nic = b.find(ref.get("id"))
        for cfg in (nic or {}).get("properties", {}).get("ipConfigurations", []):
            pip = b.find(((cfg.get("properties") or {}).get("publicIPAddress") or {}).get("id"))
            if pip is not None:
                out.append(pip)
    return out


def _dynamic(pip: dict[str, Any]) -> bool:
    return str(pip["properties"].get("publicIPAllocationMethod", "")).lower() == "dynamic"


def _power(vm: dict[str, Any], state: str) -> None:
    view = vm["properties"].setdefault("instanceView", {})
    view["statuses"] = [{"code": f"PowerState/{state}", "level": "Info"}]


def deallocate(b: Backend, vm_id: str) -> None:
    """The VM stops and its dynamic public IPs release their addresses."""
    vm = b.get(vm_id)
    for pip in _public_ips(b, vm):
        if _dynamic(pip):
            pip["properties"].pop("ipAddress", None)
    _power(vm, "deallocated")


def start(b: Backend, vm_id: str) -> None:
    """The VM runs; a dynamic public IP without an address gets a new one."""
    vm = b.get(vm_id)
    for pip in _public_ips(b, vm):
        if _dynamic(pip) and not pip["properties"].get("ipAddress"):
            n = b.next_id()
            pip["properties"]["ipAddress"] = f"20.61.{200 + n // 254 % 50}.{n % 254 + 1}"
    _power(vm, "running")


def add_routes(router: Any, rg: str) -> None:
    """`POST .../virtualMachines/{vm}/deallocate` and `.../start` (202, long-running)."""
    vm = rg + r"/providers/microsoft\.compute/virtualmachines/(?P<name>[^/]+)"
    for action, do in (("deallocate", deallocate), ("start", start)):

        def handler(q: Any, do: Any = do, action: str = action) -> Any:
            vm_id = router._canonical(q).rsplit("/", 1)[0]
            do(router.backend, vm_id)
            return router.accepted(q, router.backend.get(vm_id).get("location"))

        router.route("POST", vm + "/" + action, handler)
