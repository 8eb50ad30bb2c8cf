"""The demo and the emulator commands."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from jitctl.app import App
from jitctl.cli import CONTEXT

WORLD_NAMES = [
    "demo",
    "busy",
    "multinic",
    "docs",
    "empty",
    "fleet",
    "per-vm",
    "firewall",
    "hub-spoke",
]


def fleet_options(f: Any) -> Any:
    """--vms and --subscriptions: the size of the `fleet` world."""
    f = click.option(
        "--subscriptions",
        type=click.IntRange(1, 1000),
        help="Subscriptions of the fleet world (default 1).",
    )(f)
    return click.option(
        "--vms",
        type=click.IntRange(0, 100_000),
        help="VMs of the fleet world (default 1000), in resource groups of 50-500.",
    )(f)


class SecondsType(click.ParamType):
    name = "seconds"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value
        from jitctl.emulator.overrides import BadSetting, seconds

        try:
            return seconds(value, param.name if param is not None else "value")
        except BadSetting as exc:
            self.fail(str(exc), param, ctx)


def latency_option(f: Any) -> Any:
    """--latency: what every ARM call takes (the `latency` setting, kept in a state file)."""
    return click.option(
        "--latency",
        type=SecondsType(),
        help="What every ARM call takes: 100ms, 0.2s (ARM on a slow day) or seconds; calls "
        "overlap (the latency setting; a state file keeps its own unless given).",
    )(f)


def _settings(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    if not value:
        return {}
    from jitctl.emulator.overrides import BadSetting, parse

    try:
        return parse(value)
    except BadSetting as exc:
        raise click.BadParameter(f"{exc} (EMULATOR.md, 'Settings').") from None


def setting_options(f: Any) -> Any:
    """--set NAME=VALUE, repeatable: an emulator setting (jitctl.emulator.Settings)."""
    return click.option(
        "--set",
        "settings",
        multiple=True,
        metavar="NAME=VALUE",
        callback=_settings,
        help="Change an emulator setting (repeatable), e.g. initiate_fate=never; "
        "EMULATOR.md lists them.",
    )(f)


def seed_world(backend: Any, world: str, vms: int | None, subscriptions: int | None) -> None:
    """Seed `world` into `backend`; --vms/--subscriptions size the fleet world only."""
    from jitctl.emulator.worlds import WORLDS

    if world != "fleet":
        if vms is not None or subscriptions is not None:
            raise click.UsageError("--vms and --subscriptions go with --world fleet only.")
        WORLDS[world](backend)
        return
    from jitctl.emulator.fleet import fleet

    fleet(backend, 1000 if vms is None else vms, subscriptions or 1)


@click.command(context_settings=CONTEXT)
@click.option(
    "--source-ip",
    help="Address to request access for (default: this machine's public IPv4, "
    "or 203.0.113.7 when offline).",
)
@click.option(
    "--fast", is_flag=True, help="No propagation delay (Azure takes ~1 minute, the demo 3 s)."
)
@click.option(
    "--broker",
    "with_broker",
    is_flag=True,
    help="The approval flow instead: a broker in-process, alice asks, bob approves, the "
    "broker initiates, access is verified, the audit log is printed.",
)
@click.pass_obj
def demo(app: App, source_ip: str | None, fast: bool, with_broker: bool) -> None:
    """Walk through enable -> request -> wait -> verify on a fresh emulated world. No Azure needed.

    \b
    Example:
      jitctl demo
      jitctl demo --broker --fast --source-ip 203.0.113.7
    """
    from jitctl.cli.output import emit
    from jitctl.cli.progress import spinning
    from jitctl.cli.render import emit_step
    from jitctl.demo import run_demo
    from jitctl.emulator.backend import Backend
    from jitctl.emulator.settings import Settings
    from jitctl.emulator.worlds import demo as seed
    from jitctl.errors import NotEffective
    from jitctl.parsing import parse_source
    from jitctl.publicip import emulated_public_ip

    # the App's clock: the real one for a user, a test's fake one (the waits take no time)
    backend = Backend(settings=Settings(propagation_delay=0.0 if fast else 3.0), clock=app.clock)
    seed(backend)
    demo_app = App.for_backend(backend)
    note = ""
    if source_ip:
        source = parse_source(source_ip).split("/")[0]
    else:
        source, note = emulated_public_ip()
    if with_broker:
        from jitctl.cli import broker_demo

        return broker_demo.run(app, source, fast)
    steps = []
    streaming = app.output == "table" and not app.query  # a step at a time, painted on a terminal
    for step in run_demo(demo_app, source, note, progress=spinning):
        steps.append(step)
        if streaming:
            emit(app, step, functools.partial(emit_step, step, demo_app.clock.now()))
    allowed, denied = steps[-2].result, steps[-1].result
    ok = allowed.ok and not denied.effective
    if not streaming:
        emit(app, {"steps": steps, "arm_calls": demo_app.arm_calls(), "ok": ok})
    else:
        verdict = (
            f"Verdict: {source} reaches vm-win01:3389 through the JIT allow rule; "
            f"198.51.100.99 does not. {demo_app.arm_calls()} ARM calls in all."
            if ok
            else "Verdict: the demo did not reach the expected state."
        )
        emit(app, None, lambda: verdict)
    if not ok:
        raise NotEffective(
            "The demo's final verification failed.", "Run with --debug and report it."
        )


@click.group(context_settings=CONTEXT)
def emulator() -> None:
    """Run the built-in Azure emulator for other clients, or reset the --emulator state."""


@emulator.command(context_settings=CONTEXT)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8443,
    show_default=True,
    help="TCP port on 127.0.0.1 (0: any free).",
)
@click.option(
    "--state",
    "state",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the emulator's state in this SQLite file (one transaction per request).",
)
@click.option(
    "--world",
    type=click.Choice(WORLD_NAMES),
    default="demo",
    show_default=True,
    help="World to seed when there is no state file.",
)
@click.option(
    "--propagation-delay",
    type=SecondsType(),
    default=5.0,
    show_default=True,
    help="How long until a JIT allow rule appears: seconds, or 30s, 1m.",
)
@latency_option
@click.option(
    "--fault-rate",
    default=0.0,
    show_default=True,
    help="Share of JIT policy writes and initiates answered 503, half of them after the fact.",
)
@fleet_options
@setting_options
def serve(
    port: int,
    state: Path | None,
    world: str,
    propagation_delay: float,
    latency: float | None,
    fault_rate: float,
    vms: int | None,
    subscriptions: int | None,
    settings: dict[str, Any],
) -> None:
    """Serve the emulator over HTTPS with a managed-identity token endpoint.

    Prints the shell lines that point DefaultAzureCredential, the azure-mgmt clients and jitctl at it.
    With --state, every request is one transaction on that file, which `jitctl --emulator`
    commands may share; --set changes a setting, also one the file keeps.

    \b
    Example:
      jitctl emulator serve --port 8443 --state ./emulator.sqlite
    """
    import time

    from jitctl.emulator.backend import Backend
    from jitctl.emulator.server import EmulatorServer, PortUnavailable
    from jitctl.emulator.settings import Settings, write_faults
    from jitctl.errors import BadInput

    backend = Backend(settings=Settings(propagation_delay=propagation_delay))
    seed_world(backend, world, vms, subscriptions)  # a new state file's; an old one keeps its own
    backend.faults.extend(write_faults(fault_rate))
    server = EmulatorServer(backend, port=port, state_file=state)
    try:
        server.start()
    except PortUnavailable as err:
        raise BadInput(
            str(err), "Pick another with --port, or --port 0 for any free one."
        ) from None
    try:
        with stop_on_sigterm():
            if latency is not None:
                settings = {**settings, "latency": latency}
            if settings:
                server.change_settings(settings)
            click.echo("\n".join(server.shell_lines()))
            sys.stdout.flush()  # `serve > emulator.env &`: the lines are there before it stops
            click.echo(
                f"# jitctl emulator listening on {server.endpoint} (Ctrl-C to stop)", err=True
            )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:  # the temporary folder with the key goes, whatever ended the server
        server.stop()


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """A `kill` (SIGTERM) ends the server as Ctrl-C does, so that it cleans up after itself."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only (a test's runner thread, say)
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@emulator.command(context_settings=CONTEXT)
@click.option("--world", type=click.Choice(WORLD_NAMES), default="demo", show_default=True)
@click.option(
    "--state",
    "state",
    type=click.Path(dir_okay=False, path_type=Path),
    help="State file to reset (default: the --emulator one, or JITCTL_EMULATOR_STATE).",
)
@fleet_options
@latency_option
@setting_options
@click.pass_obj
def reset(
    app: App,
    world: str,
    state: Path | None,
    vms: int | None,
    subscriptions: int | None,
    latency: float | None,
    settings: dict[str, Any],
) -> None:
    """Start the --emulator state afresh with a named world (also mends a damaged state file).

    \b
    Example:
      jitctl emulator reset --world busy
      jitctl emulator reset --set initiate_fate=never --set defender_plan=off
    """
    from jitctl.app import EMULATED_PROPAGATION
    from jitctl.emulator.backend import Backend
    from jitctl.emulator.settings import Settings
    from jitctl.emulator.statefile import emulator_state_file
    from jitctl.emulator.store import reset_file

    if latency is not None:
        settings = {**settings, "latency": latency}
    backend = Backend(
        settings=Settings(**{"propagation_delay": EMULATED_PROPAGATION, **settings}),
        clock=app.clock,
    )
    seed_world(backend, world, vms, subscriptions)
    from jitctl.cli.output import emit

    path = state or emulator_state_file()
    reset_file(path, backend)
    changed = "".join(f"; {k} = {v}" for k, v in settings.items())
    done = f"Emulator state reset to world '{world}'{changed}."
    emit(app, {"world": world, "state": str(path), "settings": settings}, lambda: done)
