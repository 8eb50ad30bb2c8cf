"""`--latency` on `emulator serve` and `emulator reset` (the `latency` setting): every ARM call
takes that long, slept outside the backend's lock, for `--emulator` commands too."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from jitctl.cli.commands import cli
from jitctl.emulator import responses
from jitctl.emulator.backend import Backend
from jitctl.emulator.overrides import BadSetting, parse, seconds
from jitctl.emulator.responses import Router
from jitctl.emulator.settings import Settings
from jitctl.emulator.store import read_file
from jitctl.emulator.worlds import demo


@pytest.mark.parametrize(
    "text, wanted", [("100ms", 0.1), ("0.2", 0.2), ("2s", 2.0), ("1m", 60.0), (" 50MS ", 0.05)]
)
def test_seconds_take_a_unit(text: str, wanted: float) -> None:
    assert seconds(text) == pytest.approx(wanted)


@pytest.mark.parametrize("text", ["fast", "-1", "1h", "nan", "inf", ""])
def test_what_is_not_seconds_is_refused(text: str) -> None:
    with pytest.raises(BadSetting):
        seconds(text)


def test_every_setting_in_seconds_takes_units() -> None:
    assert parse(["propagation_delay=1m", "graph_quota_window=500ms"]) == {
        "propagation_delay": 60.0,
        "graph_quota_window": 0.5,
    }


def test_reset_keeps_the_latency_and_emulator_commands_wait_it_per_call(
    tmp_path, monkeypatch
) -> None:
    state = tmp_path / "state.sqlite"
    monkeypatch.setenv("JITCTL_EMULATOR_STATE", str(state))
    runner = CliRunner()
    result = runner.invoke(cli, ["emulator", "reset", "--latency", "100ms", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["settings"] == {"latency": 0.1}
    assert read_file(state).settings.latency == 0.1
    slept: list[float] = []
    monkeypatch.setattr(responses.time, "sleep", slept.append)
    result = runner.invoke(cli, ["--emulator", "list", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert slept and set(slept) == {0.1}  # one wait per ARM call, none longer


def test_the_wait_is_outside_the_lock_so_calls_overlap(monkeypatch) -> None:
    backend = Backend(settings=Settings(latency=0.05))
    demo(backend)
    router = Router(backend)
    held: list[bool] = []

    def sleep(seconds: float) -> None:  # asked from another thread: the lock is reentrant
        def probe() -> None:
            got = backend.lock.acquire(blocking=False)
            held.append(not got)
            if got:
                backend.lock.release()

        other = threading.Thread(target=probe)
        other.start()
        other.join()

    monkeypatch.setattr(responses.time, "sleep", sleep)
    worker = threading.Thread(
        target=router.handle, args=("GET", "https://x/subscriptions", {}, None)
    )
    worker.start()
    worker.join()
    assert held == [False]


@pytest.mark.parametrize("command", ["serve", "reset"])
def test_a_bad_latency_is_one_line_and_exit_2(tmp_path, command: str) -> None:
    args = ["emulator", command, "--latency", "fast"]
    if command == "reset":
        args += ["--state", str(tmp_path / "state.sqlite")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "latency is seconds (0.1, 100ms, 2s or 1m), not 'fast'" in result.output
    assert not (tmp_path / "state.sqlite").exists()
