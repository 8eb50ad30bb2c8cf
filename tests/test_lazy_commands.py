"""Commands are loaded lazily from one table (jitctl/cli/root.py): the table cannot drift from the
commands, `jitctl --help` imports no command module, and no --help pulls in the heavy parts."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import click
import pytest

from jitctl.cli import JitctlGroup
from jitctl.cli.root import COMMANDS, cli

HEAVY = (
    "azure",
    "pydantic",
    "jitctl.emulator",
    "rich",
    "yaml",
    "cryptography",
    "jmespath",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "httpx",
    "starlette",
    "uvicorn",
    "jwt",
    "jinja2",
)


def loaded_after(args: list[str]) -> tuple[list[str], str]:
    """The modules a fresh `jitctl ARGS` has imported when it ends, and what it printed."""
    code = (
        "import sys, json\nfrom jitctl.cli.root import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "print('\\nMODULES', json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    text, _, modules = out.rpartition("\nMODULES ")
    return json.loads(modules), text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_row_loads_its_command_with_the_same_short_help(name):
    target, short_help = COMMANDS[name]
    module, attribute = target.split(":")
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command)
    assert command.get_short_help_str(limit=10_000) == short_help
    assert cli.get_command(click.Context(cli), name) is command


def test_root_help_lists_every_command_as_loaded_and_imports_none():
    modules, lazy_help = loaded_after(["--help"])
    commands = {m for m in modules if m.startswith("jitctl.cli.") and m.endswith("_cmds")}
    assert commands == set() and "jitctl.cli.commands" not in modules
    assert not [m for m in modules if m.startswith(HEAVY)]
    eager = JitctlGroup(name="jitctl", params=cli.params, help=cli.help)
    eager.context_settings = cli.context_settings
    for name, command in cli.load_all().items():
        eager.commands[name] = command  # loaded: click's own short-help path
    with click.Context(eager, info_name="jitctl", **cli.context_settings) as ctx:
        eager_help = eager.get_help(ctx)
    listed = lazy_help.rstrip("\n")
    assert listed[listed.index("Commands:") :] == eager_help[eager_help.index("Commands:") :]


def every_command_path() -> list[list[str]]:
    paths = []
    for name, command in sorted(cli.load_all().items()):
        paths.append([name])
        if isinstance(command, click.Group):
            paths += [[name, sub] for sub in sorted(command.commands)]
    return paths


def loaded_by_each(runs: list[list[str]]) -> list[list[str]]:
    """The modules each of `jitctl ARGS...`, run one after another in one fresh interpreter,
    imports that the runs before it had not (one interpreter, not one a run: 3 s less)."""
    code = (
        "import io, sys, json, contextlib\nfrom jitctl.cli.root import main\n"
        "seen, out = set(sys.modules), []\n"
        f"for args in {runs!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "        try:\n            main(args)\n        except SystemExit:\n            pass\n"
        "    out.append(sorted(set(sys.modules) - seen))\n    seen |= set(sys.modules)\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_no_help_and_no_usage_error_loads_the_heavy_parts():
    paths = every_command_path()
    assert len(paths) > len(COMMANDS)
    runs = [[*path, "--help"] for path in paths] + [["enable", "--bogus"], ["verify"]]
    loaded = loaded_by_each(runs)
    assert len(loaded) == len(runs)
    assert any("jitctl.cli.commands" in new for new in loaded)  # it saw the commands load
    for args, new in zip(runs, loaded, strict=True):
        heavy = [m for m in new if m.startswith(HEAVY)]
        assert heavy == [], (args, heavy[:5])


def test_root_help_imports_click_and_the_root_command_only():
    modules, text = loaded_after(["--help"])
    assert "Commands:" in text
    assert sorted(m for m in modules if m.startswith("jitctl")) == [
        "jitctl",
        "jitctl.cli",
        "jitctl.cli.globalopts",
        "jitctl.cli.root",
        "jitctl.errors",
    ]
    tops = {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names)
    # the interpreter's own: the script, setuptools' shim, an editable install's finder
    third_party = {t for t in tops if not t.startswith(("__", "_distutils_hack"))}
    assert third_party == {"click", "jitctl"}


def test_a_command_named_in_full_still_runs_with_its_global_options():
    modules, text = loaded_after(["list", "-o", "json", "--emulator", "--help"])
    assert "Global options" in text and "-o, --output" in text
    assert "jitctl.cli.commands" in modules


def test_the_package_defines_every_name_it_lists_in_all():
    """`__all__` names only what the package has (it once listed `main`, which lives in
    root.py, the console script's entry)."""
    import jitctl.cli

    assert all(hasattr(jitctl.cli, name) for name in jitctl.cli.__all__)
