"""A user's shell for the docs' examples (tests/test_docs.py): a fresh home folder, the
environment, the emulator's state file; and the effect each main example must have had there.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.testing import Result

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.clock import FakeClock
from jitctl.ids import VmRef
from jitctl.services.verify import verify

OFFLINE_ADDRESS = "203.0.113.7"  # what rdp and ssh request for when offline, on the emulator


class FakeRunner:
    """Records what rdp and ssh would start: every client is installed, ssh exits 0."""

    platform = "linux"

    def __init__(self) -> None:
        self.started: list[list[str]] = []

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}"

    def start(self, args: list[str]) -> None:
        self.started.append(list(args))

    def run(self, args: list[str]) -> int:
        self.started.append(list(args))
        return 0


@dataclass
class Session:
    """One document's run: a home folder, a working folder and an environment, as a user's
    shell has; the emulator's state is in the state file the environment names."""

    env: dict[str, str | None]
    cwd: Path
    runner: FakeRunner
    clock: FakeClock

    def app(self) -> App:
        """A new App for each command, as a new process would make (only its clock and
        the programs it starts are the test's)."""
        return App(clock=self.clock, runner=self.runner, interactive=False)


def new_session(base: Path, offline: str) -> Session:
    """A fresh home folder and nothing of the caller's environment (conftest clears JITCTL_*,
    AZURE_*, IDENTITY_*), a state file in a temporary folder, and no way out to the internet:
    the IP echo services are at `offline`, where nothing listens."""
    home, cwd = base / "home", base / "work"
    home.mkdir()
    cwd.mkdir()
    env: dict[str, str | None] = {
        "HOME": str(home),
        "USERPROFILE": str(home),
        "JITCTL_EMULATOR_STATE": str(base / "state" / "emulator.sqlite"),
        "JITCTL_IP_ECHO_URLS": f"{offline},{offline}ip",
        "AZURE_CONFIG_DIR": None,  # az's own default: ~/.azure in the fresh home, absent
        **{name: None for name in XDG},
        **{name: None for name in PROXIES},
    }
    return Session(env, cwd, FakeRunner(), FakeClock())


XDG = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@contextmanager
def environment(env: dict[str, str | None]) -> Iterator[None]:
    """os.environ as `env` says (None: unset) for the time of a check, then as it was."""
    saved = {name: os.environ.get(name) for name in env}
    try:
        for name, value in env.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


# --- effects -------------------------------------------------------------------------------


def parse(words: list[str]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The command path and its parameters, as click parses them (nothing runs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # click 8.2 renames protected_args
        return parse_args(words)


def parse_args(words: list[str]) -> tuple[tuple[str, ...], dict[str, Any]]:
    args = [w for w in words[1:] if not re.fullmatch(r"[A-Z_]+=.*", w)]
    ctx = cli.make_context("jitctl", list(args), resilient_parsing=True)
    command: click.Command = cli
    path: list[str] = []
    rest = [*ctx.protected_args, *ctx.args]
    while isinstance(command, click.Group) and rest:
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            break
        path.append(rest.pop(0))
        command = sub
        ctx = command.make_context(path[-1], rest, parent=ctx, resilient_parsing=True)
        rest = [*getattr(ctx, "protected_args", []), *ctx.args]
    return tuple(path), dict(ctx.params)


def policy_ports(app: App, ref: VmRef) -> set[int]:
    gw = app.gateway()
    return {
        p.number
        for policy in gw.list_policies(ref.subscription_id, ref.resource_group)
        for vm in policy.vms
        if vm.id.lower() == ref.id.lower()
        for p in vm.ports
    }


def check_effect(session: Session, words: list[str], result: Result) -> None:
    path, params = parse(words)
    app = session.app()
    app.emulator = True  # JITCTL_EMULATOR or --emulator: as the command ran
    given = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-s", "--subscription")]
    if given:
        app.subscription, app.subscriptions = given[0], tuple(given)
    group = params.get("resource_group")
    sub = app.default_subscription()  # also after -s repeated or --all-subscriptions

    def ref(name: str) -> VmRef:
        return VmRef(sub, group or "", name)

    ports = {int(p) for p in params.get("ports") or ()} or {3389}
    vms = params.get("vms")  # VM names, or the size of the fleet world (emulator reset --vms)
    names = [*(vms if isinstance(vms, (list, tuple)) else ()), *(params.get("names") or ())]
    params["vm"] = names[0] if names else None
    if path == ("enable",) and not params["dry_run"]:
        for name in names:
            assert ports <= policy_ports(app, ref(name)), f"enable: {name} not in the policy"
    elif path == ("disable",) and not params["dry_run"]:
        left = policy_ports(app, ref(params["vm"]))
        assert not (ports & left if params["ports"] else left), "disable: still in the policy"
    elif path == ("request",):
        gw = app.gateway()
        grants = [
            port
            for policy in gw.list_policies(sub, group)
            for request in policy.requests
            for vm in request.vms
            if vm.id.lower() == ref(params["vm"]).id.lower()
            for port in vm.ports
            if port.source == params["source_ip"] and port.number in ports
        ]
        assert grants, "request: no grant in the policy's requests"
        if params["wait"]:
            assert verify(gw, ref(params["vm"]), params["source_ip"], sorted(ports)).ok
    elif path == ("verify",):
        assert verify(app.gateway(), ref(params["vm"]), params["source_ip"], sorted(ports)).ok
    elif path in (("rdp",), ("ssh",)):
        # offline, on the emulator: access for the documentation address, as the notice said
        source = params["source_ip"] or OFFLINE_ADDRESS
        assert source == OFFLINE_ADDRESS or params["source_ip"], source
        port = params.get("port") or (3389 if path == ("rdp",) else 22)
        assert verify(app.gateway(), ref(params["vm"]), source, [port]).ok
        if not params["no_launch"]:
            program = session.runner.started[-1]
            assert program[0].endswith("xfreerdp3" if path == ("rdp",) else "ssh"), program
    elif path == ("policy", "export") and params.get("out"):
        assert Path(session.cwd / params["out"]).read_text().strip()
    elif path == ("emulator", "reset"):
        from jitctl.emulator.store import read_file

        kept = read_file(params["state"] or app_state_file()).settings
        assert all(getattr(kept, k) == v for k, v in params["settings"].items()), kept
        assert params["latency"] is None or kept.latency == params["latency"], kept


def app_state_file() -> Path:
    from jitctl.emulator.statefile import emulator_state_file

    return emulator_state_file()
