"""A VM's exposure today, for the approver's page: whether JIT protects it, and audit's
findings on it (rules that bypass JIT, grants open now, policy entries too wide), read with
jitctl's own audit through the broker's Azure identity.

One audit reads a whole subscription in a bounded number of calls, so it is kept briefly per
subscription: a page of twenty pending requests costs one read, not twenty. A read that fails
says so on the page; it never stops the page (an approver can still decide).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from jitctl.errors import JitctlError
from jitctl.ids import segments
from jitctl.services.audit import AuditResult

TTL = 60.0  # seconds an audit of a subscription is shown again without reading it


@dataclass(frozen=True)
class Note:
    severity: str
    rule_id: str
    message: str


@dataclass(frozen=True)
class VmExposure:
    protected: bool | None  # None: not known (the read failed, or audit did not see the VM)
    why_not: str | None = None
    findings: tuple[Note, ...] = ()
    error: str | None = None


def exposure_in(result: AuditResult, vm_id: str) -> VmExposure:
    wanted = vm_id.lower()
    vm = next((v for v in result.vms if v.vm_id.lower() == wanted), None)
    notes = tuple(
        Note(f.severity, f.rule_id, f.message)
        for f in result.findings
        if f.resource_id.lower() == wanted
    )
    if vm is None:
        return VmExposure(None, "the audit did not see this VM", notes)
    return VmExposure(vm.protected, vm.reason, notes)


class ExposureCache:
    """`read(subscription_id)` is one audit of a subscription (AuditResult)."""

    def __init__(
        self,
        read: Callable[[str], AuditResult],
        ttl: float = TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._ttl = ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, AuditResult | str]] = {}
        self.reads = 0

    def _audit(self, subscription: str) -> AuditResult | str:
        with self._lock:
            now = self._monotonic()
            kept = self._seen.get(subscription)
            if kept is not None and now - kept[0] < self._ttl:
                return kept[1]
            self.reads += 1
            result: AuditResult | str
            try:
                result = self._read(subscription)
            except JitctlError as err:
                result = err.message  # kept as briefly, so a failing read is not hammered
            self._seen[subscription] = (now, result)
            return result

    def __call__(self, vm_id: str) -> VmExposure:
        subscription = segments(vm_id).get("subscriptions", "")
        result = self._audit(subscription)
        if isinstance(result, str):
            return VmExposure(None, error=f"Not read: {result}")
        return exposure_in(result, vm_id)
