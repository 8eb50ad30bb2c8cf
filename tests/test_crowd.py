"""Twelve `jitctl enable` processes at once, each adding its VM to the same policy through the
HTTPS emulator: all twelve end up in the policy, and no process says 'updated' for a lost VM."""

from __future__ import annotations

import subprocess
import sys

from jitctl.emulator import Backend, Settings
from jitctl.emulator.seeder import DEMO_SUBSCRIPTION
from jitctl.emulator.server import EmulatorServer
from jitctl.emulator.worlds import crowd
from jitctl.ids import same_id
from tests.test_server import env_of


def test_twelve_concurrent_enables_into_one_policy(tmp_path):
    backend = Backend(settings=Settings(propagation_delay=0))
    names = crowd(backend, 12)
    srv = EmulatorServer(backend, cert_dir=tmp_path / "certs")
    srv.start()
    try:
        env = env_of(srv)
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", "jitctl", "enable", name, "-g", "rg-crowd"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in names
        }
        outcome = {
            name: (p.wait(timeout=120), p.stdout.read(), p.stderr.read())
            for name, p in procs.items()
        }  # type: ignore[union-attr]
    finally:
        srv.stop()
    (entry,) = backend.state["jit"].values()
    in_policy = {
        v["id"].rsplit("/", 1)[-1] for v in entry["policy"]["properties"]["virtualMachines"]
    }
    for name, (code, out, err) in outcome.items():
        assert code in (0, 9), (name, code, err)
        if code == 0:  # exit 0 means it is true
            assert name in in_policy and ("created" in out or "updated" in out), (name, out)
    assert in_policy == set(names)
    assert all(code == 0 for code, _, _ in outcome.values())
    assert all(
        same_id(
            v["id"].split("/providers/")[0],
            f"/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/rg-crowd",
        )
        for v in entry["policy"]["properties"]["virtualMachines"]
    )
