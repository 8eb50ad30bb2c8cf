"""Export today's JIT configuration as policy YAML that plans to no change."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jitctl.errors import BadInput
from jitctl.gateway import Gateway
from jitctl.model import JitPolicy
from jitctl.parsing import check_scope
from jitctl.policyfile import export_port
from jitctl.textsafe import printable

if TYPE_CHECKING:
    from jitctl.fleet import FleetGateway


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


def document_of(policies: Iterable[JitPolicy], subscription_ids: Sequence[str]) -> dict[str, Any]:
    """VMs with the same ports (and policy) share one target, listed by id."""
    groups: dict[str, dict[str, Any]] = {}
    for policy in policies:
        for vm in policy.vms:
            ports = [export_port(p) for p in sorted(vm.ports, key=lambda p: p.number)]
            key = repr((policy.name, ports))
            target = groups.setdefault(key, {"ids": []})
            target["ids"].append(vm.id)
            if policy.name != "default":
                target["policyName"] = policy.name
            target["ports"] = ports
    return {"subscriptions": list(subscription_ids), "targets": list(groups.values())}


def export_document(
    gw: Gateway, subscription_id: str, resource_group: str | None
) -> dict[str, Any]:
    check_scope(subscription_id, resource_group)
    return document_of(gw.list_policies(subscription_id, resource_group), [subscription_id])


def fleet_document(
    fleet: FleetGateway, subscription_ids: Sequence[str], resource_group: str | None
) -> dict[str, Any]:
    """Several subscriptions in one file (one list each, in parallel); -g filters."""
    from jitctl.services.query import in_group

    for sub in subscription_ids:
        check_scope(sub, resource_group)
    return document_of(in_group(fleet.policies(subscription_ids), resource_group), subscription_ids)


def export_yaml(gw: Gateway, subscription_id: str, resource_group: str | None) -> str:
    scope = f"resource group {resource_group}" if resource_group else "the subscription"
    return yaml_text(export_document(gw, subscription_id, resource_group), scope)


def yaml_text(doc: dict[str, Any], scope: str) -> str:
    import yaml

    head = (
        f"# JIT policies of {scope}, exported by jitctl.\n"
        "# yaml-language-server: $schema=jitctl-policy.schema.json\n"
    )
    if not doc["targets"]:
        return head + "# No JIT policies found.\n"
    return head + yaml.safe_dump(doc, sort_keys=False, width=120)
