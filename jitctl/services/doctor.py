"""Why JIT would not work for a VM and the signed-in identity: one check per thing it needs."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jitctl.errors import (
    ENABLE_DEFENDER,
    JitctlError,
    NotSignedIn,
    Suggested,
    VmNotInPolicy,
    suggest,
)
from jitctl.gateway import Gateway
from jitctl.ids import VmRef, name_of, segments
from jitctl.model import Permission, Vm
from jitctl.roles import FIREWALL_READ, ROLES
from jitctl.services.firewall import firewall_address, read_firewall
from jitctl.services.reads import policies_of_vm
from jitctl.services.topology import read_path


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""
    required: bool = True  # False: reported, but JIT requests work without it
    suggested: tuple[Suggested, ...] = ()  # the command lines the hint names (not in the JSON)


@dataclass(frozen=True)
class DoctorResult:
    vm_id: str
    checks: tuple[Check, ...]

    @property
    def vm_name(self) -> str:
        return name_of(self.vm_id)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)


def granted(action: str, permissions: Sequence[Permission]) -> bool:
    """Azure's rule: some entry's actions match and none of that entry's notActions do
    (wildcards, case-insensitive). A wildcard in `action` stands for any one name."""
    concrete = action.lower().replace("*", "x")

    def match(patterns: Sequence[str]) -> bool:
        return any(fnmatch.fnmatchcase(concrete, p.lower()) for p in patterns)

    return any(match(p.actions) and not match(p.not_actions) for p in permissions)


def _plan(gw: Gateway, ref: VmRef, vm: Vm) -> Check:
    plan = gw.get_defender_plan(ref.subscription_id)
    if plan.has_jit:
        return Check("defender plan", True, "Defender for Servers Plan 2 is on")
    what = "off (Free)" if plan.tier.lower() == "free" else f"{plan.sub_plan or plan.tier}, not P2"
    return Check(
        "defender plan",
        False,
        f"Defender for Servers is {what}: Azure refuses JIT policies and requests",
        f"Enable Plan 2: {ENABLE_DEFENDER}",
    )


def _policy(gw: Gateway, ref: VmRef, vm: Vm) -> Check:
    policies = policies_of_vm(gw, ref)
    if not policies:
        missing = VmNotInPolicy(vm.name, ref.resource_group, subscription=ref.subscription_id)
        return Check(
            "jit policy",
            False,
            missing.message.rstrip("."),
            missing.hint,
            suggested=missing.suggested,
        )
    described = "; ".join(
        f"{p.name}: ports {', '.join(str(x.number) for x in v.ports)}"
        for p in policies
        if (v := p.vm(ref.id))
    )
    return Check("jit policy", True, f"in JIT policy {described}")


def _nsg_path(gw: Gateway, ref: VmRef, vm: Vm) -> Check:
    path = read_path(gw, vm)
    if not path.nsg_ids:
        return Check(
            "nsg path",
            False,
            f"no NSG on NIC {name_of(path.nic.id)} or its subnet: JIT cannot protect the VM",
            "Associate an NSG with the NIC or the subnet.",
        )
    levels = [
        f"subnet NSG {name_of(path.subnet_nsg_id)}" if path.subnet_nsg_id else "no subnet NSG",
        f"NIC NSG {name_of(path.nic_nsg_id)}" if path.nic_nsg_id else "no NIC NSG",
    ]
    return Check("nsg path", True, f"{', '.join(levels)} (to {path.private_ip})")


# Roles whose absence is only a note for most callers: who needs them.
ONLY_FOR = {"broker": " (needed only by the identity an approval broker runs as)"}


def _permissions(role: str, required: bool) -> Callable[[Gateway, VmRef, Vm], Check]:
    def check(gw: Gateway, ref: VmRef, vm: Vm) -> Check:
        perms = gw.list_permissions(ref.subscription_id, ref.resource_group)
        absent = [a for a in ROLES[role]["Actions"] if not granted(a, perms)]
        missing = [a for a in absent if a not in FIREWALL_READ]
        name = f"permissions ({role})"
        if not missing:
            detail = f"every action of 'jitctl role show {role}'"
            if absent:  # only to verify behind Azure Firewall: 'firewall read' tells the effect
                detail += f" except {', '.join(absent)} (only to verify behind Azure Firewall)"
            return Check(name, True, detail, "", required)
        shows = suggest("role", "show", role, subscription=ref.subscription_id)
        return Check(
            name,
            False,
            f"missing {', '.join(missing)}{ONLY_FOR.get(role, '')}",
            f"Ask for the role '{shows}' prints, on {ref.resource_group}.",
            required,
            (shows,),
        )

    return check


def _public_ip(gw: Gateway, ref: VmRef, vm: Vm) -> Check:
    firewall = firewall_address(gw, ref)
    if firewall:
        return Check("public ip", True, f"{firewall} (Azure Firewall, DNAT)")
    cfg = read_path(gw, vm).nic.primary_ip_config
    pip = gw.get_public_ip(cfg.public_ip_id) if cfg and cfg.public_ip_id else None
    if pip is None or not pip.ip_address:
        return Check(
            "public ip",
            False,
            "the primary NIC has no public IP address: rdp and ssh from outside cannot connect",
            "Add a public IP, or connect over a VPN or Bastion to the private address.",
        )
    return Check("public ip", True, f"{pip.ip_address} ({name_of(pip.id)})")


def _firewall(gw: Gateway, ref: VmRef, vm: Vm) -> Check:
    """Whether the Azure Firewall in front of the VM can be read, wherever it lives (a landing
    zone's hub subscription): if not, access is Azure's word, not verified."""
    address = firewall_address(gw, ref)
    read = read_firewall(gw, ref, address, None)  # whether it can be read; no history
    if read is None:
        return Check("firewall read", True, "no Azure Firewall in front (no JIT policy names one)")
    if read.firewall is not None:
        sub = segments(read.firewall.id).get("subscriptions", "")
        where = "the VM's subscription" if sub.lower() == ref.subscription_id.lower() else sub
        return Check(
            "firewall read",
            True,
            f"Azure Firewall {read.firewall.name} ({address}, in {where}): its DNAT rules are "
            "verified",
        )
    return Check(
        "firewall read",
        False,
        f"cannot read the Azure Firewall with address {address} ({read.unseen}): requests work, "
        "but jitctl trusts Azure's grant (Initiated, with a mapped port) unverified",
        "For verified access, assign the role 'jitctl role show requester' prints on the "
        "firewall's subscription too (a landing zone's hub)",
        required=False,
    )


CHECKS: tuple[tuple[str, Callable[[Gateway, VmRef, Vm], Check]], ...] = (
    ("defender plan", _plan),
    ("jit policy", _policy),
    ("nsg path", _nsg_path),
    ("permissions (requester)", _permissions("requester", True)),
    ("permissions (admin)", _permissions("admin", False)),
    ("permissions (broker)", _permissions("broker", False)),
    ("public ip", _public_ip),
    ("firewall read", _firewall),
)


def diagnose(gw: Gateway, ref: VmRef) -> DoctorResult:
    """Each check on its own: one that cannot be read says why and the others still run."""
    vm = gw.get_vm(ref)
    out = []
    for name, run in CHECKS:
        try:
            out.append(run(gw, ref, vm))
        except NotSignedIn:
            raise
        except JitctlError as err:
            detail = f"could not check: {err.message}"
            out.append(Check(name, False, detail, err.hint, suggested=err.suggested))
    return DoctorResult(vm.id, tuple(out))
