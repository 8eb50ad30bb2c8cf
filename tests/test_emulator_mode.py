"""`jitctl --emulator`: state persists in a file between commands; `jitctl demo` end to end."""

from __future__ import annotations

import json
import os
import re
import stat
from datetime import datetime, timezone
from pathlib import Path

from click.testing import CliRunner

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.clock import FakeClock

G = ["-g", "rg-jit-demo"]


def invoke(args, state):
    """The CLI as a user runs it, its waits on a fake clock that starts at the real time (the
    state file's grants are kept in real time)."""
    return CliRunner().invoke(
        cli,
        args,
        env={"JITCTL_EMULATOR_STATE": str(state), "JITCTL_EMULATOR": None},
        obj=App(clock=FakeClock(datetime.now(timezone.utc))),
    )


def test_successive_commands_see_each_other(tmp_path):
    from jitctl.emulator.store import read_file

    state = tmp_path / "emulator.sqlite"
    r = invoke(["--emulator", "enable", "vm-win01", *G], state)
    assert r.exit_code == 0, r.output
    assert read_file(state).state["jit"]
    r = invoke(["--emulator", "request", "vm-win01", *G, "--source-ip", "203.0.113.7"], state)
    assert r.exit_code == 0, r.output
    r = invoke(["--emulator", "-o", "json", "show", "vm-win01", *G], state)
    grants = json.loads(r.stdout)["policies"][0]["vms"][0]["grants"]
    assert grants[0]["source"] == "203.0.113.7"
    r = invoke(["emulator", "reset", "--world", "busy"], state)
    assert r.exit_code == 0 and r.stdout == "Emulator state reset to world 'busy'.\n"
    r = invoke(["--emulator", "show", "vm-win01", *G], state)
    assert r.exit_code == 4  # the reset world has no policy
    assert (
        invoke(
            ["--emulator", "verify", "vm-legacy", *G, "--source-ip", "198.51.100.1"], state
        ).exit_code
        == 0
    )


def test_env_var_turns_emulator_on(tmp_path):
    state = tmp_path / "s.sqlite"
    r = CliRunner().invoke(
        cli, ["list"], env={"JITCTL_EMULATOR_STATE": str(state), "JITCTL_EMULATOR": "1"}
    )
    assert r.exit_code == 0 and r.stdout == "No JIT policies found.\n"


def test_demo_end_to_end():
    r = CliRunner().invoke(cli, ["demo", "--fast", "--source-ip", "198.51.100.20"], obj=App())
    assert r.exit_code == 0, r.output
    assert "== Enable JIT on both VMs" in r.stdout
    assert "EFFECTIVE: 198.51.100.20 -> vm-lnx01 10.10.2.4:22/tcp" in r.stdout
    assert (
        r.stdout.rstrip()
        .splitlines()[-1]
        .startswith("Verdict: 198.51.100.20 reaches vm-win01:3389 through the JIT allow rule")
    )
    r = CliRunner().invoke(
        cli,
        ["-o", "json", "demo", "--fast", "--source-ip", "198.51.100.20"],
        obj=App(clock=FakeClock()),
    )
    data = json.loads(r.stdout)
    assert data["ok"] is True and data["arm_calls"] == sum(s["arm_calls"] for s in data["steps"])


def readme_rows(heading: str, first_column: str) -> dict[str, int]:
    """The README table under `heading` whose first column is `first_column`: label -> calls."""
    text = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split(heading + "\n", 1)[1]
    table = section.split(f"| {first_column} |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| ([^|]+?) \| (\d+) \|", table, re.M)
    return {label: int(calls) for label, calls in rows}


def test_demo_steps_cost_what_the_readme_says():
    r = CliRunner().invoke(cli, ["-o", "json", "demo", "--fast", "--source-ip", "198.51.100.20"])
    steps = json.loads(r.stdout)["steps"]
    demo = readme_rows("### demo", "demo step")
    figures = readme_rows("## Figures", "command")

    def said(title: str) -> int:  # the README row whose first words begin the step's title
        label = max((k for k in demo if title.startswith(k.split(" (")[0])), key=len)
        return demo[label]

    assert [s["arm_calls"] for s in steps] == [said(s["title"]) for s in steps]
    # and the demo's steps cost what the commands cost in the Figures table
    assert said("Request") == figures["request (VM by name)"]
    assert said("Verify") == figures["verify 1-NIC VM, NIC NSG"]
    assert said("Verify") == figures["verify 1-NIC VM, subnet NSG"]


def test_state_file_is_private(tmp_path):
    state = tmp_path / "emulator.sqlite"
    invoke(["--emulator", "list"], state)
    if os.name == "posix":
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
