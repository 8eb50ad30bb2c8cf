"""Connecting: clouds, custom endpoints, subscription resolution; nothing reaches Azure here."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.clouds import cli_default_subscription, resolve_cloud, resolve_subscription
from jitctl.errors import BadInput
from tests.support import error_parts


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
    """Signed in with az, but no default subscription: say how to choose one."""
    profile = {"subscriptions": [{"id": "s-one", "isDefault": False}]}
    (tmp_path / "azureProfile.json").write_text(json.dumps(profile), encoding="utf-8")
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path))
    r = CliRunner().invoke(cli, ["list"], obj=App())
    assert r.exit_code == 2
    assert r.stderr == (
        "jitctl: error: No subscription given.\n"
        "Hint: Pass --subscription/-s, set AZURE_SUBSCRIPTION_ID, or run 'az account set'.\n"
    )


@pytest.mark.parametrize("credential", [None, "AZURE_CLIENT_ID", "IDENTITY_ENDPOINT"])
def test_no_sign_in_at_all_names_the_emulator(tmp_path, monkeypatch, credential):
    """A first run on a machine that never signed in to Azure: the way to try it offline."""
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path))  # no azureProfile.json there
    if credential:
        monkeypatch.setenv(credential, "set")
    r = CliRunner().invoke(cli, ["list"], obj=App())
    assert r.exit_code == 2
    message, hint = error_parts(r.stderr)
    if credential:  # a credential in the environment: only the subscription is missing
        assert message == "No subscription given." and "--emulator" not in hint
    else:
        assert message == "No subscription given, and no Azure sign-in found."
        assert hint == (
            "Run 'az login', or pass --subscription/-s; to try jitctl without Azure, add "
            "--emulator (or set JITCTL_EMULATOR=1)."
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
