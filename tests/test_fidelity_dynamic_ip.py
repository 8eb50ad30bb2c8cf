"""Dynamic public IPs: deallocating a VM releases a dynamic address and starting it gives a new
one (the real compute SDK's begin_deallocate/begin_start against the emulator); connect reads the
address after the wait, right before launching, so it launches to the new one."""

from __future__ import annotations

import json

import pytest

from jitctl.errors import ExitCode
from jitctl.model import PortRule
from jitctl.services.policies import enable
from tests.support import RG, SUB, vm_ref

G = ["-g", RG]
IP = ["--source-ip", "198.51.100.7"]
WIN = vm_ref("vm-win01")
PIP = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/publicIPAddresses/vm-win01-pip"


@pytest.fixture
def connect_app(app, backend, clock, tmp_path):
    from jitctl.clock import FakeClock
    from tests.test_connect import FakeRunner

    backend.settings.propagation_delay = 20
    app.runner = FakeRunner(installed={"xfreerdp": "/usr/bin/xfreerdp", "ssh": "/usr/bin/ssh"})
    app.data_dir = tmp_path / "data"
    enable(app.gateway(), [WIN], [PortRule(3389)], clock=FakeClock())
    return app


def make_dynamic(gw) -> None:
    """Through the network SDK, as a user would: the VM's public IP becomes Dynamic."""
    ops = gw._client("network", SUB).public_ip_addresses
    pip = ops.get(RG, "vm-win01-pip")
    pip.public_ip_allocation_method = "Dynamic"
    ops.begin_create_or_update(RG, "vm-win01-pip", pip).result()


def restart(gw) -> None:
    vms = gw._client("compute", SUB).virtual_machines
    vms.begin_deallocate(RG, "vm-win01").result()
    assert gw.get_public_ip(PIP).ip_address is None  # released while deallocated
    vms.begin_start(RG, "vm-win01").result()


def test_a_dynamic_ip_changes_on_deallocate_and_start_a_static_one_does_not(gw, backend):
    vms = gw._client("compute", SUB).virtual_machines
    vms.begin_deallocate(RG, "vm-win01").result()
    vms.begin_start(RG, "vm-win01").result()
    assert gw.get_public_ip(PIP).ip_address == "20.61.15.10"  # static: kept
    make_dynamic(gw)
    restart(gw)
    new = gw.get_public_ip(PIP).ip_address
    assert new and new != "20.61.15.10"
    statuses = backend.get(
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/vm-win01"
    )["properties"]["instanceView"]["statuses"]
    assert statuses[0]["code"] == "PowerState/running"


def test_rdp_launches_to_the_address_the_vm_has_after_the_wait(
    connect_app, run, clock, monkeypatch
):
    """The VM is deallocated and started while jitctl waits for the JIT rule: the .rdp file
    and the --no-launch answer name the new address, not the one it had at the request."""
    gw = connect_app.gateway()
    make_dynamic(gw)
    sleep = clock.sleep
    moved: list[str] = []

    def sleep_and_restart(seconds: float) -> None:  # during the wait for the rule
        if not moved:
            restart(gw)
            moved.append(gw.get_public_ip(PIP).ip_address or "")
        sleep(seconds)

    monkeypatch.setattr(clock, "sleep", sleep_and_restart)
    r = run("-o", "json", "rdp", "vm-win01", *G, *IP, "--no-launch")
    assert r.exit_code == 0, r.output
    [new] = moved
    assert new != "20.61.15.10"
    ready = json.loads(r.stdout)["ready"]
    assert (ready["connect_host"], ready["connect_port"], ready["via"]) == (new, 3389, "public")
    rdp_file = (connect_app.data_dir / "rdp" / "vm-win01.rdp").read_text()
    assert f"full address:s:{new}:3389" in rdp_file


def test_rdp_says_so_when_the_vm_is_deallocated_before_the_launch(
    connect_app, run, clock, monkeypatch
):
    gw = connect_app.gateway()
    make_dynamic(gw)
    sleep = clock.sleep

    def sleep_and_deallocate(seconds: float) -> None:
        gw._client("compute", SUB).virtual_machines.begin_deallocate(RG, "vm-win01").result()
        sleep(seconds)

    monkeypatch.setattr(clock, "sleep", sleep_and_deallocate)
    r = run("rdp", "vm-win01", *G, *IP, "--no-launch")
    assert r.exit_code == ExitCode.REFUSED
    assert "The public IP of VM vm-win01 has no address yet." in r.stderr
    assert "Start the VM first." in r.stderr
