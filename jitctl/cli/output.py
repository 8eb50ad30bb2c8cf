"""The one output switch: a result (or an error) becomes exactly one document on stdout, in the
format -o names; warnings and notes go to stderr, escaped.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import click

from jitctl.errors import ExitCode
from jitctl.textsafe import printable

STRUCTURED = ("json", "jsonc", "yaml", "yamlc", "tsv")


def compile_query(expression: str) -> Any:
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        return jmespath.compile(expression)
    except JMESPathError as err:
        message = " ".join(str(err).split())
        raise click.BadParameter(
            f"'{expression}' is not a JMESPath expression ({message}).",
            param_hint="'--query'",
        ) from None


def error_document(code: ExitCode, message: str, hint: str) -> dict[str, Any]:
    return {
        "error": {
            "exit_code": int(code),
            "kind": code.name.lower(),
            "message": message,
            "hint": hint,
        }
    }


# --- formats -------------------------------------------------------------------------------

_ANSI = {"key": "\x1b[94m", "str": "\x1b[32m", "num": "\x1b[36m", "lit": "\x1b[35m"}
_RESET = "\x1b[0m"
_JSON_TOKEN = re.compile(
    r'(?P<key>"(?:\\.|[^"\\])*"(?=\s*:))|(?P<str>"(?:\\.|[^"\\])*")'
    r"|(?P<lit>\btrue\b|\bfalse\b|\bnull\b)|(?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
)
_YAML_KEY = re.compile(r"^(\s*(?:- )?)([^\s:][^:]*)(:)(?=\s|$)", re.M)


def _color_json(text: str) -> str:
    return _JSON_TOKEN.sub(lambda m: f"{_ANSI[m.lastgroup or 'str']}{m.group(0)}{_RESET}", text)


def _color_yaml(text: str) -> str:
    return _YAML_KEY.sub(lambda m: f"{m.group(1)}{_ANSI['key']}{m.group(2)}{_RESET}:", text)


def _tsv_cell(value: Any) -> str:
    # As az: a nested object is an empty cell, a list its length; text escaped, so a tab or a
    # newline in a justification cannot add columns or rows.
    if isinstance(value, dict):
        return ""
    if isinstance(value, list):
        return str(len(value))
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return printable(value)


def _tsv_row(value: Any) -> str:
    if isinstance(value, dict):
        return "\t".join(_tsv_cell(v) for v in value.values())
    if isinstance(value, list):
        return "\t".join(_tsv_cell(v) for v in value)
    return _tsv_cell(value)


def to_tsv(data: Any) -> str:
    rows = data if isinstance(data, list) else [data]
    return "\n".join(_tsv_row(r) for r in rows)


def to_yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000).rstrip("\n")


def format_data(data: Any, output: str, color: bool) -> str:
    """JSON-shaped data in a structured format."""
    if output in ("json", "jsonc"):
        text = json.dumps(data, indent=2)
        return _color_json(text) if output == "jsonc" and color else text
    if output in ("yaml", "yamlc"):
        text = to_yaml(data)
        return _color_yaml(text) if output == "yamlc" and color else text
    return to_tsv(data)


def generic_table(data: Any) -> str:
    """A queried result in table mode: rows of the scalar fields, as az's table does."""
    from jitctl.cli.render import table

    rows = data if isinstance(data, list) else [data]
    if rows and all(isinstance(r, dict) for r in rows):
        header = [k for k, v in rows[0].items() if not isinstance(v, (dict, list))]
        body = [[_tsv_cell(r.get(k)) for k in header] for r in rows]
        return table(body, [h.upper() for h in header])
    return "\n".join(_tsv_row(r) for r in rows)


def colored() -> bool:
    from jitctl.cli.tables import colored as on

    return on(sys.stdout)


def document(app: Any, result: Any, table_text: Any = None) -> str | None:
    """The text of the one document for `result`, or None (-o none). `table_text` renders the
    table form (default: the renderer's)."""
    from jitctl.cli.render import jsonable, render

    output = app.output or "table"
    if output == "none":
        return None
    now = app.clock.now()
    if output == "table" and not app.query:
        text = table_text() if table_text else render(result, "table", now)
        if colored():
            from jitctl.cli.tables import paint

            return paint(text)
        return text
    data = jsonable(result, now)
    if app.query:
        data = compile_query(app.query).search(data)
    if output == "table":
        return generic_table(data)
    return format_data(data, output, colored())


def emit(app: Any, result: Any, table_text: Any = None) -> None:
    """Write the result as the command's one document on stdout."""
    text = document(app, result, table_text)
    if text is not None:
        click.echo(text)
    for note in notes_of(result):  # what a write or an initiate had to recover from
        warn(app, f"jitctl: {note}")


def notes_of(result: Any) -> tuple[str, ...]:
    """Notes of a result and of its policies (a write's PolicyChange carries its own)."""
    parts = [result, *getattr(result, "policies", ())]
    return tuple(n for part in parts for n in getattr(part, "notes", ()))


def emit_error(output: str, code: ExitCode, message: str, hint: str) -> None:
    if output in STRUCTURED:
        data = error_document(code, message, hint)
        click.echo(to_tsv(data["error"]) if output == "tsv" else format_data(data, output, False))


# --- stderr --------------------------------------------------------------------------------


def warn(app: Any, message: str) -> None:
    """A warning or note on stderr (escaped), unless --only-show-errors."""
    if getattr(app, "only_show_errors", False):
        return
    from jitctl.cli.progress import showing

    spin = showing()
    if spin is not None:
        spin.say(printable(message), "yellow" if colored_stderr() else "")
    else:
        click.echo(on_stderr(printable(message), "yellow"), err=True)


def detail(app: Any, message: str) -> None:
    """Progress detail on stderr, with --verbose only."""
    if getattr(app, "verbose", False) and not getattr(app, "only_show_errors", False):
        click.echo(printable(message), err=True)


def poll_progress(app: Any, spin: Any) -> Any:
    """The spinner on a terminal; with --verbose and no terminal, a line a poll on stderr."""

    def update(elapsed: float, result: Any = None) -> None:
        spin.update(elapsed, result)
        if result is not None and not spin.active:
            detail(app, f"{int(elapsed)}s: " + ("effective" if result.ok else result.problem()))

    return update


def error_line(message: str) -> str:
    from jitctl.cli.logs import redact

    return printable(redact(f"jitctl: error: {message}"))


def hint_line(hint: str) -> str:
    """What to do, on the line after the error (a command in it is ready to paste)."""
    from jitctl.cli.logs import redact

    return printable(redact(f"Hint: {hint}"))


def colored_stderr() -> bool:
    from jitctl.cli.tables import colored as on

    return on(sys.stderr)


def on_stderr(line: str, style: str) -> str:
    """A stderr line (already escaped) in `style` when stderr is a terminal without NO_COLOR."""
    from jitctl.cli.tables import paint_line

    return paint_line(line, style) if colored_stderr() else line


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
