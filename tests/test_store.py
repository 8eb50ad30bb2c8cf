"""The --emulator state store: one SQLite transaction per ARM request, shared by many processes;
reads write nothing; a bad file is one line naming `jitctl emulator reset`; private modes."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import stat
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.clock import FakeClock
from jitctl.emulator import Backend, Settings
from jitctl.emulator.responses import Router
from jitctl.emulator.seeder import DEMO_SUBSCRIPTION
from jitctl.emulator.store import StateStore, StoredRouter, open_store
from jitctl.emulator.store import read_file as stored
from jitctl.emulator.worlds import demo
from tests.support import one_error

G = ["-g", "rg-jit-demo"]
NSG = (
    f"https://management.emulator.invalid/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/"
    "rg-jit-demo/providers/Microsoft.Network/networkSecurityGroups/vm-win01-nsg"
)
AUTH = {"Authorization": "Bearer x"}
CROWD = 6  # processes writing one state file at once


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith(("JITCTL_", "AZURE_", "IDENTITY_")):
            monkeypatch.delenv(key)


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "emulator.sqlite"
    monkeypatch.setenv("JITCTL_EMULATOR_STATE", str(path))
    return path


def invoke(*args: str) -> Result:
    """The CLI in this process, as a user runs it, but its waits (a write's confirmation
    window) on a fake clock that starts at the real time the emulator's state file keeps."""
    app = App(clock=FakeClock(datetime.now(timezone.utc)))
    return CliRunner().invoke(cli, list(args), obj=app)


def data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


# --- many processes at once -----------------------------------------------------------------


def _cli_process(args: list[str], out: str) -> None:
    """A forked child running the real CLI (imports already warm in the parent)."""
    from jitctl.cli.root import main

    with open(out, "w") as f:
        sys.stdout = sys.stderr = f
        main(args)  # exits with the command's code


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork to stay fast"
)
def test_processes_at_once_keep_every_change(state, tmp_path, monkeypatch):
    # the parent warms the SDK imports on a file of its own and holds no connection while forking
    assert invoke("--emulator", "enable", "vm-lnx01", *G, "--port", "22").exit_code == 0
    shared = tmp_path / "new" / "emulator.sqlite"  # they race to create it, too
    monkeypatch.setenv("JITCTL_EMULATOR_STATE", str(shared))
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(
            target=_cli_process,
            args=(
                ["--emulator", "enable", "vm-win01", *G, "--policy-name", f"p{i}"],
                str(tmp_path / f"out{i}.txt"),
            ),
        )
        for i in range(CROWD)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    outputs = [(tmp_path / f"out{i}.txt").read_text() for i in range(CROWD)]
    assert [p.exitcode for p in procs] == [0] * CROWD, outputs
    assert not [o for o in outputs if "Traceback" in o or "error" in o]
    after = stored(shared)
    names = {entry["policy"]["name"] for entry in after.state["jit"].values()}
    assert names == {f"p{i}" for i in range(CROWD)}
    deny = [  # each policy's deny rule in the shared NSG: no write overwrote another's
        r["name"]
        for r in after.rules(NSG.split(".invalid", 1)[1])
        if r["name"].startswith("MicrosoftDefenderForCloud-JITRule_")
    ]
    assert len(deny) == CROWD
    r = invoke("--emulator", "-o", "json", "list")
    assert len(json.loads(r.stdout)["policies"]) == CROWD


def test_each_request_is_one_transaction_and_other_writers_are_seen(tmp_path):
    path = tmp_path / "s.sqlite"
    a = open_store(path, Backend(settings=Settings()), demo)
    b = open_store(path, Backend(settings=Settings()), demo)  # a second process, in effect
    ra, rb = StoredRouter(Router(a.backend), a), StoredRouter(Router(b.backend), b)
    deny_dns = dict(protocol="Udp", access="Deny", priority=310, direction="Inbound")
    deny_dns.update(sourceAddressPrefix="198.51.100.0/24", destinationPortRange="53")
    rule = {"properties": deny_dns}
    status, _, _ = ra.handle(
        "PUT", f"{NSG}/securityRules/https?api-version=2023-09-01", AUTH, json.dumps(rule).encode()
    )
    assert status == 201
    status, _, body = rb.handle("GET", f"{NSG}/securityRules?api-version=2023-09-01", AUTH, None)
    assert [r["name"] for r in json.loads(body)["value"]] == ["https"]  # b reloaded a's commit
    # b holds no transaction between requests: a writes again at once
    status, _, _ = ra.handle(
        "DELETE", f"{NSG}/securityRules/https?api-version=2023-09-01", AUTH, None
    )
    assert status == 200
    # a deleted resource is gone for the other process too, and comes back when recreated
    pip = NSG.replace("networkSecurityGroups/vm-win01-nsg", "publicIPAddresses/vm-win01-pip")
    pip += "?api-version=2023-09-01"
    assert ra.handle("DELETE", pip, AUTH, None)[0] == 200
    assert rb.handle("GET", pip, AUTH, None)[0] == 404
    assert rb.handle("PUT", pip, AUTH, b'{"properties": {}}')[0] == 201
    assert ra.handle("GET", pip, AUTH, None)[0] == 200
    assert rb.handle("GET", pip, AUTH, None)[0] == 200
    again = stored(path)  # read whole: the same as what each caught up on, row by row
    assert a.backend.state == b.backend.state == again.state  # type: ignore[union-attr]
    a.close()
    b.close()
    assert again.rules(NSG.split(".invalid", 1)[1]) == []
    assert list(again.state["resources"])[-1].endswith("/vm-win01-pip")  # recreated: listed last


def test_reads_after_own_writes_write_nothing_while_a_grant_is_live(tmp_path):
    path = tmp_path / "s.sqlite"
    store = open_store(path, Backend(settings=Settings()), demo)
    router = StoredRouter(Router(store.backend), store)
    vm = NSG.split(".invalid", 1)[1].replace(
        "Microsoft.Network/networkSecurityGroups/vm-win01-nsg",
        "Microsoft.Compute/virtualMachines/vm-win01",
    )
    policy = NSG.replace(
        "Microsoft.Network/networkSecurityGroups/vm-win01-nsg",
        "Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default",
    )
    port = dict(number=3389, protocol="*", maxRequestAccessDuration="PT3H")
    body = {"properties": {"virtualMachines": [{"id": vm, "ports": [port]}]}}
    port["allowedSourceAddressPrefix"] = "*"
    q = "?api-version=2020-01-01"
    assert router.handle("PUT", policy + q, AUTH, json.dumps(body).encode())[0] == 200
    wanted = dict(number=3389, duration="PT1H", allowedSourceAddressPrefix="203.0.113.7")
    ask = {"virtualMachines": [{"id": vm, "ports": [wanted]}]}
    assert router.handle("POST", policy + "/initiate" + q, AUTH, json.dumps(ask).encode())[0] == 202
    assert store.backend is not None
    assert [g["state"] for g in store.backend.state["grants"]] == ["active"]  # its rule is in
    watcher = sqlite3.connect(path)
    before = data_version(watcher)
    for _ in range(3):
        assert router.handle("GET", policy + q, AUTH, None)[0] == 200
        assert router.handle("GET", f"{NSG}?api-version=2023-09-01", AUTH, None)[0] == 200
    assert data_version(watcher) == before
    watcher.close()
    store.close()


def test_a_failed_request_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "s.sqlite"
    store = open_store(path, Backend(settings=Settings()), demo)

    class Broken:
        def handle(self, *args: object) -> None:
            store.backend.state["resources"].clear()  # type: ignore[union-attr]
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        StoredRouter(Broken(), store).handle("GET", NSG, AUTH, None)
    status, _, _ = StoredRouter(Router(store.backend), store).handle(
        "GET", f"{NSG}?api-version=2023-09-01", AUTH, None
    )
    assert status == 200  # memory was reloaded from the file, which never saw the clear()
    store.close()


def test_a_file_held_too_long_by_another_process_is_contended(state, monkeypatch):
    from jitctl.app import App
    from jitctl.emulator import store as store_module
    from jitctl.errors import Contended, ExitCode

    monkeypatch.setattr(store_module, "BUSY_TIMEOUT", 0.2)
    assert invoke("--emulator", "list").exit_code == 0
    app = App(emulator=True)
    sub = app.subscription_id  # attached to the file
    holder = sqlite3.connect(state, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a request
    try:
        with pytest.raises(Contended):  # through the real SDK pipeline, untranslated
            app.gateway().list_policies(sub)
        r = invoke("--emulator", "list")
        assert r.exit_code == ExitCode.CONTENDED and "stayed locked" in r.stderr
        assert one_error(r.stderr)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        app.close()
    assert invoke("--emulator", "list").exit_code == 0


# --- reads write nothing ----------------------------------------------------------------------


def test_read_only_commands_do_not_touch_the_file(state):
    assert invoke("--emulator", "enable", "vm-win01", *G).exit_code == 0
    watcher = sqlite3.connect(state)
    before = (data_version(watcher), state.read_bytes(), state.stat().st_mtime_ns)
    for args in (["list"], ["show", "vm-win01", *G], ["status"], ["-o", "json", "list"]):
        r = invoke("--emulator", *args)
        assert r.exit_code == 0, r.output
    assert (data_version(watcher), state.read_bytes(), state.stat().st_mtime_ns) == before
    assert invoke("--emulator", "enable", "vm-lnx01", *G, "--port", "22").exit_code == 0
    assert data_version(watcher) != before[0]  # a write is seen by the same watcher
    watcher.close()


# --- bad files -------------------------------------------------------------------------------


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xffnot a database at all" * 20)


def _old_json(path: Path) -> None:
    backend = Backend()
    demo(backend)
    backend.save(path)


def _other_json(path: Path) -> None:
    path.write_text('{"settings": {}}')


def _foreign_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()


def _other_format(path: Path) -> None:
    stored(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()


def _truncated(path: Path) -> None:
    stored(path)
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\x00" * (len(data) - 100))


@pytest.mark.parametrize(
    "spoil, why",
    [
        (_garbage, "is not an emulator state file"),
        (_old_json, "former JSON format.\nHint: To import it, rename it emulator.json first;"),
        (_other_json, "is not an emulator state file"),
        (_foreign_sqlite, "is an SQLite database of another program"),
        (_other_format, "was written by another version of jitctl"),
        (_truncated, "is damaged"),
    ],
)
def test_a_bad_state_file_is_one_line_naming_reset(state, spoil, why):
    spoil(state)
    spoiled = state.read_bytes()
    r = invoke("--emulator", "list")
    assert r.exit_code == 2
    assert r.stdout == "" and "Traceback" not in r.stderr
    assert one_error(r.stderr) and why in r.stderr
    assert "jitctl emulator reset" in r.stderr
    assert state.read_bytes() == spoiled  # left for the user to look at
    r = invoke("emulator", "reset")
    assert r.exit_code == 0, r.output
    assert invoke("--emulator", "show", "vm-win01", *G).exit_code == 4  # a fresh demo world


def test_a_servers_bad_file_names_reset_with_its_path(state, tmp_path):
    served = tmp_path / "served file.sqlite"
    _garbage(served)
    r = invoke("emulator", "serve", "--port", "0", "--state", str(served))
    assert r.exit_code == 2 and one_error(r.stderr)
    assert f"with: jitctl emulator reset --state '{served}' (it" in r.stderr  # shell-quoted
    assert invoke("emulator", "reset", "--state", str(served)).exit_code == 0
    assert stored(served).state["subscriptions"]
    assert not state.exists()  # the --emulator file was not touched


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_state_file_names_reset(state):
    stored(state)
    state.chmod(0)
    r = invoke("--emulator", "list")
    assert r.exit_code == 2 and "cannot be read" in r.stderr
    assert "jitctl emulator reset" in r.stderr and "Traceback" not in r.stderr


def test_a_folder_in_place_of_the_state_file(state):
    state.mkdir()
    for args in (["--emulator", "list"], ["emulator", "reset"]):
        r = invoke(*args)
        assert r.exit_code == 2 and one_error(r.stderr) and "is a folder" in r.stderr


def test_a_state_file_that_cannot_be_created(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("JITCTL_EMULATOR_STATE", str(tmp_path / "a-file" / "emulator.sqlite"))
    r = invoke("--emulator", "list")
    assert r.exit_code == 2 and one_error(r.stderr)
    assert "cannot be created (Not a directory)" in r.stderr and "folder you can write" in r.stderr


def test_the_former_json_file_beside_it_is_imported(state, monkeypatch):
    backend = Backend(clock=FakeClock(datetime.now(timezone.utc)))
    demo(backend)
    old = App.for_backend(backend)
    assert CliRunner().invoke(cli, ["enable", "vm-win01", *G], obj=old).exit_code == 0
    backend.save(state.with_suffix(".json"))  # what jitctl kept in emulator.json before
    r = invoke("--emulator", "-o", "json", "show", "vm-win01", *G)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["policies"][0]["name"] == "default"
    # named as the state file itself, it is refused with the way to import it
    monkeypatch.setenv("JITCTL_EMULATOR_STATE", str(state.with_suffix(".json")))
    r = invoke("--emulator", "list")
    assert r.exit_code == 2 and "To import it, use emulator.sqlite (same folder)" in r.stderr


def test_reset_replaces_the_world_for_processes_already_attached(state):
    assert invoke("--emulator", "enable", "vm-win01", *G).exit_code == 0
    other = open_store(state, Backend())
    assert other.backend is not None and other.backend.state["jit"]
    r = invoke("emulator", "reset", "--world", "busy", "-o", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["world"] == "busy"  # one JSON document
    router = StoredRouter(Router(other.backend), other)
    url = NSG.replace("vm-win01-nsg", "vm-legacy-nsg") + "?api-version=2023-09-01"
    assert router.handle("GET", url, AUTH, None)[0] == 200  # the busy world, seen at once
    assert other.backend.state["jit"] == {}
    other.close()


# --- private files ---------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_file_and_folders_are_private_whatever_the_umask(tmp_path, monkeypatch):
    path = tmp_path / "new" / "deeper" / "emulator.sqlite"
    monkeypatch.setenv("JITCTL_EMULATOR_STATE", str(path))
    old = os.umask(0)
    try:
        assert invoke("--emulator", "enable", "vm-win01", *G).exit_code == 0
        store = StateStore(path)  # while open, SQLite keeps -wal and -shm beside the file
        store.attach(Backend())
        modes = {
            p.name: stat.S_IMODE(p.stat().st_mode)
            for p in [path.parent.parent, path.parent, *path.parent.iterdir()]
        }
        store.close()
    finally:
        os.umask(old)
    assert modes == {
        "new": 0o700,
        "deeper": 0o700,
        "emulator.sqlite": 0o600,
        "emulator.sqlite-wal": 0o600,
        "emulator.sqlite-shm": 0o600,
    }
