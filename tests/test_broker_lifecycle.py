"""The request lifecycle alone: which transitions exist and who may make each."""

from __future__ import annotations

import pytest

from jitctl.broker.errors import NotPermitted, SelfApproval, WrongState
from jitctl.broker.lifecycle import (
    FINAL,
    TRANSITIONS,
    Action,
    Role,
    State,
    allowed_actions,
    check,
    held_roles,
    roles_on,
)
from jitctl.errors import ExitCode

R, A, D, S = Role.REQUESTER, Role.APPROVER, Role.ADMIN, Role.SYSTEM


def test_the_happy_path():
    assert check(Action.REQUEST, None, {R}, State.PENDING).target is State.PENDING
    assert check(Action.REVIEW, State.PENDING, {A}).target is State.PENDING
    assert check(Action.APPROVE, State.PENDING, {A}).target is State.APPROVED
    assert check(Action.CLAIM, State.APPROVED, {S}).target is State.ACTIVATING
    assert check(Action.ACTIVATE, State.ACTIVATING, {S}).target is State.ACTIVE
    assert check(Action.EXPIRE, State.ACTIVE, {S}).target is State.EXPIRED


def test_auto_approved_requests_start_approved():
    assert check(Action.REQUEST, None, {R}, State.APPROVED).target is State.APPROVED


@pytest.mark.parametrize(
    ("action", "state", "role"),
    [
        (Action.APPROVE, State.PENDING, R),  # never one's own request
        (Action.APPROVE, State.PENDING, D),  # admins run the broker; approvers approve
        (Action.DENY, State.PENDING, R),
        (Action.CANCEL, State.PENDING, A),
        (Action.CLAIM, State.APPROVED, D),
        (Action.EXPIRE, State.ACTIVE, A),
        (Action.EXTEND, State.ACTIVE, R),
    ],
)
def test_roles_that_may_not(action, state, role):
    with pytest.raises(NotPermitted) as err:
        check(action, state, {role})
    assert err.value.code is ExitCode.FORBIDDEN


def test_wrong_state_says_what_the_caller_may_do_now_in_their_words():
    with pytest.raises(WrongState) as err:
        check(Action.APPROVE, State.DENIED, {A})
    assert (
        err.value.one_line()
        == "Cannot approve this request: it is denied. Nothing can happen to it now: it is closed."
    )
    assert err.value.code is ExitCode.REFUSED
    with pytest.raises(WrongState) as err:  # an admin: the people's actions, not the worker's
        check(Action.REVOKE, State.PENDING, {D})
    assert err.value.hint == "What you may do with it now: deny, cancel."
    # `broker approve` on an approved request: said as approve (not review); an approver has
    # nothing left to do, an admin may cancel, never claim (the worker's)
    with pytest.raises(WrongState) as err:
        check(Action.REVIEW, State.APPROVED, {A}, verb=Action.APPROVE)
    assert err.value.one_line() == (
        "Cannot approve this request: it is approved. Nothing is yours to do with it now."
    )
    with pytest.raises(WrongState) as err:
        check(Action.REVIEW, State.APPROVED, {A, D}, verb=Action.APPROVE)
    assert err.value.hint == "What you may do with it now: cancel."
    with pytest.raises(WrongState) as err:  # a pending request's approver is offered approve
        check(Action.REVOKE, State.PENDING, {A})
    assert err.value.hint == "What you may do with it now: approve, deny."


def test_on_ones_own_request_only_the_requester_role_counts():
    assert roles_on({R, A, D}, own=True) == {R}
    assert roles_on({R, A, D}, own=False) == {A, D}
    for action in (Action.APPROVE, Action.DENY, Action.EXTEND):
        with pytest.raises(SelfApproval):
            held_roles({R, A, D}, True, action)
    assert held_roles({R, D}, True, Action.CANCEL) == {R}  # an admin cancels their own as requester


def test_final_states_have_no_way_out_and_every_state_is_reachable():
    assert not [t for t in TRANSITIONS if t.source in FINAL]
    reached = {State.PENDING, State.APPROVED}
    for _ in State:
        reached |= {t.target for t in TRANSITIONS if t.source in reached}
    assert reached == set(State)


def test_allowed_actions_are_the_buttons_a_page_shows():
    assert allowed_actions(State.PENDING, {A}) == (Action.REVIEW, Action.APPROVE, Action.DENY)
    assert allowed_actions(State.PENDING, {R}) == (Action.CANCEL,)
    assert allowed_actions(State.ACTIVE, {R}) == (Action.REVOKE,)
    assert allowed_actions(State.ACTIVE, {A, D}) == (Action.REVOKE, Action.EXTEND)
    assert allowed_actions(State.EXPIRED, {A, D, R, S}) == ()


def test_an_activating_request_is_revoked_by_those_who_revoke_an_active_one_not_cancelled():
    """Azure may be applying its initiate: the request is revoked (the release waits for
    Azure), never cancelled (cancelled says no initiate went out)."""
    for roles in ({R}, {A}, {D}):
        assert check(Action.REVOKE, State.ACTIVATING, roles).target is State.REVOKED
    assert allowed_actions(State.ACTIVATING, {R}) == (Action.REVOKE,)
    assert allowed_actions(State.ACTIVATING, {A, D, S})[-1] == Action.REVOKE
    with pytest.raises(NotPermitted):
        check(Action.REVOKE, State.ACTIVATING, {S})
    with pytest.raises(WrongState) as refused:
        check(Action.CANCEL, State.ACTIVATING, {R, D})
    assert refused.value.hint == "What you may do with it now: revoke."


def test_rules_and_lifecycle_are_pure():
    import json
    import subprocess
    import sys

    code = (
        "import sys, json\nimport jitctl.broker.rules, jitctl.broker.lifecycle\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy = ("sqlalchemy", "alembic", "psycopg", "azure", "click", "jitctl.services", "jitctl.cli")
    assert [m for m in json.loads(out.stdout) if m.startswith(heavy)] == []
