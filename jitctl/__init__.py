"""jitctl: Azure Defender for Cloud Just-In-Time VM access, as a library and a CLI.

A runbook can do what the CLI does::

    from jitctl import App, VmRef, enable, request_access, wait_until_effective, PortRule

    app = App(subscription="...")            # DefaultAzureCredential; App(emulator=True) for offline
    gw = app.gateway()
    vm = VmRef("<subscription>", "rg-prod", "vm-win01")
    enable(gw, [vm], [PortRule(3389)], clock=app.clock)
    request_access(gw, vm, "203.0.113.7", app.clock.now(), clock=app.clock)
    wait_until_effective(gw, vm, "203.0.113.7", app.clock)

Names are imported lazily so that `jitctl --help` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "App",
    "ExitCode",
    "JitctlError",
    "PortRule",
    "VmRef",
    "WritePolicy",
    "detect_public_ip",
    "disable",
    "enable",
    "list_policies",
    "request_access",
    "show_vm",
    "verify",
    "wait_until_effective",
]

_WHERE = {
    "App": "jitctl.app",
    "ExitCode": "jitctl.errors",
    "JitctlError": "jitctl.errors",
    "PortRule": "jitctl.model",
    "VmRef": "jitctl.ids",
    "WritePolicy": "jitctl.services.policies",
    "detect_public_ip": "jitctl.publicip",
    "disable": "jitctl.services.policies",
    "enable": "jitctl.services.policies",
    "list_policies": "jitctl.services.query",
    "request_access": "jitctl.services.access",
    "show_vm": "jitctl.services.query",
    "verify": "jitctl.services.verify",
    "wait_until_effective": "jitctl.services.verify",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'jitctl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
