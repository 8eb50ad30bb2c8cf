"""`broker serve`'s parts: the rules re-read on change and on SIGHUP, the command's own checks,
and one real uvicorn process answering over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from jitctl.app import App
from jitctl.broker.client import BrokerClient
from jitctl.broker.server import FolderRules
from jitctl.cli.commands import cli
from jitctl.emulator.seeder import DEMO_SUBSCRIPTION
from jitctl.errors import JitctlError
from tests.brokerapi import ASK, POLICY

ROOT = Path(__file__).resolve().parents[1]


def test_rules_are_reread_on_change_and_a_broken_change_keeps_the_rules_in_force(tmp_path):
    (tmp_path / "a.yaml").write_text(POLICY)
    ticks = [0.0]
    rules = FolderRules(tmp_path, monotonic=lambda: ticks[0])
    assert len(rules().rules) == 2
    (tmp_path / "a.yaml").write_text(POLICY.replace("group:contractors", "group:interns"))
    deny = lambda: rules().rules[1].entry.deny.requesters  # noqa: E731
    assert deny() == ["group:contractors"]  # not looked at yet
    ticks[0] = 5.0
    assert deny() == ["group:interns"]  # changed: read again
    (tmp_path / "a.yaml").write_text("approvals: [{match: 3}]\n")
    assert rules.reload() is False and len(rules().rules) == 2  # broken: the old rules stay


def test_serve_refuses_what_it_cannot_run_before_touching_the_database(tmp_path):
    (tmp_path / "p.yaml").write_text(POLICY)
    db = tmp_path / "b.sqlite"
    for args, words in [
        (["--tls-cert", str(tmp_path / "c.pem")], "--tls-cert and --tls-key go together"),
        (["--issuer", "https://login.example"], "needs the issuer and the audience"),
        (["--admin", "jit-admins", "--issuer", "i", "--audience", "a"], "is not a principal"),
        (["--policies", str(tmp_path / "none")], "neither a policy file nor a folder"),
    ]:
        got = CliRunner().invoke(
            cli,
            ["broker", "serve", "--db", f"sqlite:///{db}", "--policies", str(tmp_path), *args],
            obj=App(),
        )
        assert got.exit_code == 2 and words in got.stderr, (args, got.output)
    assert not db.exists()


def test_migrate_makes_the_schema(tmp_path):
    db = tmp_path / "m.sqlite"
    got = CliRunner().invoke(
        cli, ["broker", "migrate", "--db", f"sqlite:///{db}", "-o", "json"], obj=App()
    )
    assert got.exit_code == 0 and '"migrated": true' in got.stdout
    import sqlite3

    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")}
    assert {"requests", "events", "approvals", "outbox", "chain_head"} <= tables


SERVER = """
import sys
from jitctl.app import App
from jitctl.cli.broker_run import run_serve
from tests.brokerapi import FakeVerifier
run_serve(App(emulator=True), db=sys.argv[1], policies=sys.argv[2], host="127.0.0.1", listen=int(sys.argv[3]),
          tls_cert=None, tls_key=None, issuer=None, audience=None, client_id=None,
          admins=("group:broker-admins",), auditors=(), verifier=FakeVerifier())
"""


def test_a_real_uvicorn_process_serves_the_api_and_stops_on_sigterm(tmp_path):
    demo = POLICY.replace(ASK_SUB, DEMO_SUBSCRIPTION).replace("rg-prod", "rg-jit-demo")
    (tmp_path / "p.yaml").write_text(demo)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JITCTL_", "AZURE_"))}
    env.update(
        JITCTL_EMULATOR_STATE=str(tmp_path / "emulator.json"),
        PYTHONPATH=str(ROOT),
        JITCTL_BROKER_LOG_LEVEL="warning",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVER,
            f"sqlite:///{tmp_path / 'b.sqlite'}",
            str(tmp_path),
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        api = BrokerClient(f"http://127.0.0.1:{port}", lambda: "tok-ann")
        deadline = time.monotonic() + 20
        while True:
            try:
                assert api.call("GET", "/healthz")["you"] == "ann@contoso.com"
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        ask = {**ASK, "vm": "vm-win01", "resource_group": "rg-jit-demo"}
        # Azure would refuse its initiate (no JIT policy yet): refused before anyone approves
        with pytest.raises(JitctlError, match="vm-win01 is in no JIT policy of resource group"):
            api.call("POST", "/requests", ask)
        enable = ["enable", "vm-win01", "-g", "rg-jit-demo", "--port", "22"]
        enabled = subprocess.run(
            [sys.executable, "-m", "jitctl", "--emulator", *enable],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert enabled.returncode == 0, enabled.stderr
        made = api.call("POST", "/requests", ask)
        assert made["state"] == "pending" and made["subscription"] == DEMO_SUBSCRIPTION
        proc.send_signal(signal.SIGHUP)  # re-reads the policies; the server goes on
        assert api.call("GET", f"/requests/{made['id']}")["id"] == made["id"]
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught (its default)
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


ASK_SUB = "00000000-0000-0000-0000-000000000001"


def test_no_worker_serves_the_api_alone_and_the_vm_tags_are_read_once_per_burst(tmp_path, app: App):
    """`serve --no-worker`: an API replica (the worker runs on another); by default the worker
    runs beside the API. A burst of creates for one VM reads its tags from Azure once."""
    (tmp_path / "p.yaml").write_text(POLICY)
    served: list[object] = []
    app.serve_broker = served.append
    base = ["broker", "serve", "--db", f"sqlite:///{tmp_path / 'b.sqlite'}"]
    for flag in ("--no-worker", "--worker"):
        got = CliRunner().invoke(cli, [*base, "--policies", str(tmp_path), flag], obj=app)
        assert got.exit_code == 0, got.output
    assert served[0].worker is None and served[1].worker is not None  # type: ignore[attr-defined]

    from jitctl.broker.azureside import VmTags

    calls: list[str] = []

    class Counting:
        def get_vm(self, ref):  # type: ignore[no-untyped-def]
            calls.append(ref.name)
            return app.gateway().get_vm(ref)

    vm = (
        f"/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/rg-jit-demo"
        "/providers/Microsoft.Compute/virtualMachines/vm-win01"
    )
    ticks = [0.0]
    tags = VmTags(Counting(), ttl=30, monotonic=lambda: ticks[0])
    assert tags(vm) == tags(vm.upper()) == tags(vm)
    assert calls == ["vm-win01"]
    ticks[0] = 31.0
    tags(vm)
    assert calls == ["vm-win01", "vm-win01"]  # kept no longer than ttl


def test_pages_on_an_address_others_reach_need_a_shared_session_secret(
    tmp_path, app: App, monkeypatch
):
    """Behind a load balancer each replica with a random key of its own breaks every sign-in
    that lands on another replica: serve refuses it (exit 2, nothing touched); on loopback a
    random key is enough (one process, one user)."""
    (tmp_path / "p.yaml").write_text(POLICY)
    db = tmp_path / "b.sqlite"
    served: list[object] = []
    app.serve_broker = served.append
    base = ["broker", "serve", "--db", f"sqlite:///{db}", "--policies", str(tmp_path)]
    for host in ("0.0.0.0", "broker.internal", "::"):
        got = CliRunner().invoke(cli, [*base, "--host", host], obj=app)
        assert got.exit_code == 2, got.output
        assert got.stderr.splitlines()[0] == (
            f"jitctl: error: The web pages on {host} need a session secret shared by every replica: "
            "set JITCTL_BROKER_SESSION_SECRET (e.g. `openssl rand -base64 32`)."
        )
    assert not db.exists() and not served
    for host in ("127.0.0.1", "localhost", "::1"):
        got = CliRunner().invoke(cli, [*base, "--host", host], obj=app)
        assert got.exit_code == 0, got.output
    monkeypatch.setenv("JITCTL_BROKER_SESSION_SECRET", "s" * 44)
    got = CliRunner().invoke(cli, [*base, "--host", "0.0.0.0"], obj=app)
    assert got.exit_code == 0, got.output
    assert len(served) == 4


def test_a_request_azure_would_refuse_is_refused_when_made(app: App):
    """JitCheck: no JIT policy, a port the policy lacks, a duration past its maximum are
    refused before anyone is asked to approve (as `jitctl request` refuses before sending);
    a policy that covers the VM is read once per ttl."""
    from jitctl.broker.azureside import JitCheck
    from jitctl.errors import NotFound, Refused

    reads: list[str] = []

    class Counting:
        def list_policies(self, sub, group=None):  # type: ignore[no-untyped-def]
            reads.append(group)
            return app.gateway().list_policies(sub, group)

    vm = (
        f"/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/rg-jit-demo"
        "/providers/Microsoft.Compute/virtualMachines/vm-win01"
    )
    ticks = [0.0]
    check = JitCheck(Counting(), ttl=30, monotonic=lambda: ticks[0])
    hour = timedelta(hours=1)
    with pytest.raises(NotFound) as refused:
        check(vm, (3389,), "203.0.113.7", hour)
    assert str(refused.value) == (
        "VM vm-win01 is in no JIT policy of resource group rg-jit-demo.\n"
        "Hint: Ask an admin to run: jitctl enable vm-win01 -g rg-jit-demo"
    )
    enabled = CliRunner().invoke(
        cli, ["enable", "vm-win01", "-g", "rg-jit-demo", "--port", "3389"], obj=app
    )
    assert enabled.exit_code == 0, enabled.output
    check(vm, (3389,), "203.0.113.7", hour)  # read again: a refusal is never kept
    with pytest.raises(Refused, match="Port 22 is not in the JIT policy"):
        check(vm, (22,), "203.0.113.7", hour)
    with pytest.raises(Refused, match="Duration 30h exceeds the maximum of 3h"):
        check(vm, (3389,), "203.0.113.7", timedelta(hours=30))
    check(vm, (3389,), "198.51.100.1", hour)
    assert reads == ["rg-jit-demo"] * 3  # the refusal, the first fit, the port it lacks
    ticks[0] = 31.0
    check(vm, (3389,), "203.0.113.7", hour)
    assert len(reads) == 4
