"""The approvals rules: their checking in policy files and their evaluation (pure)."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from jitctl.broker.rules import Ask, Decision, Outcome, Principal, RuleSet, may_approve
from jitctl.cli.commands import cli
from jitctl.policyfile import load_file

SUB = "00000000-0000-0000-0000-000000000001"
HEAD = f"subscriptions: [{SUB}]\ntargets:\n  - resourceGroup: rg-prod\n    names: ['*']\n    ports: [22]\n"
ISSUE = HEAD + textwrap.dedent(
    """\
    approvals:
      - match: {resourceGroup: rg-prod}
        requesters: ["group:engineers"]
        approvers: ["group:ops-leads", "user:lead@contoso.com"]
        minApprovals: 1
        maxDuration: 3h
        pendingTtl: 1h
        reasonRequired: true
        ticketPattern: "^INC[0-9]+$"
        autoApprove: {requesters: ["group:oncall"], maxDuration: 1h}
        breakGlass: {requesters: ["group:sre"]}
      - match: {resourceGroup: rg-prod, tags: {env: pci}}
        deny: {requesters: ["group:contractors"]}
    """
)
MONDAY_10 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)  # a Monday


def vm(name: str = "web1", rg: str = "rg-prod", sub: str = SUB) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"


def rules(tmp_path: Path, text: str = ISSUE) -> RuleSet:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    loaded, problems = load_file(path, "p.yaml")
    assert problems == [] and loaded is not None
    return RuleSet.from_files([loaded])


def ask(upn: str = "ann@contoso.com", *groups: str, **kw: object) -> Ask:
    base: dict[str, object] = {
        "requester": Principal(upn, frozenset(groups)),
        "vm_id": vm(),
        "ports": (22,),
        "duration": timedelta(hours=1),
        "at": MONDAY_10,
        "reason": "deploy hotfix",
        "ticket": "INC42",
    }
    return Ask(**{**base, **kw})  # type: ignore[arg-type]


def test_manual_approval_names_approvers_and_never_the_requester(tmp_path):
    d = rules(tmp_path).evaluate(ask("ann@contoso.com", "engineers", "ops-leads"))
    assert d.outcome is Outcome.NEEDS_APPROVAL
    assert d.rules == ("p.yaml:7 (approvals[0])",)
    assert d.approver_sets == (("group:ops-leads", "user:lead@contoso.com"),)
    assert (d.min_approvals, d.max_duration, d.pending_ttl) == (
        1,
        timedelta(hours=3),
        timedelta(hours=1),
    )
    assert d.problems == ()
    assert d.reasons[-1] == (
        "needs 1 approval(s) from group:ops-leads or user:lead@contoso.com; never from the requester"
    )

    # the requester is in ops-leads, yet cannot approve; user principals match without case
    def can(who: Principal) -> bool:
        return may_approve(d.approver_sets, "ann@contoso.com", who)

    assert not can(Principal("ANN@contoso.com", frozenset({"ops-leads"})))
    assert can(Principal("Lead@Contoso.com"))
    assert can(Principal("bob@contoso.com", frozenset({"OPS-LEADS"})))
    assert not can(Principal("eve@contoso.com", frozenset({"engineers"})))


def test_deny_wins_over_everything_break_glass_included(tmp_path):
    pci = ask(
        "c@contoso.com",
        "engineers",
        "contractors",
        "sre",
        vm_tags=(("Env", "PCI"),),
        break_glass=True,
    )
    d = rules(tmp_path).evaluate(pci)
    assert d.outcome is Outcome.DENIED
    assert d.rules == ("p.yaml:7 (approvals[0])", "p.yaml:17 (approvals[1])")
    assert (
        d.reasons[-1]
        == "denied by p.yaml:17 (approvals[1]): user:c@contoso.com matches deny group:contractors"
    )
    # the same person on a VM without the tag is not denied by that entry
    assert (
        rules(tmp_path).evaluate(ask("c@contoso.com", "engineers", "contractors")).outcome
        is Outcome.NEEDS_APPROVAL
    )


def test_auto_approve_within_its_limits_else_manual(tmp_path):
    rs = rules(tmp_path)
    assert rs.evaluate(ask("o@contoso.com", "oncall")).outcome is Outcome.AUTO_APPROVED
    longer = rs.evaluate(ask("o@contoso.com", "oncall", duration=timedelta(hours=2)))
    assert longer.outcome is Outcome.NEEDS_APPROVAL
    assert (
        "not auto-approved by p.yaml:7 (approvals[0]): 2h is over autoApprove.maxDuration 1h"
        in longer.reasons
    )


def test_break_glass_only_for_its_requesters_and_needs_a_reason(tmp_path):
    rs = rules(tmp_path)
    d = rs.evaluate(ask("s@contoso.com", "sre", break_glass=True))
    assert (d.outcome, d.loud) == (Outcome.BREAK_GLASS_ALLOWED, True)
    d = rs.evaluate(ask("e@contoso.com", "engineers", break_glass=True))
    assert d.outcome is Outcome.DENIED
    assert (
        d.reasons[-1]
        == "denied: user:e@contoso.com may not break glass under p.yaml:7 (approvals[0])"
    )
    no_reason = rs.evaluate(ask("s@contoso.com", "sre", break_glass=True, reason=" "))
    assert no_reason.problems == ("a reason is required by p.yaml:7 (approvals[0])",)


def test_input_problems_are_bad_input(tmp_path):
    d = rules(tmp_path).evaluate(
        ask("e@contoso.com", "engineers", reason=None, ticket="inc42 ", duration=timedelta(hours=4))
    )
    assert d.problems == (
        "a reason is required by p.yaml:7 (approvals[0])",
        "ticket 'inc42 ' does not match ^INC[0-9]+$ (p.yaml:7 (approvals[0]))",
        "duration 4h is over the rules' maximum 3h",
    )
    assert rules(tmp_path).evaluate(ask("e@contoso.com", "engineers", ticket=None)).problems == (
        "a ticket is required by p.yaml:7 (approvals[0]) (pattern ^INC[0-9]+$)",
    )


def test_unruled_vm_and_unlisted_requester_are_denied(tmp_path):
    rs = rules(tmp_path)
    d = rs.evaluate(ask("e@contoso.com", "engineers", vm_id=vm(rg="rg-dev")))
    assert (d.outcome, d.rules) == (Outcome.DENIED, ())
    assert d.reasons == (
        "no approvals rule matches VM web1 in rg-dev: the broker grants nothing unruled",
    )
    d = rs.evaluate(ask("x@contoso.com", "marketing"))
    assert (
        d.reasons[-1]
        == "denied: user:x@contoso.com is not among the requesters of p.yaml:7 (approvals[0])"
    )
    # another subscription than the file's is not matched either
    assert (
        rs.evaluate(ask("e@contoso.com", "engineers", vm_id=vm(sub=SUB.replace("1", "2")))).rules
        == ()
    )


def test_most_restrictive_entry_wins(tmp_path):
    text = HEAD + textwrap.dedent(
        """\
        approvals:
          - match: {resourceGroup: rg-prod}
            approvers: ["group:ops"]
            maxDuration: 3h
            pendingTtl: 2h
            autoApprove: {maxDuration: 2h}
          - name: db servers
            match: {names: ["db*"]}
            approvers: ["group:dba"]
            minApprovals: 2
            maxDuration: 1h
            pendingTtl: 30m
        """
    )
    rs = rules(tmp_path, text)
    web = rs.evaluate(ask("e@contoso.com"))
    assert web.outcome is Outcome.AUTO_APPROVED
    db = rs.evaluate(ask("e@contoso.com", vm_id=vm("db1")))
    assert db.outcome is Outcome.NEEDS_APPROVAL  # the db entry has no autoApprove
    assert (db.min_approvals, db.max_duration, db.pending_ttl) == (
        2,
        timedelta(hours=1),
        timedelta(minutes=30),
    )
    assert db.approver_sets == (("group:ops",), ("group:dba",))
    assert db.rules == ("p.yaml:7 (approvals[0])", "p.yaml:12 (db servers)")
    assert not may_approve(
        db.approver_sets, "e@contoso.com", Principal("o@contoso.com", frozenset({"ops"}))
    )
    assert may_approve(
        db.approver_sets, "e@contoso.com", Principal("o@contoso.com", frozenset({"ops", "dba"}))
    )


@pytest.mark.parametrize(
    ("at", "ports", "ticket", "outcome", "why"),
    [
        (MONDAY_10, (22,), "CHG1", Outcome.AUTO_APPROVED, None),
        (
            MONDAY_10.replace(hour=17, minute=30),
            (22,),
            "CHG1",
            Outcome.NEEDS_APPROVAL,
            "18:30 Europe/Paris is outside autoApprove.hours 08:00-18:00",
        ),
        (
            MONDAY_10 + timedelta(days=5),
            (22,),
            "CHG1",
            Outcome.NEEDS_APPROVAL,
            "sat is not one of autoApprove.days ['mon', 'tue', 'wed', 'thu', 'fri']",
        ),
        (
            MONDAY_10,
            (22, 3389),
            "CHG1",
            Outcome.NEEDS_APPROVAL,
            "port(s) [3389] not in autoApprove.ports [22]",
        ),
        (
            MONDAY_10,
            (22,),
            "INC1",
            Outcome.NEEDS_APPROVAL,
            "the ticket does not match autoApprove.ticketPattern CHG[0-9]+",
        ),
    ],
)
def test_auto_approve_conditions(tmp_path, at, ports, ticket, outcome, why):
    text = HEAD + textwrap.dedent(
        f"""\
        approvals:
          - match: {{ids: ["{vm().upper()}"]}}
            approvers: ["user:lead@contoso.com"]
            autoApprove:
              ports: [22]
              hours: "08:00-18:00"
              days: [mon, tue, wed, thu, fri]
              timezone: Europe/Paris
              ticketPattern: "CHG[0-9]+"
        """
    )
    d: Decision = rules(tmp_path, text).evaluate(ask(at=at, ports=ports, ticket=ticket))
    assert d.outcome is outcome
    assert why is None or f"not auto-approved by p.yaml:7 (approvals[0]): {why}" in d.reasons


def test_hours_that_wrap_midnight(tmp_path):
    text = HEAD + 'approvals:\n  - autoApprove: {hours: "22:00-06:00"}\n    approvers: ["user:a"]\n'
    rs = rules(tmp_path, text)
    assert rs.evaluate(ask(at=MONDAY_10.replace(hour=23))).outcome is Outcome.AUTO_APPROVED
    assert (
        rs.evaluate(ask(at=MONDAY_10.replace(hour=5, minute=59))).outcome is Outcome.AUTO_APPROVED
    )
    assert rs.evaluate(ask(at=MONDAY_10.replace(hour=6))).outcome is Outcome.NEEDS_APPROVAL


def test_an_entry_without_approvers_refuses_what_its_auto_approve_does_not_take(tmp_path):
    text = HEAD + "approvals:\n  - autoApprove: {maxDuration: 1h}\n"
    rs = rules(tmp_path, text)
    assert rs.evaluate(ask()).outcome is Outcome.AUTO_APPROVED
    d = rs.evaluate(ask(duration=timedelta(hours=2)))
    assert d.outcome is Outcome.DENIED
    assert (
        d.reasons[-1]
        == "denied: p.yaml:7 (approvals[0]) names no approvers and its autoApprove does not hold"
    )


def test_malformed_approvals_are_reported_file_line_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        HEAD
        + textwrap.dedent(
            """\
            approvals:
              - match: {resourceGroup: rg-prod, colour: red}
                approvers: [ops-leads]
              - approvers: ["user:a@x"]
                minApprovals: 2
              - match: {resourceGroup: rg-prod}
                requesters: ["group:eng"]
              - approvers: ["group:g"]
                ticketPattern: "INC[0-9"
                pendingTtl: 30d
                autoApprove: {hours: "9-17", timezone: Mars/Olympus, days: [someday]}
            """
        )
    )
    _, problems = load_file(path, "bad.yaml")
    assert [str(p) for p in problems] == [
        "bad.yaml:7: approvals[0].match.colour: Extra inputs are not permitted",
        "bad.yaml:8: approvals[0].approvers: 'ops-leads' is not a principal: write 'group:<id or name>' or 'user:<upn>'",
        "bad.yaml:9: approvals[1]: minApprovals 2 can never be met: 'approvers' names 1 user(s) and no group",
        "bad.yaml:11: approvals[2]: say what the entry does: give 'approvers', 'autoApprove', 'breakGlass' or 'deny'",
        "bad.yaml:14: approvals[3].ticketPattern: 'INC[0-9' is not a regular expression: unterminated character set at position 3",
        "bad.yaml:15: approvals[3].pendingTtl: '30d' is not a duration. Use 90m, 1h, 1h30m or ISO 8601 such as PT1H.",
        "bad.yaml:16: approvals[3].autoApprove.hours: '9-17' is not a time window: write HH:MM-HH:MM, e.g. 08:00-18:00",
        "bad.yaml:16: approvals[3].autoApprove.days: 'someday' is not a day: use mon, tue, wed, thu, fri, sat, sun",
        "bad.yaml:16: approvals[3].autoApprove.timezone: 'Mars/Olympus' is not an IANA time zone, e.g. Europe/Paris",
    ]


def test_policy_validate_accepts_approvals_and_rejects_bad_ones(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    (good / "p.yaml").write_text(ISSUE)
    r = CliRunner().invoke(cli, ["policy", "validate", str(good)])
    assert (r.exit_code, r.stdout) == (0, "1 policy file(s) valid.\n")
    (good / "p.yaml").write_text(ISSUE.replace("minApprovals: 1", "minApprovals: 0"))
    r = CliRunner().invoke(cli, ["policy", "validate", str(good / "p.yaml")])
    assert r.exit_code == 2
    assert r.stdout.replace(str(good) + "/", "") == (
        "p.yaml:10: approvals[0].minApprovals: Input should be greater than or equal to 1\n"
    )


def test_policy_validate_with_approvals_loads_no_database_code(tmp_path):
    from tests.test_lazy_commands import loaded_after

    (tmp_path / "p.yaml").write_text(ISSUE)
    modules, out = loaded_after(["policy", "validate", str(tmp_path / "p.yaml")])
    assert out.strip() == "1 policy file(s) valid."
    assert "jitctl.approvalschema" in modules
    assert not [m for m in modules if m.startswith(("sqlalchemy", "alembic", "psycopg"))]


def test_auto_approval_takes_one_address_unless_the_rule_allows_a_range(tmp_path):
    """No person sees an auto-approved request: by default it opens the port for one address;
    `autoApprove.widestSource` and `sourcePrefixes` allow ranges, and where they lie."""
    rs = rules(tmp_path)
    oncall = ("o@contoso.com", "oncall")
    assert rs.evaluate(ask(*oncall, source="203.0.113.7")).outcome is Outcome.AUTO_APPROVED
    wide = rs.evaluate(ask(*oncall, source="128.0.0.0/1"))
    assert wide.outcome is Outcome.NEEDS_APPROVAL and not wide.problems
    assert (
        "not auto-approved by p.yaml:7 (approvals[0]): source 128.0.0.0/1 is wider than /32 "
        "(autoApprove.widestSource, default: one address)"
    ) in wide.reasons
    ranged = ISSUE.replace(
        "maxDuration: 1h}",
        'maxDuration: 1h, widestSource: /28, sourcePrefixes: ["203.0.113.0/24"]}',
    )
    rs = rules(tmp_path, ranged)
    assert rs.evaluate(ask(*oncall, source="203.0.113.16/28")).outcome is Outcome.AUTO_APPROVED
    d = rs.evaluate(ask(*oncall, source="203.0.113.0/27"))
    assert d.outcome is Outcome.NEEDS_APPROVAL
    assert d.reasons[-2].endswith(
        "source 203.0.113.0/27 is wider than /28 (autoApprove.widestSource)"
    )
    d = rs.evaluate(ask(*oncall, source="198.51.100.7"))
    assert d.outcome is Outcome.NEEDS_APPROVAL
    assert d.reasons[-2].endswith(
        "source 198.51.100.7 is not within autoApprove.sourcePrefixes ['203.0.113.0/24']"
    )


def test_an_entry_limits_every_requests_source_as_a_problem(tmp_path):
    limited = ISSUE.replace(
        "reasonRequired: true",
        'reasonRequired: true\n    sourcePrefixes: ["198.51.100.0/24"]\n    widestSource: 24',
    )
    rs = rules(tmp_path, limited)
    assert not rs.evaluate(ask("a@contoso.com", "engineers", source="198.51.100.9")).problems
    assert rs.evaluate(ask("a@contoso.com", "engineers", source="10.0.0.0/8")).problems == (
        "source 10.0.0.0/8 is wider than /24 (widestSource of p.yaml:7 (approvals[0]))",
    )
    assert rs.evaluate(ask("a@contoso.com", "engineers", source="203.0.113.7")).problems == (
        "source 203.0.113.7 is not within sourcePrefixes of p.yaml:7 (approvals[0]) "
        "['198.51.100.0/24']",
    )


def test_source_limits_are_checked_in_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        HEAD
        + "approvals:\n  - approvers: ['group:g']\n    widestSource: 33\n"
        + "    sourcePrefixes: [10.0.0.0/33, '2001:db8::/32']\n"
        + "    autoApprove: {widestSource: /0}\n"
    )
    _, problems = load_file(path, "bad.yaml")
    assert [str(p) for p in problems] == [
        "bad.yaml:8: approvals[0].widestSource: '33' is not a prefix length: write /32 (one address) to /1",
        "bad.yaml:9: approvals[0].sourcePrefixes: '10.0.0.0/33' is not an IPv4 address or range such as 203.0.113.0/24",
        "bad.yaml:10: approvals[0].autoApprove.widestSource: '/0' is not a prefix length: write /32 (one address) to /1",
    ]
