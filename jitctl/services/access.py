"""Request timed access: check the request against the policy locally, then initiate."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from jitctl.clock import Clock
from jitctl.errors import Refused, suggest
from jitctl.gateway import Gateway, InitiatePort
from jitctl.ids import VmRef, name_of
from jitctl.model import GrantPort, JitPolicy, PolicyVm, PortRule
from jitctl.nsgeval import source_within
from jitctl.parsing import check_justification, format_human_duration
from jitctl.services.policies import several_policies
from jitctl.services.reads import require_policies
from jitctl.services.writes import WritePolicy, initiate_once


@dataclass(frozen=True)
class RequestResult:
    policy_id: str
    vm_id: str
    ports: tuple[GrantPort, ...]
    start_time: datetime | None
    requestor: str | None
    justification: str | None
    notes: tuple[str, ...] = ()  # e.g. the answer was lost but the request had landed

    @property
    def vm_name(self) -> str:
        return name_of(self.vm_id)


def check_request(
    policy: JitPolicy, pvm: PolicyVm, ports: Sequence[int], source: str, duration: timedelta | None
) -> list[tuple[PortRule, timedelta]]:
    """What Azure would refuse, refused here first (its words: 'not a subset of policy')."""
    vm_name = name_of(pvm.id)
    configured = ", ".join(str(p.number) for p in pvm.ports)
    out = []
    for number in ports:
        rule = pvm.port(number)
        if rule is None:
            fix = suggest(
                "enable",
                vm_name,
                "-g",
                policy.resource_group,
                "--port",
                number,
                subscription=policy.subscription_id,
            )
            raise Refused(
                f"Port {number} is not in the JIT policy '{policy.name}' of VM {vm_name} "
                f"(configured: {configured}).",
                f"Ask an admin to run: {fix}",
                [fix],
            )
        if duration is not None and duration > rule.max_duration:
            raise Refused(
                f"Duration {format_human_duration(duration)} exceeds the maximum of "
                f"{format_human_duration(rule.max_duration)} for port {number} of VM {vm_name}.",
                f"Use --duration {format_human_duration(rule.max_duration)} or less.",
            )
        if not source_within(source, rule.sources):
            raise Refused(
                f"Source {source} is outside the allowed sources of port {number} of VM "
                f"{vm_name} ({', '.join(rule.sources)}).",
                "Request from an allowed address.",
            )
        out.append((rule, duration or rule.max_duration))
    return out


def verbatim_hint(err: Refused, rules: Sequence[PortRule], source: str) -> str:
    """When Azure says a request jitctl found within the policy is "not a subset" of it: one
    report has the service compare the source with the allowed prefixes verbatim
    (MicrosoftDocs/azure-docs#53026: an address of the allowed /24 refused, the /24 accepted),
    so say which allowed prefix to request as it stands ('' when that cannot be the cause)."""
    if "not a subset of policy" not in err.message.lower():
        return ""
    wider = sorted(
        {
            prefix
            for rule in rules
            for prefix in rule.sources
            if prefix.strip().lower() != source.strip().lower() and source_within(source, [prefix])
        }
    )
    if not wider or any(source_within("*", [p]) for p in wider):
        return ""
    return (
        f"Azure may match the source verbatim against the allowed prefixes "
        f"(MicrosoftDocs/azure-docs#53026): request {' or '.join(wider)} as it stands "
        f"(--source-ip {wider[0]})."
    )


def find_policy(
    gw: Gateway, ref: VmRef, ports: Sequence[int], policy_name: str | None
) -> tuple[JitPolicy, PolicyVm]:
    policies = require_policies(gw, ref, policy_name)
    # Several policies may name the VM (one per VM, as Microsoft's scripts make them, beside the
    # portal's 'default'): the one that has every requested port, and no guess between two.
    fits = [p for p in policies if (v := p.vm(ref.id)) and all(v.port(n) for n in ports)]
    if len(fits) > 1:
        raise several_policies(ref, fits)
    pol = fits[0] if fits else policies[0]
    return pol, pol.vm(ref.id)  # type: ignore[return-value]


def request_access(
    gw: Gateway,
    ref: VmRef,
    source: str,
    now: datetime,
    ports: Sequence[int] = (3389,),
    duration: timedelta | None = None,
    justification: str | None = None,
    policy_name: str | None = None,
    *,
    clock: Clock,
    settings: WritePolicy | None = None,
    rng: random.Random | None = None,
) -> RequestResult:
    """Two ARM calls: list the group's policies (finds the VM's), then initiate."""
    justification = check_justification(justification)
    policy, pvm = find_policy(gw, ref, ports, policy_name)
    return initiate_checked(
        gw,
        policy,
        pvm,
        source,
        now,
        ports,
        duration,
        justification,
        clock=clock,
        settings=settings,
        rng=rng,
    )


def initiate_checked(
    gw: Gateway,
    policy: JitPolicy,
    pvm: PolicyVm,
    source: str,
    now: datetime,
    ports: Sequence[int],
    duration: timedelta | None = None,
    justification: str | None = None,
    *,
    clock: Clock,
    settings: WritePolicy | None = None,
    rng: random.Random | None = None,
) -> RequestResult:
    """Check the request against an already-read policy, then initiate (one ARM call; after a
    lost answer, the request history tells whether to initiate again)."""
    checked = check_request(policy, pvm, ports, source, duration)
    initiate = [InitiatePort(rule.number, source, now + length) for rule, length in checked]
    try:
        answer, notes = initiate_once(
            gw,
            policy,
            pvm.id,
            initiate,
            justification,
            clock=clock,
            settings=settings,
            rng=rng,
        )
    except Refused as err:
        hint = verbatim_hint(err, [rule for rule, _ in checked], source)
        if hint:
            raise Refused(err.message, hint) from None
        raise
    granted = tuple(p for vm in answer.vms for p in vm.ports) or tuple(
        GrantPort(p.number, p.source, p.end_time, "Initiating") for p in initiate
    )
    return RequestResult(
        policy.id,
        pvm.id,
        granted,
        answer.start_time or now,
        answer.requestor,
        answer.justification if answer.justification is not None else justification,
        notes,
    )
