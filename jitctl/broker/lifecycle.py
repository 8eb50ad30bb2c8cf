"""The life of an access request: states, the transitions between them, and who may make each.

Pure: the store turns each transition into one conditional UPDATE and one audit event.

    (new) --request--> pending --approve--> approved --claim--> activating --activate--> active
            (auto/break-glass: straight to approved)                 |                     |
    pending --review--> pending (an approval below minApprovals)    +--fail--> failed     |
    pending --deny--> denied      pending --expire_pending--> pending_expired             |
    pending|approved --cancel--> cancelled                active --expire--> expired      |
    activating --reclaim--> activating (a broker died mid-initiate)   active --revoke--> revoked
    activating --expire--> expired (Azure never applied it in its window)
    activating --revoke--> revoked (no longer wanted while Azure applies it)
    active --extend--> active

`activating` exists because the initiate is a call to Azure that can fail or be cut: the
claim (system, one replica only) is committed before the call, so no two replicas send it; a
claim left stale by a dead broker is taken again by `reclaim`, whose holder reads the JIT
policy's history before sending again. Once Azure took the initiate, a request whose access is
not live yet stays `activating` (Azure promises no time to apply it): rounds keep checking
until it is live (active), Azure's history says Failed (failed), or its end passes (expired).
`failed` is final: Azure refused the initiate or could not apply it; the event holds Azure's
answer. Revoking an `activating` request does not wait for Azure: the worker holding its claim
gives it up (never moving it back to active), and the release waits for Azure's history to say
whether the initiate was applied (then its allow rule is removed) or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from jitctl.broker.errors import NotPermitted, SelfApproval, WrongState


class State(str, Enum):
    PENDING = "pending"
    APPROVED = "approved"
    ACTIVATING = "activating"
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"
    DENIED = "denied"
    CANCELLED = "cancelled"
    PENDING_EXPIRED = "pending_expired"
    FAILED = "failed"


class Role(str, Enum):
    REQUESTER = "requester"  # the person who asked, for their own request
    APPROVER = "approver"  # a person the rules name for this request; never its requester
    ADMIN = "admin"  # the broker's operators
    SYSTEM = "system"  # the broker itself: auto-approval, initiate, sweeps


class Action(str, Enum):
    REQUEST = "request"
    REVIEW = "review"
    APPROVE = "approve"
    DENY = "deny"
    CANCEL = "cancel"
    EXPIRE_PENDING = "expire_pending"
    CLAIM = "claim"
    RECLAIM = "reclaim"
    ACTIVATE = "activate"
    FAIL = "fail"
    EXPIRE = "expire"
    REVOKE = "revoke"
    EXTEND = "extend"


FINAL = frozenset(
    {
        State.EXPIRED,
        State.REVOKED,
        State.DENIED,
        State.CANCELLED,
        State.PENDING_EXPIRED,
        State.FAILED,
    }
)

R, A, D, S = Role.REQUESTER, Role.APPROVER, Role.ADMIN, Role.SYSTEM


@dataclass(frozen=True)
class Transition:
    action: Action
    source: State | None  # None: the request does not exist yet
    target: State
    roles: frozenset[Role]


def _t(action: Action, source: State | None, target: State, *roles: Role) -> Transition:
    return Transition(action, source, target, frozenset(roles))


TRANSITIONS: tuple[Transition, ...] = (
    _t(Action.REQUEST, None, State.PENDING, R),
    # auto-approved or break-glass: the rules decided at once; the event says which rule
    _t(Action.REQUEST, None, State.APPROVED, R),
    _t(Action.REVIEW, State.PENDING, State.PENDING, A),
    _t(Action.APPROVE, State.PENDING, State.APPROVED, A),
    _t(Action.DENY, State.PENDING, State.DENIED, A, D),
    _t(Action.CANCEL, State.PENDING, State.CANCELLED, R, D),
    _t(Action.CANCEL, State.APPROVED, State.CANCELLED, R, D),
    _t(Action.EXPIRE_PENDING, State.PENDING, State.PENDING_EXPIRED, S),
    _t(Action.CLAIM, State.APPROVED, State.ACTIVATING, S),
    _t(Action.RECLAIM, State.ACTIVATING, State.ACTIVATING, S),
    _t(Action.ACTIVATE, State.ACTIVATING, State.ACTIVE, S),
    _t(Action.FAIL, State.ACTIVATING, State.FAILED, S),
    # sent, never live in its window: Azure applied nothing before its end, or ended it first
    _t(Action.EXPIRE, State.ACTIVATING, State.EXPIRED, S),
    _t(Action.EXPIRE, State.ACTIVE, State.EXPIRED, S),
    # Azure has no revoke call: the broker removes the JIT allow rule (network write rights);
    # connections already open survive until they close.
    _t(Action.REVOKE, State.ACTIVE, State.REVOKED, R, A, D),
    # Azure may still apply an initiate sent before: the release waits for its history to say
    _t(Action.REVOKE, State.ACTIVATING, State.REVOKED, R, A, D),
    _t(Action.EXTEND, State.ACTIVE, State.ACTIVE, A, D),
)


# What people do to a request (the system's moves are the worker's); `review` is an approval
# below minApprovals, which people ask for as `approve`.
PEOPLE_ACTIONS = (Action.APPROVE, Action.DENY, Action.CANCEL, Action.REVOKE, Action.EXTEND)
SAID_AS = {Action.REVIEW: Action.APPROVE}


def roles_on(roles: frozenset[Role] | set[Role], own: bool) -> set[Role]:
    """The roles an actor holds on one request: on their own, the requester role alone (no
    approving, denying or extending one's own, admins included; cancel and revoke stay theirs
    as its requester); on another's, every role but requester."""
    if own:
        return {Role.REQUESTER}
    return {r for r in roles if r is not Role.REQUESTER}


# what nobody does to their own request: the words, and whom to ask instead
SELF = {
    Action.APPROVE: (
        "Nobody approves their own request.",
        "Ask one of the approvers the rules name.",
    ),
    Action.DENY: (
        "Nobody denies their own request, admins included.",
        "Cancel it instead (jitctl broker cancel ID).",
    ),
    Action.EXTEND: (
        "Nobody extends their own request, admins included.",
        "Ask one of its approvers or another admin to extend it.",
    ),
}


def held_roles(roles: frozenset[Role] | set[Role], own: bool, action: Action) -> set[Role]:
    """The roles an actor holds for `action` on one request (roles_on); approving, denying
    or extending one's own is SelfApproval, whatever roles the actor holds elsewhere."""
    if own and action in SELF:
        raise SelfApproval(*SELF[action])
    return roles_on(roles, own)


def find(action: Action, source: State | None, target: State | None = None) -> list[Transition]:
    return [
        t
        for t in TRANSITIONS
        if t.action is action and t.source is source and (target is None or t.target is target)
    ]


def check(
    action: Action,
    source: State | None,
    roles: frozenset[Role] | set[Role],
    target: State | None = None,
    verb: Action | None = None,
) -> Transition:
    """The transition `action` makes from `source` for an actor holding `roles`, or the error
    that says why not (WrongState: refused; NotPermitted: forbidden). `verb`: the action as
    the person asked it (approve, for a review)."""
    found = find(action, source, target)
    if not found:
        where = f"it is {source.value}" if source else "it does not exist yet"
        raise WrongState(
            f"Cannot {(verb or action).value} this request: {where}.", _what_now(source, roles)
        )
    chosen = next((t for t in found if t.roles & set(roles)), None)
    if chosen is None:
        who = " or ".join(sorted(r.value for r in found[0].roles))
        raise NotPermitted(
            f"Only the {who} may {action.value} a {source.value if source else 'new'} request.",
            "Ask someone who holds that role.",
        )
    return chosen


def _what_now(source: State | None, roles: frozenset[Role] | set[Role]) -> str:
    """The hint after a refusal: what this actor may do to the request now, in the words
    they use (never the worker's moves)."""
    if source is None:
        return "Make the request first."
    mine = [a.value for a in people_actions(source, roles)]
    if mine:
        return f"What you may do with it now: {', '.join(mine)}."
    if source in FINAL:
        return "Nothing can happen to it now: it is closed."
    return "Nothing is yours to do with it now."


def people_actions(source: State, roles: frozenset[Role] | set[Role]) -> tuple[Action, ...]:
    """What people holding `roles` may do to a request in `source`, as they ask for it."""
    allowed = {SAID_AS.get(a, a) for a in allowed_actions(source, roles)}
    return tuple(a for a in PEOPLE_ACTIONS if a in allowed)


def allowed_actions(source: State, roles: frozenset[Role] | set[Role]) -> tuple[Action, ...]:
    """What an actor may do next (the pages show these buttons, and no others)."""
    return tuple(
        dict.fromkeys(t.action for t in TRANSITIONS if t.source is source and t.roles & set(roles))
    )
