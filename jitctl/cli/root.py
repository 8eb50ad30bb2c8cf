"""The root command and the table of its commands, loaded lazily: `jitctl --help` lists them
from this table and imports none; a command's module is imported when that command is named.
Adding a command is one row here. (tests/test_lazy_commands.py checks that every row loads and
that its short help is the command's own.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from jitctl.cli import CONTEXT, JitctlGroup
from jitctl.cli.globalopts import app_of, install_globals

# name -> ("module:attribute", the command's short help as its --help would show it)
COMMANDS: dict[str, tuple[str, str]] = {
    "audit": (
        "jitctl.cli.audit_cmds:audit",
        "Audit JIT over subscriptions: unprotected VMs, rules that bypass JIT, wide policies.",
    ),
    "broker": (
        "jitctl.cli.broker_cmds:broker",
        "Access through an approval broker: request, approve, deny, and the audit log.",
    ),
    "completion": (
        "jitctl.cli.completion_cmds:completion",
        "Print the shell completion script for bash, zsh, fish or PowerShell.",
    ),
    "demo": (
        "jitctl.cli.emulator_cmds:demo",
        "Walk through enable -> request -> wait -> verify on a fresh emulated world.",
    ),
    "disable": (
        "jitctl.cli.commands:disable",
        "Remove ports, or the whole VM, from its JIT policy; other VMs stay.",
    ),
    "doctor": (
        "jitctl.cli.doctor_cmds:doctor",
        "Check what JIT needs for a VM and you: Defender plan, policy, NSGs, permissions, public IP.",
    ),
    "emulator": (
        "jitctl.cli.emulator_cmds:emulator",
        "Run the built-in Azure emulator for other clients, or reset the --emulator state.",
    ),
    "enable": (
        "jitctl.cli.commands:enable",
        "Add VMs to the JIT policy of their resource group and region (read, merge, write).",
    ),
    "history": (
        "jitctl.cli.connect_cmds:history",
        "Past requests: start, requestor, VM, port, source, end, state, justification.",
    ),
    "list": (
        "jitctl.cli.commands:list_",
        "List JIT policies: VMs, ports, sources, maximum durations and current grants.",
    ),
    "policy": (
        "jitctl.cli.policy_cmds:policy",
        "Policies as code: YAML files in policies/, validated, planned and applied safely.",
    ),
    "rdp": (
        "jitctl.cli.connect_cmds:rdp",
        "From nothing to a remote desktop: get access for this machine, wait until it is live, connect.",
    ),
    "request": (
        "jitctl.cli.commands:request",
        "Request timed access for one source address, checked against the policy first.",
    ),
    "role": (
        "jitctl.cli.policy_cmds:role",
        "Least-privilege custom role definitions for JIT requesters, policy admins and the broker.",
    ),
    "show": (
        "jitctl.cli.commands:show",
        "Show a VM's JIT configuration and its current grants (active, initiating, failed).",
    ),
    "ssh": (
        "jitctl.cli.connect_cmds:ssh",
        "Get access for this machine, wait until it is live, then run ssh (extra arguments after --).",
    ),
    "ssh-config": (
        "jitctl.cli.tunnel_cmds:ssh_config",
        "Host entries for plain `ssh VM`: one per VM in a JIT policy with the port, via ssh-proxy.",
    ),
    "ssh-proxy": (
        "jitctl.cli.tunnel_cmds:ssh_proxy",
        "For ssh's ProxyCommand: get access, wait until it is live, relay stdin and stdout to the VM.",
    ),
    "status": (
        "jitctl.cli.connect_cmds:status",
        "Current grants: VM, port, source, state, until, time left (a VM, a group, or all).",
    ),
    "tunnel": (
        "jitctl.cli.tunnel_cmds:tunnel",
        "Forward a port on 127.0.0.1 to the VM once access is live, until Ctrl-C.",
    ),
    "verify": (
        "jitctl.cli.commands:verify",
        "Prove access: evaluate the VM's subnet and NIC NSGs as Azure does.",
    ),
}


@click.group(cls=JitctlGroup, context_settings=CONTEXT, lazy_commands=COMMANDS)
@click.version_option(package_name="jitctl")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Azure Just-In-Time VM access: enable a policy, request access, wait until it is live,
    prove it.

    Global options (-o, -s, --query, --debug, --emulator...) go before or after the command.

    \b
    Example, on the built-in emulator (no Azure account needed):
      jitctl --emulator enable vm-win01 -g rg-jit-demo
      jitctl --emulator request vm-win01 -g rg-jit-demo --source-ip 203.0.113.7 --wait
      jitctl --emulator verify vm-win01 -g rg-jit-demo --source-ip 203.0.113.7 -o json
    """
    ctx.call_on_close(app_of(ctx).close)


install_globals(cli, root=True)


def main(args: Sequence[str] | None = None, standalone_mode: bool = True, **kwargs: Any) -> Any:
    """The `jitctl` program (the console script and `python -m jitctl`)."""
    return cli.main(
        args=list(args) if args is not None else None,
        prog_name="jitctl",
        standalone_mode=standalone_mode,
        **kwargs,
    )
