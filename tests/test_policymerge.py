from datetime import timedelta

from jitctl.model import PolicyVm, PortRule
from jitctl.policymerge import applied, merge_ports, remove_ports

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
