"""JIT policy names: one check, used before any write, for every command and for policy files.

A name may be a template with `{vm}`, resolved per VM (`--policy-name '{vm}'`: one policy per VM,
the layout Microsoft's own scripts use, so that writers of different VMs never share a policy).
"""

from __future__ import annotations

import functools
import re

from jitctl.errors import BadInput

PLACEHOLDER = "{vm}"
# Microsoft documents "policy name + VM name <= 56 characters" for JIT (just-in-time-access-usage).
MAX_WITH_VM = 56
# ARM's pattern for names of this kind (the resource group's, ^[-\w\._\(\)]+$); JIT publishes none
# of its own, so jitctl accepts only what that pattern accepts, and no trailing dot.
_ALLOWED = re.compile(r"^[-\w.()]+$")
HINT = "Use letters, digits, '-', '_', '.', '(' and ')', optionally with {vm} for the VM's name."


@functools.lru_cache(maxsize=4096)  # a plan checks the same few names for each of its VMs
def check_policy_name(template: str) -> str:
    """Refuse a name or template Azure would not accept, whatever the VM; return it unchanged."""
    if not template or not template.strip():
        raise BadInput("The JIT policy name is empty.", HINT)
    if any(ord(c) < 32 or ord(c) == 127 for c in template):
        raise BadInput("The JIT policy name contains a control character.", HINT)
    bare = template.replace(PLACEHOLDER, "vm")
    if "{" in bare or "}" in bare:
        raise BadInput(
            f"The JIT policy name {template!r} has a placeholder other than {PLACEHOLDER}.", HINT
        )
    if "/" in bare or "\\" in bare or ".." in bare:
        raise BadInput(f"The JIT policy name {template!r} contains '/', '\\' or '..'.", HINT)
    if not _ALLOWED.match(bare) or bare.endswith("."):
        raise BadInput(f"The JIT policy name {template!r} has characters Azure refuses.", HINT)
    fixed = len(template.replace(PLACEHOLDER, ""))
    if fixed >= MAX_WITH_VM:
        raise BadInput(
            f"The JIT policy name {template!r} is too long: policy name and VM name together "
            f"must be at most {MAX_WITH_VM} characters.",
            "Use a shorter name.",
        )
    return template


@functools.lru_cache(maxsize=65536)
def policy_name_for(template: str, vm_name: str) -> str:
    """The policy name for one VM: the template resolved, then checked with the 56-character rule."""
    check_policy_name(template)
    name = template.replace(PLACEHOLDER, vm_name)
    check_policy_name(name)
    if len(name) + len(vm_name) > MAX_WITH_VM:
        raise BadInput(
            f"JIT policy name {name!r} with VM name {vm_name!r} is {len(name) + len(vm_name)} "
            f"characters; Azure allows at most {MAX_WITH_VM} for both together.",
            "Use a shorter --policy-name (or policyName).",
        )
    return name
