"""The `approvals:` part of a plan: Azure stores no approval rule, so the files' entries are
compared with a baseline the caller names, the running broker's rules (GET /api/v1/rules) or
the policy files of another folder (a checkout of the main branch), entry by entry, key by key.

An entry is known by its file's name and its `name` (else its place, `approvals[i]`): naming
entries lets the plan follow one that moves in its file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KeyChange:
    key: str  # dotted: minApprovals, autoApprove.maxDuration
    before: Any  # None: not set
    after: Any


@dataclass(frozen=True)
class ApprovalChange:
    action: str  # add | change | remove
    entry: str  # "<file name>: <name or approvals[i]>"
    origin: str  # file:line, in the files (add, change) or in the baseline (remove)
    keys: tuple[KeyChange, ...] = ()


@dataclass(frozen=True)
class ApprovalsPlan:
    baseline: str  # what the files were compared with, in words
    entries: int  # how many entries the files hold
    changes: tuple[ApprovalChange, ...] = ()


def flatten(rule: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in rule.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def compare(
    files: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]], source: str
) -> ApprovalsPlan:
    """The changes from `baseline` to `files`, both as entries `{entry, origin, rule}`
    (jitctl.broker.rules.rules_document, the broker's GET /api/v1/rules)."""
    before = {e["entry"]: e for e in baseline}
    after = {e["entry"]: e for e in files}
    changes = []
    for name, doc in after.items():
        old = before.get(name)
        new_keys = flatten(doc["rule"])
        if old is None:
            keys = tuple(KeyChange(k, None, v) for k, v in sorted(new_keys.items()))
            changes.append(ApprovalChange("add", name, doc["origin"], keys))
            continue
        old_keys = flatten(old["rule"])
        keys = tuple(
            KeyChange(k, old_keys.get(k), new_keys.get(k))
            for k in sorted(old_keys.keys() | new_keys.keys())
            if not _same(old_keys.get(k), new_keys.get(k))
        )
        if keys:
            changes.append(ApprovalChange("change", name, doc["origin"], keys))
    for name, doc in before.items():
        if name not in after:
            keys = tuple(KeyChange(k, v, None) for k, v in sorted(flatten(doc["rule"]).items()))
            changes.append(ApprovalChange("remove", name, doc["origin"], keys))
    return ApprovalsPlan(source, len(files), tuple(changes))
