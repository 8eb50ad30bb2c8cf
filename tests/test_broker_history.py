"""What a JIT policy's request history says about a broker request's grant (pure: no Azure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from jitctl.broker.history import ended_in_azure, superseded_ports
from jitctl.broker.lifecycle import State
from jitctl.broker.records import RequestRecord
from jitctl.model import AccessRequest, GrantPort, GrantVm, JitPolicy

VM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
END = T0 + timedelta(hours=1)
REC = RequestRecord(
    id="r1",
    state=State.ACTIVE,
    version=3,
    requester="alice@contoso.com",
    requester_groups=(),
    vm_id=VM,
    ports=(22, 3389),
    source="203.0.113.7",
    duration=timedelta(hours=1),
    reason=None,
    ticket=None,
    break_glass=False,
    outcome="auto_approved",
    min_approvals=0,
    approver_sets=(),
    rules=(),
    created_at=T0,
    updated_at=T0,
    pending_until=T0,
)


def sent(
    who: str | None, at: datetime, *ports: tuple[int, str, str | None], vm: str = VM
) -> AccessRequest:
    grant = tuple(GrantPort(n, "203.0.113.7", END, s, r) for n, s, r in ports)
    text = f"broker:{who}: alice@contoso.com" if who else "by hand"
    return AccessRequest(at, "broker@contoso.com", text, (GrantVm(vm, grant),))


def policy(*reqs: AccessRequest) -> JitPolicy:
    return JitPolicy("s", "rg", "westeurope", "default", requests=reqs)


MINE = sent("r1", T0, (22, "Initiated", None), (3389, "Initiated", None))


def test_in_force_until_every_port_is_superseded():
    one = sent("r2", T0 + timedelta(minutes=1), (3389, "Initiated", None))
    assert set(superseded_ports(policy(MINE, one), REC)) == {3389}
    assert ended_in_azure(policy(MINE, one), REC) is None  # port 22 is still this grant's
    both = sent("r3", T0 + timedelta(minutes=2), (22, "Initiated", None))
    ended = ended_in_azure(policy(MINE, one, both), REC)
    assert ended is not None and ended.superseded_by == "r3"
    assert ended.reason == (
        "Superseded by request r3 at 2026-01-05 09:02Z (Azure: NewerRequestInitiated)."
    )


def test_a_newer_request_azure_has_not_applied_or_failed_supersedes_nothing():
    for status in ("Initiating", "Failed"):
        newer = sent("r2", T0 + timedelta(minutes=1), (22, status, None), (3389, status, None))
        assert superseded_ports(policy(MINE, newer), REC) == {}
        assert ended_in_azure(policy(MINE, newer), REC) is None


def test_the_same_start_time_is_ordered_by_the_history():
    later = sent(None, T0, (22, "Initiated", None), (3389, "Initiated", None))
    assert set(superseded_ports(policy(MINE, later), REC)) == {22, 3389}
    assert superseded_ports(policy(later, MINE), REC) == {}


def test_its_own_extension_is_not_a_newer_request():
    older = sent("r1", T0, (22, "Revoked", "NewerRequestInitiated"), (3389, "Revoked", None))
    extension = sent(
        "r1", T0 + timedelta(minutes=30), (22, "Initiated", None), (3389, "Initiated", None)
    )
    assert ended_in_azure(policy(older, extension), REC) is None


def test_ended_by_azure_in_its_own_words_and_no_history_is_no_verdict():
    gone = sent("r1", T0, (22, "Revoked", "Expired"), (3389, "Revoked", "Expired"))
    ended = ended_in_azure(policy(gone), REC)
    assert ended is not None and ended.superseded_by is None
    assert ended.reason == (
        "Azure ended the grant before its end time: its history says Revoked (Expired)."
    )
    assert ended_in_azure(policy(), REC) is None  # the history does not hold it
    other_vm = replace(REC, vm_id=VM.replace("vm1", "vm2"))
    assert ended_in_azure(policy(gone), other_vm) is None
