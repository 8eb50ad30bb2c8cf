"""Connecting: clouds, custom endpoints, subscription resolution; nothing reaches Azure here."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.clouds import cli_default_subscription, resolve_cloud, resolve_subscription
from jitctl.errors import BadInput


def test_named_clouds_and_scopes():
    assert resolve_cloud(None, None).arm_endpoint == "https://management.azure.com"
    gov = resolve_cloud("AzureUSGovernment", None)
    assert gov.arm_endpoint == "https://management.usgovcloudapi.net"
    assert gov.scope == "https://management.core.usgovcloudapi.net/.default"
    assert resolve_cloud("azurechinacloud", None).authority == "login.chinacloudapi.cn"
    with pytest.raises(BadInput, match="Unknown cloud"):
        resolve_cloud("Mars", None)


def test_custom_endpoint_scope_follows_it(monkeypatch):
    monkeypatch.delenv("JITCTL_ARM_AUDIENCE", raising=False)
    stack = resolve_cloud(None, "https://management.local.azurestack.external/")
    assert stack.scope == "https://management.local.azurestack.external/.default"
    monkeypatch.setenv("JITCTL_ARM_AUDIENCE", "https://management.adfs.azurestack.local/abc")
    assert resolve_cloud(None, "https://management.local.azurestack.external").scope.endswith(
        "/abc/.default"
    )
    with pytest.raises(BadInput, match="not an https URL"):
        resolve_cloud(None, "http://insecure.example")


def test_subscription_order(tmp_path, monkeypatch):
    profile = {
        "subscriptions": [{"id": "s-other", "isDefault": False}, {"id": "s-cli", "isDefault": True}]
    }
    (tmp_path / "azureProfile.json").write_text(
        json.dumps(profile), encoding="utf-8-sig"
    )  # az writes a BOM
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    assert cli_default_subscription() == "s-cli"
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "s-env")
    assert resolve_subscription(None) == "s-env"
    assert resolve_subscription("s-flag") == "s-flag"


def test_no_subscription_is_exit_2_before_any_call(tmp_path, monkeypatch):
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    r = CliRunner().invoke(cli, ["list"], obj=App())
    assert r.exit_code == 2
    assert r.stderr == (
        "jitctl: error: No subscription given. Pass --subscription/-s, set AZURE_SUBSCRIPTION_ID, "
        "or run 'az account set'.\n"
    )


S9 = "00000000-0000-4000-8000-000000000009"


def test_vm_id_names_the_subscription(tmp_path, monkeypatch):
    from jitctl.cli.options import vm_refs

    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    app = App()
    vm_refs(
        app,
        [f"/subscriptions/{S9}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v"],
        None,
    )
    assert app.subscription_id == S9  # an id (a GUID): no lookup by name


def test_real_connection_uses_the_cloud(monkeypatch):
    app = App(subscription="s1", cloud="AzureChinaCloud")
    conn = app.connection()
    assert conn.endpoint == "https://management.chinacloudapi.cn"
    assert conn.scopes == ("https://management.core.chinacloudapi.cn/.default",)
    assert type(conn.credential).__name__ == "DefaultAzureCredential"
