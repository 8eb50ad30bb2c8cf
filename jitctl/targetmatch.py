"""Whether a VM is one a policy file selects: one definition, for `targets:` and `approvals:`."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

from jitctl.ids import name_of, same_id, segments


def vm_matches(
    vm_id: str,
    vm_tags: Iterable[tuple[str, str]],
    *,
    resource_group: str | None = None,
    names: Iterable[str] | None = None,
    tags: Mapping[str, str] | None = None,
    subscriptions: Iterable[str] | None = None,
    ids: Iterable[str] | None = None,
    name: str | None = None,
) -> bool:
    """Every selector given must hold; ARM compares ids, groups, names and tag keys and values
    without case, so this does too. `name` defaults to the id's last segment. A tag value '*' only asks that the tag exists."""
    seg = segments(vm_id)
    if ids is not None and not any(same_id(vm_id, i) for i in ids):
        return False
    if subscriptions is not None and seg.get("subscriptions", "").lower() not in {
        s.lower() for s in subscriptions
    }:
        return False
    if resource_group and seg.get("resourcegroups", "").lower() != resource_group.lower():
        return False
    globs = list(names or [])
    name = (name or name_of(vm_id)).lower()
    if globs and not any(fnmatch.fnmatchcase(name, g.lower()) for g in globs):
        return False
    have = {k.lower(): v for k, v in vm_tags}
    return all(
        k.lower() in have and (v == "*" or have[k.lower()].lower() == str(v).lower())
        for k, v in (tags or {}).items()
    )
