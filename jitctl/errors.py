"""Exit codes and the error types jitctl raises; the CLI maps them to exits in one place."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Stable exit codes, documented in the README; runbooks depend on them."""

    OK = 0
    ERROR = 1
    BAD_INPUT = 2
    NOT_SIGNED_IN = 3
    NOT_FOUND = 4
    FORBIDDEN = 5
    REFUSED = 6
    NOT_EFFECTIVE = 7
    TIMED_OUT = 8
    CONTENDED = 9  # a write could not be confirmed: another writer keeps replacing the policy
    CHANGES_PENDING = 10  # `policy plan --detailed-exitcode`: the plan has changes
    FINDINGS = 11  # `audit`: findings of a severity --fail-on names (default: high)


# The command that turns on Defender for Servers Plan 2, which JIT needs (said by errors and doctor)
ENABLE_DEFENDER = "az security pricing create --name VirtualMachines --tier standard --subplan P2"


@dataclass(frozen=True)
class Suggested:
    """A jitctl command line a hint suggests. The library writes it bare (`str()`); the CLI
    writes it with the global options in force (jitctl.cli.globalopts.command_line), so that,
    pasted, it acts on the same subscription, cloud or emulator."""

    words: tuple[str, ...]  # after `jitctl`
    subscription: str | None = None  # the subscription it must act on, when it names a resource

    def __str__(self) -> str:
        return shlex.join(("jitctl", *self.words))


def suggest(*words: object, subscription: str | None = None) -> Suggested:
    return Suggested(tuple(str(w) for w in words), subscription)


class JitctlError(Exception):
    """Base error: a one-line message and a hint that says what to do next; `suggested` are
    the command lines the hint names (written in it as `str(command)`)."""

    code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, hint: str = "", suggested: Sequence[Suggested] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.suggested = tuple(suggested)

    def __str__(self) -> str:
        # The hint on a line of its own: Azure's words and ours must not run together.
        return f"{self.message}\nHint: {self.hint}" if self.hint else self.message

    def one_line(self) -> str:
        """Message and hint on one line, as an entry of a list of problems (file:line: ...)."""
        return f"{self.message} {self.hint}".strip()

    def hint_with(self, render: Callable[[Suggested], str]) -> str:
        """The hint with each suggested command line written by `render`."""
        return complete_hint(self.hint, self.suggested, render)


def complete_hint(
    hint: str, suggested: Sequence[Suggested], render: Callable[[Suggested], str]
) -> str:
    for command in suggested:
        hint = hint.replace(str(command), render(command))
    return hint


class BadInput(JitctlError):
    code = ExitCode.BAD_INPUT


class NotSignedIn(JitctlError):
    code = ExitCode.NOT_SIGNED_IN


class NotFound(JitctlError):
    code = ExitCode.NOT_FOUND


class GroupNotFound(NotFound):
    """The resource group itself does not exist (ARM's ResourceGroupNotFound)."""


class VmNotInPolicy(NotFound):
    """A VM that no JIT policy of its resource group names (or none of the name asked for):
    one wording wherever it is found (request, show, history, disable, doctor)."""

    def __init__(
        self,
        vm: str,
        resource_group: str,
        policy_name: str | None = None,
        subscription: str | None = None,
    ) -> None:
        which = f"no JIT policy named {policy_name}" if policy_name else "no JIT policy"
        named = ("--policy-name", policy_name) if policy_name else ()
        enable = suggest("enable", vm, "-g", resource_group, *named, subscription=subscription)
        super().__init__(  # one command in the hint: pasted whole, it runs
            f"VM {vm} is in {which} of resource group {resource_group}.",
            f"Enable it with: {enable}",
            [enable],
        )
        self.vm, self.resource_group, self.policy_name = vm, resource_group, policy_name


class Forbidden(JitctlError):
    code = ExitCode.FORBIDDEN


class Refused(JitctlError):
    """Refused by the JIT policy or by the state of the VM (port not in policy, no NSG...)."""

    code = ExitCode.REFUSED


class PolicyNamesDeletedVms(Refused):
    """Azure refuses a policy write because the policy still names VMs that were deleted."""


class NotEffective(JitctlError):
    code = ExitCode.NOT_EFFECTIVE


class FindingsFound(JitctlError):
    """`audit` found what --fail-on fails on; the report was still written."""

    code = ExitCode.FINDINGS


class TimedOut(JitctlError):
    code = ExitCode.TIMED_OUT


class Contended(JitctlError):
    """Our write was not confirmed: another writer kept replacing the policy within the window."""

    code = ExitCode.CONTENDED


class AzureError(JitctlError):
    """An Azure answer that maps to no more specific code (409, 429 after retries, 5xx)."""

    code = ExitCode.ERROR


class Unavailable(AzureError):
    """No answer, or 429/5xx: the call may or may not have taken effect (re-read to know)."""

    def __init__(
        self,
        message: str,
        hint: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        suggested: Sequence[Suggested] = (),
    ) -> None:
        super().__init__(message, hint, suggested)
        self.status = status
        self.retry_after = retry_after
