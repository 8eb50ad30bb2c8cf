"""Write docs/COMMANDS.md, the command reference, from every command's --help.

python scripts/gen_commands.py          # rewrite docs/COMMANDS.md
python scripts/gen_commands.py --check  # exit 1 when docs/COMMANDS.md is out of date

Commands come in the order of a session (enable before request, export before plan), which is
also the order tests/test_docs.py runs their --help examples in, one after another.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "COMMANDS.md"
WIDTH = 100

# A session's order; commands not named here follow, alphabetically (a test checks none is lost).
ORDER = (  # noqa: SIM905 (one line of words reads better than 22 quoted strings)
    "enable disable show list request verify rdp ssh ssh-proxy ssh-config tunnel status history doctor policy export validate plan "
    "apply schema audit role demo broker emulator reset serve approve deny cancel revoke extend "
    "log explain migrate completion"
).split()


def ordered(names: list[str]) -> list[str]:
    known = [n for n in ORDER if n in names]
    return known + sorted(n for n in names if n not in ORDER)


def walk(
    command: click.Command, ctx: click.Context
) -> Iterator[tuple[tuple[str, ...], click.Command, click.Context]]:
    """Every command with its path (("policy", "plan")) and a context for its help."""
    path = tuple(ctx.command_path.split()[1:])
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in ordered(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                settings = sub.context_settings  # -h as well as --help, as when run
                yield from walk(sub, click.Context(sub, info_name=name, parent=ctx, **settings))


def commands() -> list[tuple[tuple[str, ...], click.Command, click.Context]]:
    from jitctl.cli.commands import cli

    settings = {**cli.context_settings, "terminal_width": WIDTH, "max_content_width": WIDTH}
    root = click.Context(cli, info_name="jitctl", **settings)
    return list(walk(cli, root))


def examples(command: click.Command) -> list[str]:
    """The command lines of a help's "Example:" section, continuation lines joined."""
    lines, inside = [], False
    for raw in (command.help or "").splitlines():
        text = raw.strip()
        if re.fullmatch(r"Examples?.*:", text):
            inside = True
        elif inside and not text:
            inside = False
        elif inside and text != "\b":
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1].rstrip() + " " + text
            else:
                lines.append(text)
    return lines


def reference() -> str:
    out = [
        "# Command reference",
        "",
        "Generated from `--help` by `python scripts/gen_commands.py`; a test checks it is current.",
        "Every example below is run against the emulator, in this order, by `tests/test_docs.py`.",
        "",
    ]
    for path, command, ctx in commands():
        name = " ".join(("jitctl", *path))
        out += [f"## {name}", "", "```text", command.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = parser.parse_args()
    text = reference()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run scripts/gen_commands.py")
            return 1
        return 0
    TARGET.parent.mkdir(exist_ok=True)
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
