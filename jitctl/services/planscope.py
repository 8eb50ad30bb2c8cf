"""Where policy files rule, so that --prune never reaches past them.

Terraform destroys only what its configuration manages, and refuses an empty configuration;
jitctl keeps no state, so the files' targets say where they are authoritative: the resource
groups they name (`resourceGroup`, or the groups of their `ids`), and whole subscriptions for
targets that select by tags alone. --prune removes unmatched VMs only there, and files that
select no VM never mean "empty every JIT policy" unless the caller says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from jitctl.errors import BadInput
from jitctl.ids import name_of, segments
from jitctl.model import JitPolicy
from jitctl.policyfile import NO_FILES_HINT, LoadedFile, Target, no_files_found

Scope = set[tuple[str, str | None]]  # (subscription, resource group or None: all), lower case

ALLOW_EMPTY_PRUNE = "--allow-empty-prune"
_SHOWN = 5  # policies (and VMs of each) a refusal names before "and N more"


def target_subscriptions(f: LoadedFile, target: Target, chosen: Sequence[str]) -> list[str]:
    """Where a target selects VMs: its ids' subscriptions; else its own `subscriptions:`, else
    its file's, else every chosen subscription (-s repeated, --all-subscriptions, the default)."""
    if target.ids:
        return [segments(vm_id)["subscriptions"] for vm_id in target.ids]
    return list(target.subscriptions or f.model.subscriptions or chosen)


def prune_scope(files: Sequence[LoadedFile], chosen: Sequence[str]) -> Scope:
    """The resource groups (or whole subscriptions) the files' targets cover; with no files
    at all (make_plan gets there only with allow_empty_prune), every chosen subscription."""
    if not files:
        return {(s.lower(), None) for s in chosen}
    scope: Scope = set()
    for f in files:
        for target in f.model.targets:
            if target.ids:
                for vm_id in target.ids:
                    seg = segments(vm_id)
                    scope.add((seg["subscriptions"].lower(), seg["resourcegroups"].lower()))
                continue
            group = target.resourceGroup.lower() if target.resourceGroup else None
            scope.update((s.lower(), group) for s in target_subscriptions(f, target, chosen))
    return scope


def in_scope(policy: JitPolicy, scope: Scope) -> bool:
    sub = policy.subscription_id.lower()
    return (sub, None) in scope or (sub, policy.resource_group.lower()) in scope


def _more(items: list[str], total: int, sep: str = ", ") -> str:
    return sep.join(items) + (f"{sep}and {total - len(items)} more" if total > len(items) else "")


def refuse_empty_prune(
    removals: Iterable[tuple[str, Sequence[str]]], have_files: bool, source: str
) -> None:
    """Raise BadInput (exit 2, before any write) naming what --prune would remove when the
    files select no VM: (policy id, VM ids it would lose) for each policy."""
    doomed = [(pid, vms) for pid, vms in removals if vms]
    if have_files and not doomed:
        return  # files that match nothing where nothing is configured: nothing to fear
    if not doomed:
        raise BadInput(no_files_found(source) + ".", NO_FILES_HINT)
    what = (
        no_files_found(source) if not have_files else f"The policy files in {source} select no VM"
    )
    count = sum(len(vms) for _, vms in doomed)
    listed = [
        f"{name_of(pid)} in {segments(pid)['resourcegroups']} "
        f"({_more([name_of(v) for v in vms[:_SHOWN]], len(vms))})"
        for pid, vms in doomed[:_SHOWN]
    ]
    raise BadInput(
        f"{what}: --prune would remove all {count} VM(s) of {len(doomed)} JIT policy(ies) and "
        f"delete them: {_more(listed, len(doomed), '; ')}.",
        f"Nothing was changed. Check the path and the targets; to delete them on purpose, add "
        f"{ALLOW_EMPTY_PRUNE}.",
    )
