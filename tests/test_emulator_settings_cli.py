"""`emulator reset --set` and `emulator serve --set`: emulator settings from the command line,
kept in the state file, checked (a bad name or value is exit 2 and writes nothing)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from jitctl.cli.commands import cli
from jitctl.emulator.backend import Backend
from jitctl.emulator.overrides import BadSetting, parse
from jitctl.emulator.server import EmulatorServer
from jitctl.emulator.settings import Settings
from jitctl.emulator.store import read_file, reset_file
from tests.support import one_error


def reset(tmp_path, *args: str):
    state = tmp_path / "state.sqlite"
    result = CliRunner().invoke(cli, ["emulator", "reset", "--state", str(state), *args])
    return result, state


def test_reset_keeps_the_settings_in_the_state_file(tmp_path):
    result, state = reset(
        tmp_path,
        "--set",
        "initiate_fate=NEVER",
        "--set",
        "renumber=on",
        "--set",
        "locked_scopes=/subscriptions/a/resourceGroups/x, /subscriptions/a/resourceGroups/y",
        "--set",
        "allow-priority=110",
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["settings"] == {
        "initiate_fate": "never",
        "renumber": True,
        "locked_scopes": ["/subscriptions/a/resourceGroups/x", "/subscriptions/a/resourceGroups/y"],
        "allow_priority": 110,
    }
    kept = read_file(state).settings
    assert (kept.initiate_fate, kept.renumber, kept.allow_priority) == ("never", True, 110)
    assert kept.propagation_delay == 3.0  # the --emulator default stays


@pytest.mark.parametrize(
    ("pair", "words"),
    [
        ("initiate_fate=maybe", "initiate_fate is one of apply, never, fail"),
        ("nope=1", "no emulator setting is named 'nope'"),
        ("page_size=many", "page_size is a number"),
        ("page_size=-1", "page_size is not negative"),
        ("renumber=perhaps", "renumber is on or off"),
        ("renumber", "is not NAME=VALUE"),
    ],
)
def test_a_bad_setting_is_exit_2_and_writes_nothing(tmp_path, pair, words):
    result, state = reset(tmp_path, "--set", pair)
    assert result.exit_code == 2
    assert words in result.output and "EMULATOR.md" in result.output
    assert result.stdout == "" and one_error(result.output)
    assert not state.exists()


def test_parse_reads_each_type():
    assert parse(["propagation_delay=0.5", "defender_plan=p1", "permissions=a/read,b/*"]) == {
        "propagation_delay": 0.5,
        "defender_plan": "P1",
        "permissions": ["a/read", "b/*"],
    }
    with pytest.raises(BadSetting):
        parse(["graph_quota_window=soon"])


def test_serve_changes_a_setting_of_an_existing_state_file(tmp_path):
    state = tmp_path / "state.sqlite"
    reset_file(state, Backend(settings=Settings(initiate_fate="fail")))
    srv = EmulatorServer(Backend(), state_file=state, cert_dir=tmp_path / "certs")
    srv.start()
    try:
        srv.change_settings({"defender_plan": "off"})
    finally:
        srv.stop()
    kept = read_file(state).settings
    assert (kept.initiate_fate, kept.defender_plan) == ("fail", "off")


def test_served_settings_without_a_file_change_the_backend():
    srv = EmulatorServer(Backend())
    srv.change_settings({"initiate_fate": "never"})
    assert srv.backend.settings.initiate_fate == "never"


def test_reset_sets_the_propagation_delay_it_has_a_default_for(tmp_path):
    """--emulator's own delay is a default, not a second value: --set replaces it."""
    result, state = reset(tmp_path, "--set", "propagation_delay=0")
    assert result.exit_code == 0, result.output
    assert read_file(state).settings.propagation_delay == 0
