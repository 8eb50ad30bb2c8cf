"""Options defined once: the global options (accepted before or after any subcommand, as az
accepts them) and the options several commands share (VM selection, ports, sources, timeout).
The types that parse their values are in paramtypes.py.
"""

from __future__ import annotations

import functools
import os
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import click

from jitctl.app import App
from jitctl.cli.completion import complete_group, complete_vm
from jitctl.cli.paramtypes import DurationType, PortType, SourceType
from jitctl.ids import VmRef, parse_vm

OUTPUT_FORMATS = ("json", "jsonc", "yaml", "yamlc", "table", "tsv", "none")
CLOUDS = ("AzureCloud", "AzureUSGovernment", "AzureChinaCloud")
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# What the command line sets on the App, reset when an App is handed to another invocation.
PER_INVOCATION = {
    "output": "table",
    "query": None,
    "verbose": False,
    "only_show_errors": False,
    "debug": False,
}


def app_of(ctx: click.Context) -> App:
    """The one App of this invocation, made on first use (a test passes its own as obj)."""
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
        _set("subscription"),
        {
            "help": "Subscription name or id (else AZURE_SUBSCRIPTION_ID, else the Azure CLI's "
            "default)."
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
        if value is None or value is False:
            return
        if ctx.resilient_parsing:  # shell completion: remember what was typed, act on nothing
            ctx.find_root().meta.setdefault(TYPED_GLOBALS, {})[param.name] = value
            return
        apply(ctx, app_of(ctx), value)

    return callback


def global_params(root: bool) -> list[click.Parameter]:
    return [
        GlobalOption(
            list(decls),
            expose_value=False,
            callback=_callback(apply),
            **kwargs,
            **(root_only if root else {}),
        )
        for decls, apply, kwargs, root_only in GLOBALS
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
        command.params.extend(global_params(root))
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


ALLOW_ANY = click.option(
    "--allow-any-source",
    is_flag=True,
    is_eager=True,  # read before the sources it allows
    help="Accept a wide-open source ('*', 0.0.0.0/0, Internet, Any).",
)


# --- VM selection: a name (positional or -n) with -g, or resource ids ----------------------


def ports_option(help_text: str) -> Callable[[Any], Any]:
    return click.option("--port", "ports", multiple=True, type=PortType(), help=help_text)


def source_ip_option(kind: str, help_text: str) -> Callable[[Any], Any]:
    return click.option("--source-ip", required=True, type=SourceType(kind), help=help_text)


def group_option(f: Any) -> Any:
    return click.option(
        "-g",
        "--resource-group",
        help="Resource group of VMs named by name (default: az's configured group).",
        shell_complete=complete_group,
    )(f)


def _split_ids(ctx: click.Context, param: click.Parameter, value: Sequence[str]) -> tuple:
    return tuple(v for item in value for v in item.split())


def _one(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    return (value,) if value else ()


@dataclass(frozen=True)
class VmSelection:
    """The VMs a command was given: positional(s), -n/--name and --ids, with -g."""

    given: tuple[str, ...]
    resource_group: str | None
    many: bool = False

    def refs(self, app: App) -> list[VmRef]:
        """At least one VM, and one only unless the command takes several."""
        ctx = click.get_current_context(silent=True)
        if not self.given:
            raise click.UsageError("Missing the VM: name it, or pass -n NAME or --ids ID", ctx)
        if len(self.given) > 1 and not self.many:
            raise click.UsageError(f"One VM at a time here; {len(self.given)} were given", ctx)
        return vm_refs(app, self.given, self.resource_group)

    def one(self, app: App) -> VmRef:
        return self.refs(app)[0]


def vm_options(many: bool = False) -> Callable[[Any], Any]:
    """VM positional(s), -n/--name, --ids and -g, handed to the command as one `vm`
    (a VmSelection)."""
    options = [
        click.argument("vms", nargs=-1, required=False, metavar="VM...", shell_complete=complete_vm)
        if many
        else click.argument(
            "vms", required=False, metavar="VM", callback=_one, shell_complete=complete_vm
        ),
        click.option(
            "-n",
            "--name",
            "names",
            multiple=True,
            help="VM name (as the positional).",
            shell_complete=complete_vm,
        ),
        click.option(
            "--ids",
            multiple=True,
            callback=_split_ids,
            help="One or more VM resource ids (instead of names and -g).",
        ),
        group_option,
    ]

    def decorate(f: Any) -> Any:
        @functools.wraps(f)
        def command(*args: Any, **kwargs: Any) -> Any:
            given = (*kwargs.pop("vms"), *kwargs.pop("names"), *kwargs.pop("ids"))
            kwargs["vm"] = VmSelection(given, kwargs.pop("resource_group"), many)
            return f(*args, **kwargs)

        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def vm_refs(app: App, names: Sequence[str], group: str | None) -> list[VmRef]:
    """VMs by name (with -g, else az's default group) or full id; an id names the subscription
    when none is given."""
    if group is None and any(not n.startswith("/") for n in names):
        from jitctl.clouds import default_resource_group

        group = default_resource_group()
    sub = app.subscription_id if any(not n.startswith("/") for n in names) else app.subscription
    refs = [parse_vm(n, resource_group=group, subscription_id=sub) for n in names]
    if app.subscription is None and not app.emulator and refs:
        app.subscription = refs[0].subscription_id
    return refs


def timeout_option(help_text: str) -> Callable[[Any], Any]:
    return click.option(
        "--timeout",
        type=DurationType(minimum=timedelta(seconds=1)),
        help=help_text + " (30s, 5m; default 5m).",
    )


DEFAULT_TIMEOUT = timedelta(minutes=5)


@contextmanager
def vm_must_exist(app: App, ref: VmRef) -> Iterator[None]:
    """A VM that is in no JIT policy may not exist at all (or the group may be wrong): then say
    that, with Azure's own words, rather than "JIT is not enabled" (one GET, on failure only)."""
    from jitctl.errors import NotFound

    try:
        yield
    except NotFound as err:
        try:
            app.gateway().get_vm(ref)
        except NotFound as missing:
            raise NotFound(
                missing.message,
                f"Check the name and the group: az vm list -g {ref.resource_group} -o table",
            ) from err
        raise
