"""Six `jitctl enable` processes at once, each adding its VM to the same policy through the
HTTPS emulator: all six end up in the policy, and no process says 'updated' for a lost VM.

The processes are forked from the test with the SDK already imported and wait at a barrier, so
all six read and write the one policy within the same few milliseconds (a true race) instead of
spending their time importing azure-mgmt one after another.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from multiprocessing.connection import Connection

import pytest

from jitctl.emulator import Backend, Settings
from jitctl.emulator.seeder import DEMO_SUBSCRIPTION
from jitctl.emulator.server import EmulatorServer
from jitctl.emulator.worlds import crowd
from jitctl.ids import same_id
from tests.test_server import env_of

CROWD = 6


def _enable_process(name: str, inbox: Connection, out: str) -> None:
    """A forked child: wait for the server's address, then run the real CLI's `enable`."""
    env = inbox.recv()  # the barrier: every child gets it at once
    os.environ.clear()
    os.environ.update(env)
    from jitctl.cli.root import main

    with open(out, "w") as f:
        sys.stdout = sys.stderr = f
        main(["enable", name, "-g", "rg-crowd"])  # exits with the command's code


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork to stay fast"
)
def test_concurrent_enables_into_one_policy(tmp_path):
    # what `enable` imports, imported once here so the children only race, never import
    import azure.identity
    import azure.mgmt.compute
    import azure.mgmt.network
    import azure.mgmt.security  # noqa: F401

    import jitctl.arm.gateway
    import jitctl.cli.commands
    import jitctl.services.policies  # noqa: F401

    backend = Backend(settings=Settings(propagation_delay=0))
    names = crowd(backend, CROWD)
    ctx = multiprocessing.get_context("fork")
    children = []
    for name in names:  # forked before the server's threads start: no lock is held in a child
        inbox, outbox = ctx.Pipe(duplex=False)
        out = tmp_path / f"{name}.txt"
        proc = ctx.Process(target=_enable_process, args=(name, inbox, str(out)))
        proc.start()
        children.append((name, proc, outbox, out))
    srv = EmulatorServer(backend, cert_dir=tmp_path / "certs")
    srv.start()
    try:
        env = env_of(srv)
        for _, _, outbox, _ in children:
            outbox.send(env)
        for _, proc, _, _ in children:
            proc.join(120)
    finally:
        srv.stop()
        for _, proc, _, _ in children:
            if proc.is_alive():
                proc.kill()
    outcome = {name: (proc.exitcode, out.read_text()) for name, proc, _, out in children}
    (entry,) = backend.state["jit"].values()
    in_policy = {
        v["id"].rsplit("/", 1)[-1] for v in entry["policy"]["properties"]["virtualMachines"]
    }
    for name, (code, out) in outcome.items():
        assert code in (0, 9), (name, code, out)
        if code == 0:  # exit 0 means it is true
            assert name in in_policy and ("created" in out or "updated" in out), (name, out)
    assert in_policy == set(names)
    assert all(code == 0 for code, _ in outcome.values())
    assert all(
        same_id(
            v["id"].split("/providers/")[0],
            f"/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/rg-crowd",
        )
        for v in entry["policy"]["properties"]["virtualMachines"]
    )
    puts = [e for e in backend.log if e.method == "PUT" and "jitNetworkAccessPolicies" in e.path]
    assert len(puts) >= CROWD  # each child wrote at least once
