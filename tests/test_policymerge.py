from __future__ import annotations

from datetime import timedelta

import pytest

from jitctl.ids import id_key
from jitctl.model import PolicyVm, PortRule
from jitctl.parsing import parse_iso_duration
from jitctl.policymerge import applied, merge_ports, remove_ports, same_rule, set_ports

A = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/a"
B = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/b"
SSH_CORP = PortRule(22, "TCP", timedelta(hours=1), None, ("198.51.100.0/24", "192.0.2.0/24"))
RDP = PortRule(3389)


def test_adding_a_vm_keeps_every_other_vm_exactly():
    other = PolicyVm(B, (SSH_CORP,), public_ip_address="20.1.2.3")
    vms, changes = merge_ports([other], [A], [RDP])
    assert vms[0] is other
    assert vms[1] == PolicyVm(A, (RDP,))
    assert [(c.action, c.port) for c in changes] == [("add", 3389)]


def test_port_takes_new_settings_other_ports_stay():
    vm = PolicyVm(A, (SSH_CORP, RDP))
    new_rdp = PortRule(3389, "TCP", timedelta(hours=2), "203.0.113.0/24")
    vms, changes = merge_ports([vm], [A.upper()], [new_rdp])
    assert vms == (PolicyVm(A, (SSH_CORP, new_rdp)),)  # id match is case-insensitive, order kept
    assert changes[0].action == "change" and changes[0].before == RDP


def test_no_change_means_no_changes():
    _vms, changes = merge_ports([PolicyVm(A, (RDP,))], [A], [RDP])
    assert changes == ()


def test_remove_port_and_whole_vm():
    vms = [PolicyVm(A, (SSH_CORP, RDP)), PolicyVm(B, (RDP,))]
    out, changes = remove_ports(vms, A, [22])
    assert out == (PolicyVm(A, (RDP,)), PolicyVm(B, (RDP,)))
    assert [(c.action, c.port) for c in changes] == [("remove", 22)]
    out, changes = remove_ports(vms, A, None)
    assert out == (PolicyVm(B, (RDP,)),) and len(changes) == 2
    out, changes = remove_ports(vms, B, [3389])
    assert out == (vms[0],)


def test_applied_detects_a_dropped_change():
    vms, changes = merge_ports([PolicyVm(B, (RDP,))], [A], [RDP])
    assert applied(vms, changes)
    assert not applied([PolicyVm(B, (RDP,))], changes)  # a concurrent writer dropped A
    out, removal = remove_ports(vms, A, None)
    assert applied(out, removal) and not applied(vms, removal)


# --- one rule equality, one VM key --------------------------------------------------------------

ONE = PortRule(22, "TCP", timedelta(hours=3), "198.51.100.7")


@pytest.mark.parametrize(
    "stored",
    [
        PortRule(22, "TCP", timedelta(hours=3), None, ("198.51.100.7",)),  # a one-item list
        PortRule(22, "Tcp", timedelta(hours=3), "198.51.100.7"),  # another case of the protocol
        PortRule(22, "tcp", parse_iso_duration("PT180M"), "198.51.100.7/32"),  # PT180M, a /32
        PortRule(22, "TCP", parse_iso_duration("PT3H"), None, (" 198.51.100.7/32",)),
    ],
)
def test_equivalent_spellings_are_one_rule_and_no_change(stored):
    assert same_rule(stored, ONE) and same_rule(ONE, stored)
    vm = PolicyVm(A, (stored,))
    out, changes = merge_ports([vm], [A], [ONE])
    assert changes == () and out[0].ports[0] is stored  # what Azure holds is kept as it is
    out, changes = set_ports([vm], {A: (ONE,)})
    assert changes == () and out[0].ports[0] is stored
    assert applied([vm], merge_ports([], [A], [ONE])[1])


@pytest.mark.parametrize(
    "other",
    [
        PortRule(22, "UDP", timedelta(hours=3), "198.51.100.7"),
        PortRule(22, "TCP", timedelta(hours=2), "198.51.100.7"),
        PortRule(22, "TCP", timedelta(hours=3), None, ("198.51.100.7", "192.0.2.1")),
        PortRule(22, "TCP", timedelta(hours=3), "198.51.100.8"),
    ],
)
def test_a_different_rule_is_a_change_in_every_merge(other):
    assert not same_rule(other, ONE)
    vm = PolicyVm(A, (other,))
    assert [c.action for c in merge_ports([vm], [A], [ONE])[1]] == ["change"]
    assert [c.action for c in set_ports([vm], {A: (ONE,)})[1]] == ["change"]
    assert not applied([vm], merge_ports([], [A], [ONE])[1])


SPELLINGS = [A.upper(), A + "/", A.lower().lstrip("/"), f" {A}"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_one_vm_key_in_every_merge(spelling):
    assert id_key(spelling) == id_key(A)
    vms = [PolicyVm(A, (RDP,)), PolicyVm(B, (RDP,))]
    out, changes = merge_ports(vms, [spelling], [RDP])
    assert out == tuple(vms) and changes == ()
    out, changes = merge_ports(vms, [spelling], [SSH_CORP])
    assert len(out) == 2 and out[0] == PolicyVm(A, (RDP, SSH_CORP))
    out, changes = set_ports(vms, {spelling: (RDP,)})
    assert out == tuple(vms) and changes == ()
    out, changes = set_ports(vms, {}, remove=[spelling])
    assert out == (vms[1],) and [c.action for c in changes] == ["remove"]
    out, changes = remove_ports(vms, spelling, None)
    assert out == (vms[1],) and len(changes) == 1
    assert applied(vms, merge_ports([], [spelling], [RDP])[1])
