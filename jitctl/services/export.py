"""Export today's JIT configuration as policy YAML that plans to no change."""

from __future__ import annotations

from typing import Any

from jitctl.gateway import Gateway
from jitctl.policyfile import export_port


def export_document(
    gw: Gateway, subscription_id: str, resource_group: str | None
) -> dict[str, Any]:
    """VMs with the same ports (and policy) share one target, listed by id."""
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
