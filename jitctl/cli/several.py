"""Several VMs in one command (`--ids A B C`, as in az): each VM on its own, one document.

One VM: the command's document and errors as ever. Several: a JSON list with one entry per VM
(its result, or its error document with the VM's id), in table form a section per VM; each
failure is also a line on stderr, and the exit code is the highest of the VMs' codes, so that
a partial success never exits 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jitctl.errors import ExitCode, JitctlError
from jitctl.ids import VmRef

Run = Callable[[VmRef], Any]
Judge = Callable[[VmRef, Any], "JitctlError | None"]


@dataclass(frozen=True)
class Outcome:
    """One VM's part: its result (None when it failed before one), and its failure if any."""

    ref: VmRef
    result: Any = None
    error: JitctlError | None = None


def each_vm(app: Any, vm: Any, run: Run, judge: Judge | None = None) -> None:
    """Run `run` for every VM `vm` (a VmSelection) names, then write the one document.
    `judge` says whether a result is itself a failure (verify's not effective, exit 7)."""
    from jitctl.cli import ResultShown
    from jitctl.cli.output import emit, notes_of, warn

    refs = vm.refs(app)
    if len(refs) == 1:
        result = run(refs[0])
        emit(app, result)
        failure = judge(refs[0], result) if judge else None
        if failure is not None:
            raise ResultShown(failure)
        return
    outcomes = [_outcome(ref, run, judge) for ref in refs]
    now = app.clock.now()
    emit(app, [_entry(o) for o in outcomes], lambda: sections(outcomes, now))
    for o in outcomes:  # what each VM's write or initiate had to recover from
        for note in notes_of(o.result):
            warn(app, f"jitctl: {o.ref.name}: {note}")
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        raise ResultShown(summary(app, failed, len(outcomes)))


def _outcome(ref: VmRef, run: Run, judge: Judge | None) -> Outcome:
    try:
        result = run(ref)
    except JitctlError as err:  # this VM's failure; the others still run
        return Outcome(ref, None, err)
    return Outcome(ref, result, judge(ref, result) if judge else None)


def _entry(outcome: Outcome) -> Any:
    """A VM's entry in the list: its result, else its error document (with the VM's id)."""
    from jitctl.cli.output import error_document

    if outcome.result is not None:
        return outcome.result
    err = outcome.error
    assert err is not None
    return {"vm_id": outcome.ref.id, **error_document(err.code, err.message, err.hint)}


def sections(outcomes: list[Outcome], now: Any) -> str:
    """The table form: a section per VM, headed by its name and group."""
    from jitctl.cli.render import render
    from jitctl.textsafe import printable

    parts = []
    for o in outcomes:
        head = f"VM {o.ref.name} (group {o.ref.resource_group})"
        if o.result is not None:
            body = render(o.result, "table", now)
        else:
            assert o.error is not None
            body = printable(f"error: {o.error}")
        parts.append(f"{head}\n{body}")
    return "\n\n".join(parts)


def summary(app: Any, failed: list[Outcome], total: int) -> JitctlError:
    """The error the command ends with: each VM's failure said on stderr first, the count last,
    with the highest of their exit codes."""
    import click

    from jitctl.cli.globalopts import command_line
    from jitctl.cli.output import error_line, hint_line, on_stderr

    for o in failed:
        assert o.error is not None
        click.echo(on_stderr(error_line(f"{o.ref.name}: {o.error.message}"), "red"), err=True)
        hint = o.error.hint_with(lambda command: command_line(app, command))
        if hint:
            click.echo(hint_line(hint), err=True)
    worst = max((o.error.code for o in failed if o.error is not None), default=ExitCode.ERROR)
    names = ", ".join(o.ref.name for o in failed)
    error = JitctlError(
        f"{len(failed)} of {total} VMs failed ({names}).", "Each VM's error is above."
    )
    error.code = ExitCode(worst)
    return error
