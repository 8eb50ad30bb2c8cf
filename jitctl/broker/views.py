"""What the broker's API says: a request as JSON, a decision as JSON, who holds which role on a
request, and the one mapping of errors to HTTP answers. No web framework here, so the pages
and the JSON API share these shapes and the CLI's client reads them back by the same codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from jitctl.broker.errors import (
    AlreadyReviewed,
    NotPermitted,
    RequestNotFound,
    SelfApproval,
    StoreUnavailable,
    Unauthenticated,
    WrongState,
)
from jitctl.broker.lifecycle import Action, Role, State, people_actions, roles_on
from jitctl.broker.records import RequestRecord
from jitctl.broker.rules import Decision, Outcome, Principal, may_approve
from jitctl.errors import (
    BadInput,
    Forbidden,
    JitctlError,
    NotFound,
    Refused,
)
from jitctl.ids import name_of, segments
from jitctl.parsing import format_iso_duration

# error class -> (HTTP status, the machine-readable code); the first class that matches wins,
# so the specific ones come first. The CLI's client maps each code back to its error class.
ERRORS: tuple[tuple[type[JitctlError], int, str], ...] = (
    (SelfApproval, 403, "self_approval"),
    (NotPermitted, 403, "forbidden"),
    (Forbidden, 403, "forbidden"),
    (WrongState, 409, "wrong_state"),
    (AlreadyReviewed, 409, "already_reviewed"),
    (Refused, 403, "refused"),  # what is left of Refused: the rules said no
    (Unauthenticated, 401, "unauthenticated"),
    (RequestNotFound, 404, "not_found"),
    (NotFound, 404, "not_found"),
    (BadInput, 400, "bad_input"),
    (StoreUnavailable, 503, "store_unavailable"),
)
# code -> the class the client raises (the exit code follows from it)
CODES: dict[str, type[JitctlError]] = {
    "self_approval": SelfApproval,
    "forbidden": NotPermitted,
    "wrong_state": WrongState,
    "already_reviewed": AlreadyReviewed,
    "refused": Refused,
    "unauthenticated": Unauthenticated,
    "not_found": RequestNotFound,
    "bad_input": BadInput,
    "store_unavailable": StoreUnavailable,
}


def error_answer(err: JitctlError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and the JSON body for one of jitctl's errors."""
    status, code = next(
        ((s, c) for cls, s, c in ERRORS if isinstance(err, cls)), (502, "upstream_error")
    )
    # what is left is the broker's own trouble with Azure (its sign-in included): not the
    # caller's token, so never a 401
    return status, error_body(code, err.message, err.hint)


def error_body(code: str, message: str, hint: str = "") -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "hint": hint}}


@dataclass(frozen=True)
class Access:
    """Who runs the broker (admins) and who may read its whole record (auditors), as
    principals (`group:<id or name>`, `user:<upn>`)."""

    admins: tuple[str, ...] = ()
    auditors: tuple[str, ...] = ()

    def is_admin(self, who: Principal) -> bool:
        return who.first_match(self.admins) is not None

    def reads_log(self, who: Principal) -> bool:
        return self.is_admin(who) or who.first_match(self.auditors) is not None

    def roles(self, rec: RequestRecord, who: Principal) -> set[Role]:
        """The roles `who` holds on `rec`: on their own, requester alone (lifecycle.roles_on);
        on another's, approver as the request's approver sets say, admin as configured."""
        roles = set()
        if may_approve(rec.approver_sets, rec.requester, who, rec.requester_oid):
            roles.add(Role.APPROVER)
        if self.is_admin(who):
            roles.add(Role.ADMIN)
        return roles_on(roles, who.same_as(rec.requester, rec.requester_oid))

    def may_see(self, rec: RequestRecord, who: Principal) -> bool:
        return bool(self.roles(rec, who)) or self.reads_log(who)


def utc(at: datetime | None) -> str | None:
    if at is None:
        return None
    return at.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def actions_for(rec: RequestRecord, who: Principal, roles: set[Role]) -> list[str]:
    """The buttons `who` gets: what the lifecycle lets their roles do, approve once each."""
    done = who.upn.lower() in rec.approved_by
    return [a.value for a in people_actions(rec.state, roles) if not (a is Action.APPROVE and done)]


RELEASE = "release"  # the worker's event once it removed (or failed to) the allow rules


def release_of(rec: RequestRecord, events: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """What revoking did in Azure (None: not revoked): `pending` until the worker removed the
    JIT allow rules (the source may still get in; revoked while activating: until Azure's
    history says whether it applied the initiate), then `done` (rules removed), `not_needed`
    (none was left) or `failed` (not removed, or an Azure Firewall DNAT rule still lets the
    source in until the grant's end), as the release event of `events` says."""
    if rec.state is not State.REVOKED:
        return None
    if rec.released_at is None:
        detail = (
            "the broker has not removed the JIT allow rules yet: the source may still get in"
            if rec.was_live
            else "revoked while activating: Azure may still apply the initiate, and the "
            "broker removes its JIT allow rule once Azure's history says it did (or finds "
            "none to remove); until then the source may get in"
        )
        return {"status": "pending", "at": None, "removed": [], "detail": detail}
    done = next(
        (e for e in reversed(events) if e["request_id"] == rec.id and e["action"] == RELEASE),
        None,
    )
    data = dict(done["data"]) if done else {}
    removed = list(data.get("removed", []))
    if done is None:
        status, detail = "unknown", "the release event is not at hand: see the audit log"
    elif data.get("error"):
        status, detail = "failed", str(data["error"].get("message", done["reason"]))
    elif data.get("firewall"):
        status, detail = "failed", str(data["firewall"])
    else:
        status, detail = ("done" if removed else "not_needed"), str(done["reason"])
    return {"status": status, "at": utc(rec.released_at), "removed": removed, "detail": detail}


def request_json(
    rec: RequestRecord,
    who: Principal,
    access: Access,
    events: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A request as the API and the pages show it; `events` (its audit trail) say what a
    revoke did in Azure, and why a request failed."""
    seg = segments(rec.vm_id)
    roles = access.roles(rec, who)
    return {
        "id": rec.id,
        "state": rec.state.value,
        "requester": rec.requester,
        "vm": name_of(rec.vm_id),
        "resource_group": seg.get("resourcegroups"),
        "subscription": seg.get("subscriptions"),
        "vm_id": rec.vm_id,
        "ports": list(rec.ports),
        "source": rec.source,
        "duration": format_iso_duration(rec.duration),
        "reason": rec.reason,
        "ticket": rec.ticket,
        "break_glass": rec.break_glass,
        "outcome": rec.outcome,
        "rules": list(rec.rules),
        "min_approvals": rec.min_approvals,
        "approvers": [list(s) for s in rec.approver_sets],
        "approved_by": list(rec.approved_by),
        "created_at": utc(rec.created_at),
        "updated_at": utc(rec.updated_at),
        "pending_until": utc(rec.pending_until),
        "ends_at": utc(rec.ends_at),
        "extending_to": utc(rec.extend_to),  # decided, not yet granted by Azure
        "your_roles": sorted(r.value for r in roles),
        "actions": actions_for(rec, who, roles),
        # while active, where to connect and the verify proof (None otherwise): the requester's
        # `--via-broker` connects with it, holding no Azure right to read the VM
        "access": dict(rec.access) if rec.access and rec.state is State.ACTIVE else None,
        "release": release_of(rec, events),
        "failure": failure_of(rec, events),
    }


def failure_of(rec: RequestRecord, events: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Why a request failed (None: it did not), as its `fail` event of `events` says: Azure's
    refusal or error in words, and what to do about it."""
    if rec.state is not State.FAILED:
        return None
    failed = next(
        (
            e
            for e in reversed(events)
            if e["request_id"] == rec.id and e["action"] == Action.FAIL.value
        ),
        None,
    )
    if failed is None:
        return {"reason": "the failure's event is not at hand: see the audit log", "hint": ""}
    error = dict(dict(failed["data"]).get("azure", {}).get("error") or {})
    return {
        "reason": str(error.get("message") or failed["reason"] or "Azure gave no reason"),
        "hint": str(error.get("hint") or ""),
    }


WOULD = {
    Outcome.DENIED: "refused",
    Outcome.AUTO_APPROVED: "approved",
    Outcome.BREAK_GLASS_ALLOWED: "approved",
    Outcome.NEEDS_APPROVAL: "pending",
}


def decision_json(decision: Decision, vm_id: str, requester: str) -> dict[str, Any]:
    """What would happen to a request (`broker explain`): refused, bad input (its problems),
    approved at once, or pending until approvers the rules name approve it."""
    would = WOULD[decision.outcome]
    if would != "refused" and decision.problems:
        would = "bad_input"
    return {
        "requester": requester,
        "vm_id": vm_id,
        "would": would,
        "outcome": decision.outcome.value,
        "rules": list(decision.rules),
        "reasons": list(decision.reasons),
        "problems": list(decision.problems),
        "approvers": [list(s) for s in decision.approver_sets],
        "min_approvals": decision.min_approvals,
        "max_duration": format_iso_duration(decision.max_duration)
        if decision.max_duration
        else None,
        "pending_ttl": format_iso_duration(decision.pending_ttl),
        "loud": decision.loud,
    }
