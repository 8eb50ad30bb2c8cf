"""Field checks for the policy files' pydantic models (targets and approvals): each runs the
jitctl.parsing check of its value and turns its BadInput into the ValueError pydantic reports,
so every problem reads `file:line: key: what is wrong` with the parser's own words."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from jitctl.errors import BadInput
from jitctl.parsing import (
    check_resource_group,
    check_subscription,
    parse_duration,
    parse_port,
    parse_vm,
)

T = TypeVar("T")


def checked(check: Callable[[Any], T], value: Any) -> T | None:
    """`check(value)` when a value is given; None stays None."""
    if value is None:
        return None
    try:
        return check(value)
    except BadInput as err:
        raise ValueError(err.one_line()) from None


def subscription(value: str | None) -> str | None:
    return checked(check_subscription, value)


def subscriptions(value: list[str] | None) -> list[str] | None:
    return checked(lambda subs: [check_subscription(s) for s in subs], value)


def resource_group(value: str | None) -> str | None:
    return checked(check_resource_group, value)


def port(value: Any) -> int | None:
    """Refuses true/false, 22.0 and '22x', which pydantic alone would take."""
    return checked(parse_port, value)


def ports(value: Any) -> Any:
    return (
        checked(lambda v: [parse_port(p) for p in v], value) if isinstance(value, list) else value
    )


def duration(
    value: str | None, minimum: timedelta | None = None, maximum: timedelta | None = None
) -> str | None:
    """The duration as written (it is parsed again where it is used), once it parses."""
    bounds = {"minimum": minimum, "maximum": maximum} if minimum and maximum else {}
    checked(lambda v: parse_duration(str(v), **bounds), value)
    return value


def vm_ids(value: list[str] | None) -> list[str] | None:
    """Full virtual machine resource ids, each as parse_vm reads it."""
    from jitctl.textsafe import printable

    for vm_id in value or []:
        if "/providers/microsoft.compute/virtualmachines/" not in vm_id.lower():
            raise ValueError(f"'{printable(vm_id)}' is not a virtual machine resource id")
        checked(lambda v: parse_vm(v, resource_group=None, subscription_id=None), vm_id)
    return value
