"""The broker's answers as text for people (the API's JSON is the -o json document)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from jitctl.cli.shapes import table


def _when(text: str | None, now: datetime | None = None) -> str:
    if not text:
        return "-"
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    shown = at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if now is not None and at > now:
        from jitctl.parsing import format_human_duration

        shown += f" ({format_human_duration(at - now)} left)"
    return shown


def _duration(iso: str) -> str:
    from jitctl.parsing import format_human_duration, parse_iso_duration

    return format_human_duration(parse_iso_duration(iso))


def request_text(doc: dict[str, Any], now: datetime) -> str:
    approvers = " and ".join(" or ".join(s) for s in doc["approvers"]) or "-"
    rows = [
        ["id", doc["id"]],
        ["state", doc["state"]],
        ["requester", doc["requester"]],
        ["vm", f"{doc['vm']} ({doc['resource_group']})"],
        ["ports", ", ".join(str(p) for p in doc["ports"])],
        ["source", doc["source"] or "-"],
        ["duration", _duration(doc["duration"])],
        ["reason", doc["reason"] or "-"],
        ["ticket", doc["ticket"] or "-"],
        ["rules say", doc["outcome"] + (" (break-glass)" if doc["break_glass"] else "")],
        ["approvers", f"{approvers} ({doc['min_approvals']} needed)" if doc["approvers"] else "-"],
        ["approved by", ", ".join(doc["approved_by"]) or "-"],
        ["created", _when(doc["created_at"])],
        *_end_rows(doc, now),
        ["you may", ", ".join(doc["actions"]) or "-"],
    ]
    return table(rows, ["FIELD", "VALUE"])


OPEN = ("pending", "approved", "activating", "active")


def _end_rows(doc: dict[str, Any], now: datetime) -> list[list[str]]:
    """When it ends (time left only while it can still be used), and what a revoke did."""
    state = doc["state"]
    if state == "pending":
        return [["pending until", _when(doc["pending_until"], now)]]
    if state in OPEN:
        return [["ends", _when(doc["ends_at"], now)]]
    if state == "failed" and doc.get("failure"):
        failure = doc["failure"]
        rows = [["failed", failure["reason"]]]
        if failure["hint"]:
            rows.append(["hint", failure["hint"]])
        return rows
    if state != "revoked":
        return [["ended" if state == "expired" else "ends", _when(doc["ends_at"])]]
    return [["revoked", _when(doc["updated_at"])], ["release", release_text(doc["release"])]]


def release_text(release: dict[str, Any] | None) -> str:
    if not release:
        return "-"
    status = release["status"].replace("_", " ")
    removed = f" (removed {', '.join(release['removed'])})" if release["removed"] else ""
    return f"{status}: {release['detail']}{removed}"


def proof_text(proof: dict[str, Any]) -> str:
    """The broker's verify proof, one verdict line per port as `jitctl verify` writes it."""
    lines = []
    for p in proof["ports"]:
        fw = p.get("firewall")
        verdict = "EFFECTIVE" if p["effective"] else "NOT EFFECTIVE"
        if fw and not fw["verified"] and p["effective"]:
            verdict = "GRANTED, NOT VERIFIED"
        via = f"Azure Firewall {fw['address']} -> " if fw else ""
        lines.append(
            f"{verdict}: {proof['source']} -> {via}{proof['vm']} {proof['private_ip']}:"
            f"{p['port']}/tcp"
        )
    return "\n".join(lines)


def requests_table(docs: list[dict[str, Any]], now: datetime) -> str:
    if not docs:
        return "No requests."
    rows = [
        [
            d["id"][:8],
            d["state"],
            d["requester"],
            d["vm"],
            ",".join(str(p) for p in d["ports"]),
            _duration(d["duration"]),
            _when(d["created_at"]),
            d["reason"] or "-",
        ]
        for d in docs
    ]
    return table(rows, ["ID", "STATE", "REQUESTER", "VM", "PORTS", "DURATION", "CREATED", "REASON"])


def events_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No events."
    body = [
        [
            str(r["seq"]),
            _when(r["at"]),
            r["actor"],
            r["action"],
            f"{r['from_state'] or '-'} -> {r['to_state'] or '-'}",
            (r["request_id"] or "-")[:8],
            r["reason"] or "-",
        ]
        for r in rows
    ]
    return table(body, ["SEQ", "AT", "ACTOR", "ACTION", "STATE", "REQUEST", "REASON"])


def log_check(check: dict[str, Any]) -> str:
    if check["ok"]:
        return f"audit log intact: {check['events']} events, head {check['head_hash']}"
    return "\n".join(["audit log BROKEN:", *(f"  {p}" for p in check["problems"])])


def decision_text(doc: dict[str, Any]) -> str:
    lines = [f"{doc['requester']}: would be {doc['would']} ({doc['outcome']})"]
    lines += [f"  {r}" for r in doc["reasons"]]
    lines += [f"  problem: {p}" for p in doc["problems"]]
    if doc["approvers"]:
        wanted = " and ".join(" or ".join(s) for s in doc["approvers"])
        lines.append(f"  approvers: {wanted} ({doc['min_approvals']} needed)")
    return "\n".join(lines)
