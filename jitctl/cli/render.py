"""The one renderer: results to JSON (a contract, tested) or to tables for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jitctl.cli.shapes import jsonable, protocol_name, table, when
from jitctl.ids import name_of
from jitctl.parsing import format_human_duration
from jitctl.textsafe import printable


def to_json(obj: Any, now: datetime | None = None) -> str:
    return json.dumps(jsonable(obj, now), indent=2)


# --- per result ----------------------------------------------------------------------------


def _policy_head(policy_id: str, subscription: bool = False) -> str:
    seg = policy_id.split("/")
    where = f", subscription {seg[2]}" if subscription else ""
    return f"JIT policy {seg[-1]} ({seg[4]}, {seg[-3]}{where})"


def _several_subscriptions(policies: Any) -> bool:
    return len({p.policy_id.split("/")[2].lower() for p in policies}) > 1


def _change_lines(changes: Any) -> list[str]:
    lines = []
    for c in changes:
        mark = {"add": "+", "change": "~", "remove": "-"}[c.action]
        rule = c.after or c.before
        line = (
            f"  {mark} {name_of(c.vm_id)} port {c.port}/{protocol_name(rule.protocol)} "
            f"from {','.join(rule.sources)} max {format_human_duration(rule.max_duration)}"
        )
        if c.action == "change":
            b = c.before
            line += (
                f" (was {protocol_name(b.protocol)} from {','.join(b.sources)} "
                f"max {format_human_duration(b.max_duration)})"
            )
        lines.append(line)
    return lines


def policy_changes(result: Any) -> str:
    lines = []
    several = _several_subscriptions(result.policies)
    for pol in result.policies:
        lines.append(
            f"{_policy_head(pol.policy_id, several)}: {pol.action}"
            + (f" after {pol.attempts} writes" if pol.attempts > 1 else "")
        )
        if not pol.changes:
            lines.append("  no change: nothing written")
        lines.extend(_change_lines(pol.changes))
    if getattr(result, "dry_run", False):
        lines.append("dry run: nothing was written")
    return "\n".join(lines)


def plan_text(plan: Any) -> str:
    lines = []
    several = _several_subscriptions([p for p in plan.policies if p.changes])
    for pol in plan.policies:
        if not pol.changes:
            continue
        counts = {a: sum(c.action == a for c in pol.changes) for a in ("add", "change", "remove")}
        verb = "" if pol.exists else ", new policy"
        lines.append(
            f"{_policy_head(pol.policy_id, several)}: {counts['add']} to add, {counts['change']} to "
            f"change, {counts['remove']} to remove{verb}"
        )
        lines.extend(_change_lines(pol.changes))
    if plan.unprotected:
        lines.append("Cannot protect (no NSG on the NIC or subnet), skipped:")
        lines.extend(f"  {name_of(u.vm_id)} (matched at {u.origin})" for u in plan.unprotected)
    if plan.gone:
        lines.append("In a JIT policy but deleted (removed: Azure refuses writes otherwise):")
        lines.extend(f"  {name_of(v)}" for v in plan.gone)
    if plan.unmanaged and not plan.prune:
        lines.append("In a JIT policy but matched by no file (left alone; --prune removes them):")
        lines.extend(f"  {name_of(v)}" for v in plan.unmanaged)
    if plan.out_of_scope:
        lines.append(
            "In a JIT policy of a resource group no file covers (left alone, even by --prune):"
        )
        lines.extend(f"  {name_of(v)}" for v in plan.out_of_scope)
    total = sum(len(p.changes) for p in plan.policies)
    policies = sum(1 for p in plan.policies if p.changes)
    rules = plan.approvals
    lines.extend(_approval_lines(rules))
    if rules is None:
        lines.append(
            f"Plan: {total} port change(s) in {policies} JIT policy(ies)."
            if total
            else "No changes. The JIT policies match the files."
        )
    elif total or rules.changes:
        lines.append(
            f"Plan: {total} port change(s) in {policies} JIT policy(ies), "
            f"{len(rules.changes)} approval rule change(s)."
        )
    else:
        lines.append(
            f"No changes. The JIT policies and the approvals of {rules.baseline} match the files."
        )
    return "\n".join(lines)


def _value(v: Any) -> str:
    return "(unset)" if v is None else json.dumps(v) if not isinstance(v, str) else v


def _approval_lines(rules: Any) -> list[str]:
    """Per entry (+ added, ~ changed, - removed), each key that changes: old -> new."""
    if rules is None or not rules.changes:
        return []
    lines = [f"Approval rules against {rules.baseline}:"]
    for c in rules.changes:
        mark = {"add": "+", "change": "~", "remove": "-"}[c.action]
        lines.append(f"  {mark} {c.entry} ({c.origin})")
        for k in c.keys:
            text = {
                "add": _value(k.after),
                "remove": _value(k.before),
                "change": f"{_value(k.before)} -> {_value(k.after)}",
            }[c.action]
            lines.append(f"      {k.key}: {text}")
    return lines


def apply_text(result: Any) -> str:
    if not result.policies:
        return "No changes. Nothing written."
    return policy_changes(result) + f"\nApplied with {result.writes} write(s)."


def request_result(result: Any, now: datetime) -> str:
    lines = [
        f"Requested JIT access to {result.vm_name} (policy {name_of(result.policy_id)})"
        + (f" as {result.requestor}" if result.requestor else "")
    ]
    for p in result.ports:
        via = f" (Azure Firewall port {p.mapped_port})" if p.mapped_port else ""
        lines.append(
            f"  port {p.number}{via} from {p.source} until {when(p.end_time, now)}: {p.status}"
        )
    return "\n".join(lines)


def _named(line: str, name: str, limit: int) -> str:
    """`line` with `name` in its `{}`: cut in the middle (whole in JSON) to what the line
    leaves, between 16 characters and NAME_LIMIT."""
    from jitctl.cli.tables import NAME_LIMIT, shorten_middle

    room = limit - len(line) + 2
    return line.format(shorten_middle(name, max(16, min(NAME_LIMIT, room))))


def _rule_lines(v: Any, limit: int) -> list[str]:
    where = f"{v.level} NSG {name_of(v.nsg_id)}" if v.nsg_id else f"{v.level}: no NSG"
    if v.rule is None:
        return [
            f"  {where}: allow (nothing to evaluate)"
            if v.allowed
            else f"  {where}: no rule matched"
        ]
    kind = ("JIT " if v.is_jit else "") + ("allow" if v.allowed else "deny")
    where = where.replace("{", "{{").replace("}", "}}")
    lines = [_named(f"  {where}: {kind} rule {{}} priority {v.rule.priority}", v.rule.name, limit)]
    if v.preempted_jit_deny is not None:
        d = v.preempted_jit_deny
        lines.append(
            _named(f"    (precedes the JIT deny rule {{}} priority {d.priority})", d.name, limit)
        )
    return lines


def verify_result(result: Any, limit: int | None = None) -> str:
    """Verdict lines fitted to `limit` columns (default: the width): rule names cut in the
    middle as far as the line needs, then lines wrapped, the rest indented."""
    from jitctl.cli.tables import fit_line, width

    limit = limit or width()
    lines = []
    for p in result.ports:
        fw = p.firewall
        verdict = "EFFECTIVE" if p.effective else "NOT EFFECTIVE"
        if fw is not None and not fw.verified and p.effective:
            verdict = "GRANTED, NOT VERIFIED"
        via = f"Azure Firewall {fw.address} -> " if fw else ""
        lines.append(
            f"{verdict}: {result.source_ip} -> {via}{result.vm_name} {result.private_ip}:{p.port}/tcp"
        )
        if fw is not None:  # the DNAT rule decides; the NSGs see the firewall's address
            lines.append(
                f"  Azure Firewall {name_of(fw.firewall_id)}: "
                + (
                    f"{'JIT ' if fw.by_jit else ''}DNAT rule {fw.rule.name} "
                    f"(collection {fw.rule.collection}), port {fw.mapped_port}"
                    if fw.rule
                    else "no DNAT rule for this source and port"
                )
                if fw.firewall_id
                else f"  Azure Firewall {fw.address}: cannot be read ({fw.unseen}); "
                + (
                    f"Azure reports the grant Initiated, port {fw.mapped_port}"
                    if fw.grant
                    else "Azure reports no Initiated grant for this source and port"
                )
            )
            lines.append(
                "  NSGs not judged: behind the firewall they see its address (SNAT), not the source"
            )
            continue
        lines.extend(line for v in p.evaluation.levels for line in _rule_lines(v, limit))
        lines.extend(f"  warning: {w}" for w in p.evaluation.warnings)
    return "\n".join(fitted for line in lines for fitted in fit_line(line, limit))


@dataclass(frozen=True)
class RequestWait:
    """`request --wait`: the grant, then the proof that it is live (one document)."""

    request: Any  # jitctl.services.access.RequestResult
    verification: Any  # jitctl.services.verify.VerifyResult


def request_wait(result: RequestWait, now: datetime) -> str:
    return request_result(result.request, now) + "\n" + verify_result(result.verification)


def connect_result(result: Any, now: datetime) -> str:
    r = result.ready
    lines = [
        f"{r.vm_name}: {result.protocol} to {r.connect_host}:{r.connect_port} ({r.via} address), "
        f"access for {r.source} until {when(r.end_time, now)}"
        + (" (reused grant)" if r.reused else "")
    ]
    if result.rdp_file:
        lines.append(f"  rdp file: {result.rdp_file}")
    if result.command:
        lines.append(
            ("  started: " if result.launched else "  command: ") + " ".join(result.command)
        )
    return "\n".join(lines)


def doctor_text(result: Any) -> str:
    """One line per check: ok, FAIL (JIT requests need it) or warn (only admins need it)."""
    lines = []
    for c in result.checks:
        mark = "ok  " if c.ok else ("FAIL" if c.required else "warn")
        lines.append(
            f"{mark} {c.name}: {c.detail}" + (f". {c.hint}" if c.hint and not c.ok else "")
        )
    return "\n".join(lines)


def _table_renderers() -> dict[type, Callable[[Any, datetime], str]]:
    """Table renderers keyed by result type. The plan's module (it loads pydantic) is consulted
    only when it is already loaded, which it is whenever the result is a Plan."""
    from jitctl.cli.grant_tables import grant_list, policy_list
    from jitctl.launch import ConnectResult
    from jitctl.services.access import RequestResult
    from jitctl.services.doctor import DoctorResult
    from jitctl.services.policies import PolicyChangeResult
    from jitctl.services.query import GrantList, PolicyList
    from jitctl.services.verify import VerifyResult

    out: dict[type, Callable[[Any, datetime], str]] = {
        PolicyChangeResult: lambda r, now: policy_changes(r),
        PolicyList: policy_list,
        RequestResult: request_result,
        VerifyResult: lambda r, now: verify_result(r),
        GrantList: grant_list,
        ConnectResult: connect_result,
        RequestWait: request_wait,
        DoctorResult: lambda r, now: doctor_text(r),
    }
    audit = sys.modules.get("jitctl.services.audit")
    if audit is not None:
        from jitctl.cli.reports import audit_table

        out[audit.AuditResult] = audit_table
    plan = sys.modules.get("jitctl.services.plan")
    if plan is not None:
        out[plan.Plan] = lambda r, now: plan_text(r)
        out[plan.ApplyResult] = lambda r, now: apply_text(r)
    return out


def safe_lines(text: str) -> str:
    """Every line with its control characters escaped (our own newlines stay)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def render(result: Any, output: str, now: datetime) -> str:
    if output != "table":
        return to_json(result, now)
    renderer = _table_renderers().get(type(result))
    return safe_lines(renderer(result, now) if renderer else to_json(result, now))


def render_json(obj: Any) -> str:
    return to_json(obj)


def nsg_snapshot(snap: Any) -> str:
    from jitctl.cli.tables import width

    rows = [[str(p), n, a, s, ports] for p, n, a, s, ports in snap.rules]
    header = ["PRIORITY", "NAME", "ACCESS", "SOURCE", "PORTS"]
    return f"NSG {name_of(snap.nsg_id)}\n" + "\n".join(
        "  " + line
        for line in table(rows, header, width() - 2).splitlines()  # indented
    )


def emit_step(step: Any, now: datetime) -> str:
    head = f"== {step.title}  [{step.arm_calls} ARM calls, {step.seconds:.1f}s]"
    body = step.result
    if isinstance(body, list):
        text = "\n".join(nsg_snapshot(s) for s in body)
    else:
        text = render(body, "table", now)
    note = f"   {step.note}\n" if step.note else ""
    return f"{head}\n{note}{text}\n"
