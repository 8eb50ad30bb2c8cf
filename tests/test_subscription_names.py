"""`-s NAME` without an az profile (a runbook with a managed identity): the name is looked up
among the subscriptions the credential sees, through ARM, against the served emulator with the
real SDK clients and azure-identity."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.emulator import Backend, Settings, jit
from jitctl.emulator.server import EmulatorServer
from tests.fleetworld import SUBS, many, port


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    backend = Backend(settings=Settings(propagation_delay=0))
    backend.reset()
    ids = many(backend, 3, 3)  # fleet-00..02, vm-0000i in subscription i
    body = {"properties": {"virtualMachines": [{"id": ids[1], "ports": [port(22)]}]}}
    jit.put_policy(backend, SUBS[1], "rg-fleet", "westeurope", "default", body)
    srv = EmulatorServer(backend, state_file=tmp_path / "state.sqlite", cert_dir=tmp_path / "certs")
    srv.start()
    for key in list(os.environ):
        if key.startswith(("AZURE_", "JITCTL_", "IDENTITY_", "MSI_")):
            monkeypatch.delenv(key)
    home = tmp_path / "home"  # no ~/.azure: az was never signed in here
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(home / ".azure"))
    for line in srv.shell_lines():
        key, _, value = line.removeprefix("export ").partition("=")
        if key != "AZURE_SUBSCRIPTION_ID":  # a runbook names its subscription with -s
            monkeypatch.setenv(key, value)
    yield backend
    srv.stop()


@pytest.fixture
def run() -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), obj=App(), catch_exceptions=False)

    return invoke


def policy_subs(r: Result) -> set[str]:
    assert r.exit_code == 0, r.output
    return {p["policy_id"].split("/")[2] for p in json.loads(r.stdout)["policies"]}


def test_a_name_no_profile_knows_is_found_among_the_subscriptions_arm_lists(
    served: Backend, run: Callable[..., Result]
) -> None:
    assert policy_subs(run("list", "-s", "FLEET-01", "-o", "json")) == {SUBS[1]}  # any case
    assert any(e.path.split("?")[0].rstrip("/") == "/subscriptions" for e in served.log)
    # No policy files in ./policies: pruning everything is refused unless asked for on purpose.
    prune = ("policy", "plan", "-s", "fleet-00", "-s", "fleet-01", "-o", "json", "--prune")
    assert run(*prune).exit_code == 2
    r = run(*prune, "--allow-empty-prune")
    assert r.exit_code == 0, r.output
    assert policy_subs(r) == {SUBS[1]}  # pruning vm-00001 out of the only policy


def test_two_subscriptions_of_that_name_are_refused_naming_their_ids(
    served: Backend, run: Callable[..., Result]
) -> None:
    served.state["subscriptions"][SUBS[2]]["displayName"] = "Fleet-01"
    r = run("enable", "vm-00001", "-g", "rg-fleet", "-s", "fleet-01")
    assert r.exit_code == 2
    assert r.stderr == (
        f"jitctl: error: Several subscriptions are named 'fleet-01': {SUBS[1]}, {SUBS[2]}.\n"
        "Hint: Pass one of these ids instead.\n"
    )
    assert not [e for e in served.log if e.method != "GET" and "ResourceGraph" not in e.path]


def test_an_unknown_name_is_exit_2_before_any_write(
    served: Backend, run: Callable[..., Result]
) -> None:
    r = run("enable", "vm-00001", "-g", "rg-fleet", "-s", "fleet-99")
    assert r.exit_code == 2
    assert r.stderr == (
        "jitctl: error: No subscription is named 'fleet-99'.\nHint: Pass its id, or the name of one "
        "of the 3 enabled subscription(s) the credential sees.\n"
    )
    assert not [e for e in served.log if e.method != "GET" and "ResourceGraph" not in e.path]
