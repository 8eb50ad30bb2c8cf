"""The global options, defined once: accepted before or after any subcommand (as az accepts
them), listed under "Global options" in every command's help. Kept light (no App, no parsing
module at import) because `jitctl --help` and usage errors load this and little else.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from jitctl.app import App
    from jitctl.errors import Suggested

OUTPUT_FORMATS = ("json", "jsonc", "yaml", "yamlc", "table", "tsv", "none")
CLOUDS = ("AzureCloud", "AzureUSGovernment", "AzureChinaCloud")
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# What the command line sets on the App, reset when an App is handed to another invocation.
PER_INVOCATION = {
    "subscriptions": (),
    "all_subscriptions": False,
    "output": "table",
    "query": None,
    "verbose": False,
    "only_show_errors": False,
    "debug": False,
    "as_user": None,
}


def app_of(ctx: click.Context) -> App:
    """The one App of this invocation, made on first use (a test passes its own as obj)."""
    from jitctl.app import App

    root = ctx.find_root()
    if not isinstance(root.obj, App):
        root.obj = App()
    if ctx.obj is not root.obj:
        ctx.obj = root.obj
    return root.obj


# --- global options ------------------------------------------------------------------------


class GlobalOption(click.Option):
    """An option every command accepts; shown under "Global options" in each command's help."""


def _set(attr: str) -> Callable[[click.Context, App, Any], None]:
    def apply(ctx: click.Context, app: App, value: Any) -> None:
        setattr(app, attr, value)

    return apply


def _debug(ctx: click.Context, app: App, value: Any) -> None:
    if not app.debug:
        from jitctl.cli.logs import enable_debug_logging

        ctx.find_root().call_on_close(enable_debug_logging())
    app.debug = True


def _query(ctx: click.Context, app: App, value: Any) -> None:
    from jitctl.cli.output import compile_query

    compile_query(value)  # a bad expression is a usage error now, before any call to Azure
    app.query = value


def _subscriptions(ctx: click.Context, app: App, value: Any) -> None:
    # Repeatable: before and after the command the values add up. A command on one
    # subscription refuses more than one (App.subscription_id, exit 2).
    given = tuple(dict.fromkeys((*app.subscriptions, *value)))
    app.subscriptions = given
    app.subscription = given[0]


def _emulator(ctx: click.Context, app: App, value: Any) -> None:
    app.emulator = True


# (declarations, apply, click keyword arguments, root-only keyword arguments)
GLOBALS: list[tuple[tuple[str, ...], Callable[[click.Context, App, Any], None], dict, dict]] = [
    (
        ("-o", "--output"),
        _set("output"),
        {
            "type": click.Choice(OUTPUT_FORMATS),
            "metavar": "FORMAT",
            "help": "json, jsonc, yaml, yamlc, table, tsv or none (default table, or "
            "AZURE_CORE_OUTPUT as in az).",
        },
        {"envvar": "AZURE_CORE_OUTPUT"},
    ),
    (
        ("--query",),
        _query,
        {"metavar": "JMESPATH", "help": "JMESPath query over the JSON result (as in az)."},
        {},
    ),
    (
        ("-s", "--subscription"),
        _subscriptions,
        {
            "multiple": True,
            "help": "Subscription name or id (else AZURE_SUBSCRIPTION_ID, else the Azure CLI's "
            "default); repeatable for list, status, history, policy export/plan/apply, audit.",
        },
        {},
    ),
    (
        ("--all-subscriptions",),
        _set("all_subscriptions"),
        {
            "is_flag": True,
            "help": "Every subscription the credential sees (ARM's GET /subscriptions) whose "
            "state is Enabled (Warned, PastDue and Disabled ones are skipped); for the commands "
            "-s repeats for, and ssh-config.",
        },
        {},
    ),
    (
        ("--cloud",),
        _set("cloud"),
        {
            "type": click.Choice(CLOUDS, case_sensitive=False),
            "metavar": "NAME",
            "help": "AzureCloud (default), AzureUSGovernment or AzureChinaCloud.",
        },
        {},
    ),
    (
        ("--arm-endpoint",),
        _set("arm_endpoint"),
        {
            "metavar": "URL",
            "help": "A custom cloud's ARM endpoint (else JITCTL_ARM_ENDPOINT).",
        },
        {},
    ),
    (
        ("--emulator",),
        _emulator,
        {
            "is_flag": True,
            "help": "Run against the built-in Azure emulator (or JITCTL_EMULATOR=1).",
        },
        {"envvar": "JITCTL_EMULATOR"},
    ),
    (
        ("--as", "as_user"),
        _set("as_user"),
        {
            "metavar": "UPN",
            "help": "With --emulator: the test user the broker commands act as (default "
            "alice@contoso.com; EMULATOR.md lists them).",
        },
        {},
    ),
    (
        ("--only-show-errors",),
        _set("only_show_errors"),
        {"is_flag": True, "help": "Only errors on stderr: no warnings or notes."},
        {},
    ),
    (
        ("--verbose",),
        _set("verbose"),
        {"is_flag": True, "help": "More progress detail on stderr."},
        {},
    ),
    (
        ("--debug",),
        _debug,
        {"is_flag": True, "help": "Tracebacks and HTTP logging on stderr (tokens redacted)."},
        {},
    ),
]


TYPED_GLOBALS = "jitctl.typed_globals"  # meta key: global options typed (completion)


def _callback(apply: Callable[[click.Context, App, Any], None]) -> Callable[..., None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None or value is False or value == ():
            return
        if ctx.resilient_parsing:  # shell completion: remember what was typed, act on nothing
            ctx.find_root().meta.setdefault(TYPED_GLOBALS, {})[param.name] = value
            return
        apply(ctx, app_of(ctx), value)

    return callback


def global_params(root: bool, taken: frozenset[str] = frozenset()) -> list[click.Parameter]:
    """The global options, less those whose names a command declares itself (`broker log`
    has its own -o, which also takes csv)."""
    return [
        GlobalOption(
            list(decls),
            expose_value=False,
            callback=_callback(apply),
            **kwargs,
            **(root_only if root else {}),
        )
        for decls, apply, kwargs, root_only in GLOBALS
        if not taken & set(decls)
    ]


def _format_options(self: click.Command, ctx: click.Context, formatter: Any) -> None:
    own: list[tuple[str, str]] = []
    shared: list[tuple[str, str]] = []
    for param in self.get_params(ctx):
        record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
        if record is not None:
            (shared if isinstance(param, GlobalOption) else own).append(record)
    if own:
        with formatter.section("Options"):
            formatter.write_dl(own)
    if shared:
        with formatter.section("Global options"):
            formatter.write_dl(shared)
    if isinstance(self, click.Group):
        self.format_commands(ctx, formatter)


def install_globals(command: click.Command, root: bool = False) -> None:
    """Give a command (and, for a group, each of its commands) the global options."""
    if not any(isinstance(p, GlobalOption) for p in command.params):
        taken = frozenset(o for p in command.params for o in getattr(p, "opts", ()))
        command.params.extend(global_params(root, taken))
        command.format_options = types.MethodType(_format_options, command)  # type: ignore[method-assign]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            install_globals(sub)


def output_in(args: Sequence[str]) -> str:
    """The output format named in raw arguments (for an error met before options are parsed)."""
    found = os.environ.get("AZURE_CORE_OUTPUT")
    decls = GLOBALS[0][0]
    it = iter(args)
    for arg in it:
        if arg == "--":
            break
        value = None
        if arg in decls:
            value = next(it, None)
        elif arg.startswith("--output="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-o") and not arg.startswith("--") and len(arg) > 2:
            value = arg[2:]
        if value in OUTPUT_FORMATS:
            found = value
    return found if found in OUTPUT_FORMATS else "table"


# --- suggested command lines ---------------------------------------------------------------


def command_line(app: Any, command: Suggested) -> str:
    """A suggested command line with the global options in force (--emulator, --cloud,
    --arm-endpoint, -s), so that, pasted, it acts where the command that suggested it did."""
    import shlex

    words = ["jitctl", *where_options(app)]
    subscription = subscription_for(app, command.subscription)
    if subscription:
        words += ["-s", subscription]
    return shlex.join([*words, *command.words])


def where_options(app: Any) -> list[str]:
    """The global options that say where a command acts, besides -s: --emulator, --cloud and
    --arm-endpoint as in force (for a command line jitctl suggests or writes for later)."""
    words = ["--emulator"] if getattr(app, "emulator", False) else []
    if getattr(app, "cloud", None):
        words += ["--cloud", app.cloud]
    if getattr(app, "arm_endpoint", None):
        words += ["--arm-endpoint", app.arm_endpoint]
    return words


def subscription_for(app: Any, wanted: str | None) -> str | None:
    """The -s a suggested command needs: the user's own spelling (a name stays a name) when it
    is the subscription wanted, else the wanted id, or none when the default is the one."""
    from jitctl.errors import JitctlError

    subs = tuple(getattr(app, "subscriptions", ()) or ())
    given = subs[0] if len(subs) == 1 and not getattr(app, "all_subscriptions", False) else None
    if wanted is None:
        return given
    try:  # resolved already by the command that failed: no call to Azure here
        current = app.resolve(given) if given else app.default_subscription()
    except JitctlError:
        current = None
    if current and current.lower() == wanted.lower():
        return given
    return wanted
