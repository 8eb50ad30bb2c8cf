"""--keep-alive and a dynamic public IP: each renewal reads the VM's public address again (as
connect does right before the launch); when the VM was deallocated and started in between, jitctl
says where it is now, the .rdp file names it and a tunnel forwards there (the real compute and
network SDK clients against the emulator; jitctl's answer as a user sees it)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitctl.model import PortRule
from jitctl.services.policies import enable
from tests.support import RG, SUB, vm_ref
from tests.test_fidelity_dynamic_ip import PIP, make_dynamic, restart
from tests.test_tunnel import SpawningRunner, TimedChild

G = ["-g", RG]
IP = ["--source-ip", "198.51.100.7"]
OLD = "20.61.15.10"


@pytest.fixture
def keep_app(app, clock, tmp_path):
    from jitctl.clock import FakeClock

    app.data_dir = tmp_path / "data"
    enable(app.gateway(), [vm_ref("vm-win01")], [PortRule(3389)], clock=FakeClock())
    return app


def client_for(app, clock, hours: float, spawned: list[list[str]]):
    class Runner(SpawningRunner):
        def spawn(self, args):
            spawned.append(args)
            return TimedChild(clock, clock.now() + timedelta(hours=hours))

    app.runner = Runner(platform="win32")


def restart_once_after(
    gw, backend, clock, monkeypatch, after: timedelta, start: bool = True
) -> list[str]:
    """Deallocate (and start) vm-win01 once the client has run for `after`, through the compute
    SDK, as happens when someone stops the VM in the portal; returns the new address."""
    sleep, begin, new = clock.sleep, clock.now(), []

    def sleep_and_restart(seconds: float) -> None:
        if not new and clock.now() - begin >= after:
            vms = gw._client("compute", SUB).virtual_machines
            vms.begin_deallocate(RG, "vm-win01").result()
            if start:
                vms.begin_start(RG, "vm-win01").result()
            new.append(backend.get(PIP)["properties"].get("ipAddress") or "")  # unlogged
        sleep(seconds)

    monkeypatch.setattr(clock, "sleep", sleep_and_restart)
    return new


def test_rdp_keep_alive_follows_a_new_dynamic_address(keep_app, run, clock, monkeypatch):
    gw = keep_app.gateway()
    make_dynamic(gw)
    spawned: list[list[str]] = []
    client_for(keep_app, clock, 4, spawned)
    new = restart_once_after(gw, keep_app.backend, clock, monkeypatch, timedelta(hours=1))
    r = run("rdp", "vm-win01", *G, *IP, "--keep-alive")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"vm-win01: rdp to {OLD}:3389")
    [address] = new
    assert address and address != OLD
    assert (
        f"The public address of vm-win01 is now {address} (was {OLD}: the VM was deallocated "
        "and started again); connect again there." in r.stderr
    )
    rdp_file = (keep_app.data_dir / "rdp" / "vm-win01.rdp").read_text()
    assert f"full address:s:{address}:3389" in rdp_file
    assert "keep-alive stopped after 1 renewal(s)" in r.stderr
    assert spawned == [["mstsc", str(keep_app.data_dir / "rdp" / "vm-win01.rdp")]]


def test_a_static_address_is_read_again_and_nothing_is_said(keep_app, run, clock, monkeypatch):
    gw = keep_app.gateway()
    client_for(keep_app, clock, 4, [])
    restart_once_after(
        gw, keep_app.backend, clock, monkeypatch, timedelta(hours=1)
    )  # static: keeps its address
    before = len(keep_app.backend.log)
    r = run("rdp", "vm-win01", *G, *IP, "--keep-alive")
    assert r.exit_code == 0, r.output
    assert "Renewed access to vm-win01" in r.stderr and "public address" not in r.stderr
    reads = [e for e in keep_app.backend.log[before:] if e.path.endswith("/vm-win01-pip")]
    assert len(reads) == 2  # before the launch, and after the renewal
    rdp_file = (keep_app.data_dir / "rdp" / "vm-win01.rdp").read_text()
    assert f"full address:s:{OLD}:3389" in rdp_file


def test_a_vm_still_deallocated_at_the_renewal_is_said(keep_app, run, clock, monkeypatch):
    gw = keep_app.gateway()
    make_dynamic(gw)
    client_for(keep_app, clock, 4, [])
    restart_once_after(gw, keep_app.backend, clock, monkeypatch, timedelta(hours=1), start=False)
    r = run("rdp", "vm-win01", *G, *IP, "--keep-alive")
    assert r.exit_code == 0, r.output
    assert (
        "The public IP of vm-win01 has no address now (the VM is deallocated?): connections "
        f"to {OLD} fail until it is started again." in r.stderr
    )
    rdp_file = (keep_app.data_dir / "rdp" / "vm-win01.rdp").read_text()
    assert f"full address:s:{OLD}:3389" in rdp_file  # nothing better to write


def test_the_renewal_tells_a_tunnel_where_to_forward(keep_app, clock):
    """The service (jitctl.services.keepalive) with the tunnel's follow_host, as `tunnel
    --keep-alive` wires it."""
    from jitctl.relay import Tunnel
    from jitctl.services.connect import AccessRequest, ensure_access
    from jitctl.services.keepalive import KeepAlive

    gw = keep_app.gateway()
    make_dynamic(gw)
    req = AccessRequest(vm_ref("vm-win01"), "198.51.100.7", 3389)
    ready = ensure_access(gw, req, clock)
    fwd = Tunnel(ready.connect_host, ready.connect_port)
    said: list[str] = []
    keep = KeepAlive(gw, req.checked(), clock, ready.end_time, said.append)
    keep.connect_host, keep.on_readdressed = ready.connect_host, fwd.follow_host
    restart(gw)
    renewal = keep.renew()
    assert renewal.until is not None and renewal.continuous
    address = gw.get_public_ip(PIP).ip_address
    assert fwd.host == address != OLD
    assert said[-1].startswith(f"The public address of vm-win01 is now {address} (was {OLD}")
