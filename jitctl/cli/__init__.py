"""The click CLI: parse -> request -> service -> render. Errors are mapped in one place (JitctlGroup)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from jitctl.errors import ExitCode, JitctlError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class JitctlGroup(click.Group):
    """Maps jitctl's errors to one stderr line (or JSON on stdout) and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except JitctlError as err:
            report(ctx, err.code, err.message, err.hint, err)
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


def report(ctx: click.Context, code: ExitCode, message: str, hint: str, err: BaseException) -> None:
    from jitctl.cli.logs import redact

    app = ctx.obj
    if getattr(app, "debug", False):
        import traceback

        click.echo(redact("".join(traceback.format_exception(err))), err=True)
    if getattr(app, "output", "table") == "json":
        import json

        click.echo(
            json.dumps(
                {
                    "error": {
                        "exit_code": int(code),
                        "kind": code.name.lower(),
                        "message": message,
                        "hint": hint,
                    }
                },
                indent=2,
            )
        )
    click.echo(redact(f"jitctl: error: {message}" + (f" {hint}" if hint else "")), err=True)


def main(args: Sequence[str] | None = None, standalone_mode: bool = True, **kwargs: Any) -> Any:
    from jitctl.cli.commands import cli

    return cli.main(
        args=list(args) if args is not None else None,
        prog_name="jitctl",
        standalone_mode=standalone_mode,
        **kwargs,
    )
