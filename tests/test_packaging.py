"""What a new user meets first: --help is fast and light, every command is documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from jitctl.cli.commands import cli

ROOT = Path(__file__).resolve().parents[1]


def all_commands(group: click.Group = cli, prefix: str = "") -> list[str]:
    out = []
    loaded = group.load_all() if hasattr(group, "load_all") else group.commands
    for name, cmd in sorted(loaded.items()):
        full = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            out.extend(all_commands(cmd, f"{full} "))
        else:
            out.append(full)
    return out


@pytest.mark.parametrize(
    "args", [["--help"], ["request", "--help"], ["verify"], ["enable", "--bogus"]]
)
def test_help_and_usage_errors_load_no_azure(args):
    code = (
        "import sys\nfrom jitctl.cli.root import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('azure.mgmt', 'azure.identity', 'azure.core')))\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "HEAVY []" in out


def test_python_dash_m_works():
    out = subprocess.run(
        [sys.executable, "-m", "jitctl", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "version" in out.stdout


def test_every_command_has_an_example_and_is_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = all_commands()
    assert {
        "enable",
        "disable",
        "show",
        "list",
        "request",
        "verify",
        "demo",
        "emulator serve",
    } <= set(commands)
    for name in commands:
        cmd = cli
        for part in name.split():
            cmd = cmd.commands[part]  # type: ignore[attr-defined]
        assert "Example" in (cmd.help or ""), f"{name} --help has no example"
        assert re.search(rf"jitctl (?:--emulator )?{re.escape(name)}\b", readme), (
            f"README does not show 'jitctl {name}'"
        )


def test_exit_codes_are_documented():
    from jitctl.errors import ExitCode

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \|", readme, re.M), (
            f"exit code {int(code)} not in README"
        )


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", readme, re.S)
    test_command = next(line for block in blocks for line in block.splitlines() if "pytest" in line)
    assert test_command.strip() in ci


def test_the_tests_need_nothing_outside_the_checkout():
    """A user's fresh clone has only this repository: the official examples live in tests/."""
    from tests.support import SPECS

    assert SPECS.is_relative_to(ROOT) and (SPECS / "SOURCES.md").is_file()
    assert len(list(SPECS.rglob("*.json"))) >= 30
    outside = re.compile(r"\.\./shared|parents\[1\]\.parent|parents\[2\]")
    for path in [*ROOT.joinpath("tests").glob("*.py"), *ROOT.joinpath("scripts").glob("*.py")]:
        assert not outside.search(path.read_text(encoding="utf-8")), path.name
