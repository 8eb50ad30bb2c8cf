"""Options defined once: the options several commands share (VM selection, ports, sources,
timeout); the global options are in globalopts.py. The types that parse values are in
paramtypes.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import click

from jitctl.app import App
from jitctl.cli.completion import complete_group, complete_vm
from jitctl.cli.paramtypes import DurationType, PortType, SourceType
from jitctl.ids import VmRef
from jitctl.parsing import parse_vm

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
            what = ctx.command.name if ctx is not None else "This command"
            raise click.UsageError(
                f"{what} works on one VM at a time; {len(self.given)} were given: name one", ctx
            )
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
    from jitctl.errors import GroupNotFound, NotFound

    try:
        yield
    except GroupNotFound:
        raise
    except NotFound as err:
        try:
            app.gateway().get_vm(ref)
        except GroupNotFound as missing:
            raise missing from err
        except NotFound as missing:
            raise NotFound(
                missing.message,
                f"Check the name and the group: az vm list -g {ref.resource_group} -o table",
            ) from err
        raise
