"""The audit's forms beyond -o: its table, SARIF 2.1.0 (for code-scanning dashboards) and CSV.

SARIF: one run, the tool's rules (id, name, short and full description, help, default level),
one result per finding with ruleId, level (high: error, medium: warning, low: note), message,
and the VM's resource id as the location (a logical location; there is no file).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from jitctl.cli.shapes import jsonable, table

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"high": "error", "medium": "warning", "low": "note"}
CSV_COLUMNS = (
    "severity",
    "rule_id",
    "subscription_id",
    "resource_group",
    "vm",
    "message",
    "resource_id",
    "evidence",
)


def audit_table(result: Any, now: datetime) -> str:
    protected = sum(v.protected for v in result.vms)
    counts = result.counts
    summary = (
        f"{len(result.vms)} VM(s) in {len(result.subscriptions)} subscription(s): "
        f"{protected} protected by JIT, {len(result.vms) - protected} not. Findings: "
        + ", ".join(f"{counts[s]} {s}" for s in ("high", "medium", "low"))
        + "."
    )
    if not result.findings:
        return summary
    rows = [
        [f.severity.upper(), f.rule_id, f.resource_group, f.vm_name, f.message]
        for f in result.findings
    ]
    return table(rows, ["SEVERITY", "CHECK", "GROUP", "VM", "FINDING"]) + "\n" + summary


def _version() -> str:
    try:
        return version("jitctl")
    except PackageNotFoundError:
        return "0"


def sarif(result: Any, now: datetime | None = None) -> dict[str, Any]:
    from jitctl.services.auditrules import RULES

    rules = list(RULES.values())
    index = {r.id: i for i, r in enumerate(rules)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "jitctl",
                        "version": _version(),
                        "rules": [
                            {
                                "id": r.id,
                                "name": "".join(w.capitalize() for w in r.id.split("-")),
                                "shortDescription": {"text": r.title},
                                "fullDescription": {"text": r.title + "."},
                                "help": {"text": r.help},
                                "defaultConfiguration": {"level": LEVELS[r.severity]},
                                "properties": {"severity": r.severity},
                            }
                            for r in rules
                        ],
                    }
                },
                "results": [
                    {
                        "ruleId": f.rule_id,
                        "ruleIndex": index[f.rule_id],
                        "level": LEVELS[f.severity],
                        "message": {"text": f.message},
                        "locations": [
                            {
                                "logicalLocations": [
                                    {
                                        "fullyQualifiedName": f.resource_id,
                                        "name": f.vm_name,
                                        "kind": "resource",
                                    }
                                ]
                            }
                        ],
                        "partialFingerprints": {
                            "jitctl/v1": f"{f.rule_id}:{f.resource_id.lower()}"
                        },
                        "properties": {
                            "severity": f.severity,
                            "evidence": jsonable(dict(f.evidence), now),
                        },
                    }
                    for f in result.findings
                ],
            }
        ],
    }


def sarif_text(result: Any, now: datetime | None = None) -> str:
    return json.dumps(sarif(result, now), indent=2) + "\n"


def csv_text(result: Any, now: datetime | None = None) -> str:
    """One row a finding; evidence as compact JSON. Cells a spreadsheet would run as a formula
    (=, +, -, @ first) get a leading apostrophe, as OWASP advises for CSV injection."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for f in result.findings:
        cells = [
            f.severity,
            f.rule_id,
            f.subscription_id,
            f.resource_group,
            f.vm_name,
            f.message,
            f.resource_id,
            json.dumps(jsonable(dict(f.evidence), now), separators=(",", ":")),
        ]
        writer.writerow([_cell(c) for c in cells])
    return out.getvalue()


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
