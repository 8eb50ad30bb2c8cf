"""Export today's JIT configuration as policy YAML that plans to no change."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jitctl.errors import BadInput
from jitctl.gateway import Gateway
from jitctl.parsing import check_scope
from jitctl.policyfile import export_port
from jitctl.textsafe import printable


def check_output_file(path: Path) -> Path:
    """Refuse, before anything is read from Azure, a file that could not be written."""
    shown, folder = printable(path), path.parent
    try:
        problem = _output_problem(path, folder)
    except (OSError, ValueError):  # a NUL in the name, a folder that cannot be searched
        problem = (f"'{shown}' cannot be written.", "Give a file in a folder you can write to.")
    if problem:
        raise BadInput(*problem)
    return path


def _output_problem(path: Path, folder: Path) -> tuple[str, str] | None:
    shown = printable(path)
    if "\0" in str(path):
        raise ValueError("a NUL in the name")
    if path.is_dir():
        return f"'{shown}' is a folder.", "Give a file name, e.g. policies/rg-prod.yaml."
    if path.exists() and not path.is_file():
        return f"'{shown}' is not a regular file.", "Give a file name in a folder."
    while not folder.exists():  # missing folders are made (as `mkdir -p`) below one that exists
        folder = folder.parent
    if not folder.is_dir():
        return f"'{printable(folder)}' is not a folder.", "Give a file in a folder."
    if not os.access(path if path.exists() else folder, os.W_OK):
        return f"'{shown}' cannot be written.", "Give a file in a folder you can write to."
    return None


def export_document(
    gw: Gateway, subscription_id: str, resource_group: str | None
) -> dict[str, Any]:
    """VMs with the same ports (and policy) share one target, listed by id."""
    check_scope(subscription_id, resource_group)
    groups: dict[str, dict[str, Any]] = {}
    for policy in gw.list_policies(subscription_id, resource_group):
        for vm in policy.vms:
            ports = [export_port(p) for p in sorted(vm.ports, key=lambda p: p.number)]
            key = repr((policy.name, ports))
            target = groups.setdefault(key, {"ids": []})
            target["ids"].append(vm.id)
            if policy.name != "default":
                target["policyName"] = policy.name
            target["ports"] = ports
    return {"subscriptions": [subscription_id], "targets": list(groups.values())}


def export_yaml(gw: Gateway, subscription_id: str, resource_group: str | None) -> str:
    import yaml

    doc = export_document(gw, subscription_id, resource_group)
    scope = f"resource group {resource_group}" if resource_group else "the subscription"
    head = (
        f"# JIT policies of {scope}, exported by jitctl.\n"
        "# yaml-language-server: $schema=jitctl-policy.schema.json\n"
    )
    if not doc["targets"]:
        return head + "# No JIT policies found.\n"
    return head + yaml.safe_dump(doc, sort_keys=False, width=120)
