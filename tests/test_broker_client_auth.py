"""Where the CLI's broker token comes from (jitctl.broker.client_auth.broker_token): a given
token, the emulator's test user picked with the global --as, or the App's Azure credential."""

from __future__ import annotations

from unittest.mock import create_autospec

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import DefaultAzureCredential

from jitctl.app import App
from jitctl.broker.client_auth import broker_token, scope_for
from jitctl.broker.rules import Principal
from jitctl.emulator.oidc import BROKER_APP_ID
from jitctl.errors import BadInput, ExitCode, NotSignedIn


def test_a_given_token_is_sent_as_it_is(app, monkeypatch):
    monkeypatch.setenv("JITCTL_BROKER_TOKEN", " eyJ.given.token\n")
    assert broker_token(app, BROKER_APP_ID) == "eyJ.given.token"


def test_on_the_emulator_the_default_user_is_alice(app):
    token = broker_token(app, BROKER_APP_ID)
    assert app.token_verifier(None, None).verify(token) == Principal(
        "alice@contoso.com", frozenset({"engineers"})
    )


def test_on_the_emulator_no_audience_means_the_emulated_brokers(app):
    """`jitctl --emulator broker ...` without JITCTL_BROKER_AUDIENCE: the token is for the
    broker `broker serve` runs on the emulator (its app id), not one without an audience."""
    token = broker_token(app, "")
    verifier = app.token_verifier(None, None)
    assert verifier.verify(token) == Principal("alice@contoso.com", frozenset({"engineers"}))


def test_the_global_as_picks_the_test_user(app, run):
    result = run("--emulator", "--as", "dave@contoso.com", "list", "-o", "none")
    assert result.exit_code == 0, result.output
    assert app.as_user == "dave@contoso.com"
    principal = app.token_verifier(None, None).verify(broker_token(app, BROKER_APP_ID))
    assert principal == Principal("dave@contoso.com", frozenset({"engineers", "oncall"}))
    run("--emulator", "list", "-o", "none")
    assert app.as_user is None  # an App given again starts afresh: --as does not linger


def test_an_unknown_test_user_is_bad_input_naming_the_users(app):
    app.as_user = "eve@contoso.com"
    with pytest.raises(BadInput) as err:
        broker_token(app, BROKER_APP_ID)
    assert err.value.code == ExitCode.BAD_INPUT
    assert str(err.value) == (
        "--as eve@contoso.com: the emulator has no such test user.\n"
        "Hint: Use one of: alice@contoso.com, bob@contoso.com, carol@contoso.com, "
        "dave@contoso.com, erin@contoso.com, mallory@contoso.com."
    )


def test_as_and_a_given_token_together_are_bad_input(app, monkeypatch):
    monkeypatch.setenv("JITCTL_BROKER_TOKEN", "eyJ.given.token")
    app.as_user = "bob@contoso.com"
    with pytest.raises(BadInput) as err:
        broker_token(app, BROKER_APP_ID)
    assert (
        err.value.hint == "Drop --as, or unset JITCTL_BROKER_TOKEN to act as an emulator test user."
    )


def azure_app(credential: object) -> App:
    return App(emulator=False, azure_credential=credential)


def test_against_entra_the_credential_is_asked_for_the_brokers_api():
    credential = create_autospec(DefaultAzureCredential, instance=True)
    credential.get_token.return_value = AccessToken("eyJ.entra.token", 4102444800)
    assert broker_token(azure_app(credential), BROKER_APP_ID) == "eyJ.entra.token"
    credential.get_token.assert_called_once_with(f"api://{BROKER_APP_ID}/.default")


def test_no_sign_in_is_exit_3_with_what_to_do():
    credential = create_autospec(DefaultAzureCredential, instance=True)
    credential.get_token.side_effect = ClientAuthenticationError(
        "DefaultAzureCredential failed to retrieve a token from the included credentials."
    )
    with pytest.raises(NotSignedIn) as err:
        broker_token(azure_app(credential), BROKER_APP_ID)
    assert err.value.code == ExitCode.NOT_SIGNED_IN
    assert err.value.message == (
        "No token for the broker: not signed in to Azure: no credential was found."
    )
    assert "JITCTL_BROKER_TOKEN" in err.value.hint and "--emulator --as" in err.value.hint


def test_as_without_the_emulator_is_bad_input():
    credential = create_autospec(DefaultAzureCredential, instance=True)
    app = azure_app(credential)
    app.as_user = "bob@contoso.com"
    with pytest.raises(BadInput) as err:
        broker_token(app, BROKER_APP_ID)
    assert err.value.message == (
        "--as picks a test user of the emulator; against Entra ID your sign-in says who you are."
    )
    credential.get_token.assert_not_called()


@pytest.mark.parametrize(
    ("audience", "scope"),
    [
        (
            "6a697463-b0c3-4000-8000-00000000b0c3",
            "api://6a697463-b0c3-4000-8000-00000000b0c3/.default",
        ),
        ("api://jit-broker", "api://jit-broker/.default"),
        ("https://broker.contoso.com/", "https://broker.contoso.com/.default"),
    ],
)
def test_the_scope_is_the_app_id_uri_with_default(audience, scope):
    assert scope_for(audience) == scope


def test_without_an_audience_entra_is_not_asked_for_api_default():
    """No audience and no emulator: Entra ID would be asked for `api:///.default`."""
    credential = create_autospec(DefaultAzureCredential, instance=True)
    with pytest.raises(BadInput) as err:
        broker_token(azure_app(credential), " ")
    assert err.value.code == ExitCode.BAD_INPUT
    assert "--broker-audience" in err.value.hint
    credential.get_token.assert_not_called()


def test_broker_audience_from_the_option_the_environment_or_the_config_file(tmp_path, monkeypatch):
    """`jitctl broker list` against Entra ID: the token's scope is the audience given, by
    --broker-audience, JITCTL_BROKER_AUDIENCE or the config file; none is exit 2 and no call."""
    from click.testing import CliRunner

    from jitctl.cli.commands import cli
    from jitctl.clock import FakeClock
    from tests.brokerapi import Broker

    broker = Broker(tmp_path, FakeClock())
    credential = create_autospec(DefaultAzureCredential, instance=True)
    credential.get_token.return_value = AccessToken("tok-ann", 4102444800)
    monkeypatch.setenv("JITCTL_BROKER_URL", "http://127.0.0.1:8765")

    def run(*args: str) -> object:
        app = App(emulator=False, azure_credential=credential, broker_http=broker.http)
        return CliRunner().invoke(cli, ["broker", "list", *args], obj=app)

    try:
        none = run()
        assert none.exit_code == 2 and none.stderr == (
            "jitctl: error: No broker audience: jitctl cannot ask Entra ID for a token to the "
            "broker.\nHint: Pass --broker-audience (or JITCTL_BROKER_AUDIENCE, or broker-audience "
            "in the config file): the broker's application (client) id, as `broker serve "
            "--audience`; or set JITCTL_BROKER_TOKEN to a token for the broker.\n"
        )
        assert broker.verifier.seen == [] and not credential.get_token.called
        assert run("--broker-audience", BROKER_APP_ID).exit_code == 0
        monkeypatch.setenv("JITCTL_BROKER_AUDIENCE", "api://jit-broker/")
        assert run().exit_code == 0
        monkeypatch.delenv("JITCTL_BROKER_AUDIENCE")
        (tmp_path / "config.toml").write_text('[defaults]\nbroker-audience = "api://from-file"\n')
        monkeypatch.setenv("JITCTL_CONFIG", str(tmp_path / "config.toml"))
        assert run().exit_code == 0
        assert [c.args[0] for c in credential.get_token.call_args_list] == [
            f"api://{BROKER_APP_ID}/.default",
            "api://jit-broker/.default",
            "api://from-file/.default",
        ]
        assert broker.verifier.seen == ["tok-ann"] * 3
    finally:
        broker.close()


def test_the_pages_sign_in_asks_the_same_scope_as_the_cli():
    """One scope_for: an App ID URI with a trailing slash is not api://x//.default."""
    from urllib.parse import parse_qs, urlsplit

    from jitctl.broker.signin import OidcClient

    oidc = OidcClient(
        "https://login.example.com/t/v2.0",
        "client-id",
        "api://jit-broker/",
        authorize_url="https://login.example.com/t/oauth2/v2.0/authorize",
    )
    started = oidc.start("https://broker.example.com/auth/callback")
    scope = parse_qs(urlsplit(started.url).query)["scope"]
    assert scope == [f"openid profile email {scope_for('api://jit-broker/')}"]
    assert scope == ["openid profile email api://jit-broker/.default"]
