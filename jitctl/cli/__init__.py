"""The click CLI: parse -> request -> service -> render. Errors are mapped in one place (JitctlGroup):
jitctl's own, Azure's (translated by jitctl.arm) and click's usage errors alike become an error
line on stderr and the hint on the next, the error document on stdout with a structured -o, and
the documented exit code.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from jitctl.cli.globalopts import CONTEXT, PER_INVOCATION, install_globals, output_in
from jitctl.errors import ExitCode, JitctlError

__all__ = ["CONTEXT", "JitctlGroup", "ResultShown"]  # the entry point: jitctl.cli.root.main


class ResultShown(Exception):
    """A failure whose result was already written as the document (verify not effective):
    only the stderr line and the exit code remain to do."""

    def __init__(self, error: JitctlError) -> None:
        super().__init__(str(error))
        self.error = error


class JitctlGroup(click.Group):
    """The root group: global options on every command, and every error mapped here.

    Its commands are loaded lazily from `lazy_commands` (name -> ("module:attribute", short
    help)): help lists them from the table, and a command's module is imported only when it
    is named, which keeps `jitctl --help` and usage errors fast."""

    def __init__(
        self, *args: Any, lazy_commands: dict[str, tuple[str, str]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        install_globals(cmd)
        super().add_command(cmd, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            module, attribute = self.lazy_commands[cmd_name][0].split(":")
            command = getattr(importlib.import_module(module), attribute)
            if cmd_name not in self.commands:  # importing may have registered it already
                self.add_command(command, cmd_name)
        found = self.commands.get(cmd_name)
        if found is not None and ctx.parent is None and not ctx.resilient_parsing:
            self.config_defaults(ctx, cmd_name, found)
        return found

    def config_defaults(self, ctx: click.Context, name: str, command: click.Command) -> None:
        """The user's config file (jitctl.cli.configfile) as click's default_map of the
        command about to run: read when a command is named, so `jitctl --help` reads none."""
        from jitctl.cli.configfile import Defaults, load, option_names

        if "jitctl.config" not in ctx.meta:
            path, doc = load()
            ctx.meta["jitctl.config"] = (
                Defaults(path, doc, self.knows, lambda: option_names(self.load_all()))
                if doc
                else None
            )
        defaults = ctx.meta["jitctl.config"]
        if defaults is not None:
            ctx.default_map = {**(ctx.default_map or {}), name: defaults.for_command(name, command)}

    def knows(self, name: str) -> bool:
        return name in self.commands or name in self.lazy_commands

    def load_all(self) -> dict[str, click.Command]:
        """Every command, loaded (for the docs generator and tests that walk all commands)."""
        ctx = click.Context(self, resilient_parsing=True)  # loads only: no config file read
        for name in self.list_commands(ctx):
            self.get_command(ctx, name)
        return dict(self.commands)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table's short helps, importing no command module."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in self.commands:
                if self.commands[name].hidden:
                    continue
                rows.append((name, self.commands[name].get_short_help_str(limit)))
            else:
                rows.append((name, shorten(self.lazy_commands[name][1], limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        """Command names complete from the table too (no import per candidate)."""
        from click.shell_completion import CompletionItem

        if incomplete.startswith("-"):
            return super().shell_complete(ctx, incomplete)
        return [
            CompletionItem(name, help=self.lazy_commands[name][1])
            if name in self.lazy_commands
            else CompletionItem(name, help=self.commands[name].get_short_help_str())
            for name in self.list_commands(ctx)
            if name.startswith(incomplete)
        ]

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = spread_ids(list(args) if args is not None else sys.argv[1:])
        for name, default in PER_INVOCATION.items():  # an App given again starts afresh
            if extra.get("obj") is not None:
                setattr(extra["obj"], name, default)
        try:
            completing = (complete_var or "_JITCTL_COMPLETE") in os.environ
            if not argv and not completing:  # as az: bare `jitctl` shows the commands
                with self.make_context("jitctl", [], resilient_parsing=True) as ctx:
                    click.echo(self.get_help(ctx))
                code = 0
            else:
                rv = super().main(argv, "jitctl", complete_var, standalone_mode=False, **extra)
                code = rv if isinstance(rv, int) else 0
        except click.exceptions.UsageError as err:
            code = usage_error(err, argv)
        except click.ClickException as err:
            report_line(output_in(argv), ExitCode.ERROR, err.format_message(), "")
            code = err.exit_code
        except click.exceptions.Abort:
            click.echo("jitctl: aborted.", err=True)
            code = int(ExitCode.ERROR)
        except BrokenPipeError:
            code = closed_pipe()
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx: click.Context) -> Any:
        from jitctl.cli.logs import quiet_library_logging

        quiet_library_logging()  # here, not in main: help and usage errors need no logging
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:
            raise
        except ResultShown as shown:
            hint = completed_hint(ctx, shown.error)
            report(ctx, shown.error.code, shown.error.message, hint, shown, False)
            ctx.exit(int(shown.error.code))
        except JitctlError as err:
            report(ctx, err.code, err.message, completed_hint(ctx, err), err)
            ctx.exit(int(err.code))
        except KeyboardInterrupt:
            click.echo("jitctl: interrupted", err=True)
            ctx.exit(130)
        except Exception as err:  # an unexpected error: one line, traceback with --debug
            report(
                ctx,
                ExitCode.ERROR,
                f"unexpected error: {type(err).__name__}: {err}",
                "Run again with --debug for details.",
                err,
            )
            ctx.exit(int(ExitCode.ERROR))


def shorten(text: str, limit: int) -> str:
    """A short help cut to `limit` at a word, as click cuts the help of a loaded command."""
    if len(text) <= limit:
        return text
    import textwrap

    return textwrap.shorten(text, max(limit, 3), placeholder="...", break_on_hyphens=False)


def spread_ids(argv: list[str]) -> list[str]:
    """`--ids ID ID...` as az takes it (for `--ids $(az vm list --query [].id -o tsv)`): each
    resource id after the first also becomes its own `--ids ID`, up to anything else or `--`."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return out + argv[i:]
        out.append(arg)
        i += 1
        if arg == "--ids" and i < len(argv):
            out.append(argv[i])
            i += 1
            while i < len(argv) and argv[i].startswith("/"):
                out += ["--ids", argv[i]]
                i += 1
    return out


def usage_error(err: click.exceptions.UsageError, argv: Sequence[str]) -> int:
    """Click's usage errors, as ours: one line that says what to do, exit 2."""
    path = err.ctx.command_path if err.ctx is not None else "jitctl"
    if isinstance(err, click.exceptions.NoArgsIsHelpError):
        message = "Missing command."
    else:
        message = " ".join(err.format_message().split())
    message = message if message.endswith((".", "?", "!")) else message + "."
    report_line(output_in(argv), ExitCode.BAD_INPUT, message, f"Run '{path} --help'.")
    return int(ExitCode.BAD_INPUT)


def report_line(output: str, code: ExitCode, message: str, hint: str) -> None:
    from jitctl.cli.output import emit_error

    emit_error(output, code, message, hint)
    say_error(message, hint)


def report(
    ctx: click.Context,
    code: ExitCode,
    message: str,
    hint: str,
    err: BaseException,
    document: bool = True,
) -> None:
    from jitctl.cli.logs import redact
    from jitctl.cli.output import emit_error
    from jitctl.textsafe import printable

    app = ctx.obj
    if getattr(app, "debug", False):
        import traceback

        for line in redact("".join(traceback.format_exception(err))).splitlines():
            click.echo(printable(line), err=True)
    if document:
        emit_error(getattr(app, "output", None) or "table", code, message, hint)
    say_error(message, hint)


def completed_hint(ctx: click.Context, err: JitctlError) -> str:
    """The error's hint with each command line it suggests carrying the global options in
    force, so that, pasted, it runs where this one did."""
    from jitctl.cli.globalopts import command_line

    return err.hint_with(lambda command: command_line(ctx.obj, command))


def say_error(message: str, hint: str) -> None:
    """The error on stderr: what is wrong (red on a terminal), then what to do on its own
    line, so that Azure's words and jitctl's advice never run together."""
    from jitctl.cli.output import error_line, hint_line, on_stderr

    click.echo(on_stderr(error_line(message), "red"), err=True)
    if hint:
        click.echo(hint_line(hint), err=True)


def closed_pipe() -> int:
    """The reader went away (`jitctl demo | head -1`): stop quietly, no traceback at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return int(ExitCode.ERROR)
