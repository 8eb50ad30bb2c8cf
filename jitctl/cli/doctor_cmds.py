"""doctor: what a VM and the signed-in identity lack for JIT, one line per check."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import click

from jitctl.app import App
from jitctl.cli.globalopts import CONTEXT, command_line
from jitctl.cli.options import VmSelection, vm_must_exist, vm_options
from jitctl.cli.several import each_vm
from jitctl.ids import VmRef


@click.command(context_settings=CONTEXT)
@vm_options(many=True)
@click.pass_obj
def doctor(app: App, vm: VmSelection) -> None:
    """Check what JIT needs for a VM and you: Defender plan, policy, NSGs, permissions, public IP.

    One line per check; exit 6 when one that requests need is missing, with what to do.

    \b
    Example:
      jitctl doctor vm-win01 -g rg-prod
    """
    from jitctl.errors import Refused, complete_hint
    from jitctl.services.doctor import diagnose

    def one(ref: VmRef) -> Any:
        with vm_must_exist(app, ref):
            result = diagnose(app.gateway(), ref)
        return dataclasses.replace(  # each hint's command with the global options in force
            result,
            checks=tuple(
                dataclasses.replace(
                    c, hint=complete_hint(c.hint, c.suggested, partial(command_line, app))
                )
                for c in result.checks
            ),
        )

    def judge(ref: VmRef, result: Any) -> Refused | None:
        failed = [c for c in result.checks if c.required and not c.ok]
        if not failed:
            return None
        first = failed[0]
        return Refused(
            f"{len(failed)} check(s) failed for {result.vm_name}: {first.name}: {first.detail}.",
            first.hint,
        )

    each_vm(app, vm, one, judge)
