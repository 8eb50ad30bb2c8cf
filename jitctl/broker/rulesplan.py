"""The broker's rules as a plan compares them: the policy files' `approvals:` against the
running broker's (its GET /api/v1/rules answer) or another folder's (services.approvalsplan
holds the comparison, on plain documents)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jitctl.broker.rules import RuleSet, rules_document
from jitctl.services.approvalsplan import ApprovalsPlan, compare
from jitctl.textsafe import printable

if TYPE_CHECKING:
    from jitctl.policyfile import LoadedFile


def compare_files(
    files: Sequence[LoadedFile], baseline: Sequence[Mapping[str, Any]], source: str
) -> ApprovalsPlan:
    """The files' entries against `baseline` (rules_document's entries)."""
    return compare(rules_document(RuleSet.from_files(files).rules), baseline, source)


def folder_rules(path: Path) -> list[dict[str, Any]]:
    """The entries of the policy files at `path`, as the broker would run them; bad files are
    bad input, as for the files planned."""
    from jitctl.errors import BadInput
    from jitctl.policyfile import load_all

    files, problems = load_all(path)
    if problems:
        raise BadInput(
            f"The approvals baseline {printable(str(path))} has {len(problems)} problem(s): "
            f"{printable(str(problems[0]))}",
            f"Fix it, or compare with another: jitctl policy validate {printable(str(path))}",
        )
    return rules_document(RuleSet.from_files(files).rules)
