"""Benchmark of the approval broker against issue 22's targets. Prints Markdown.

The broker is served for real: `jitctl --emulator broker serve` processes (uvicorn on
127.0.0.1, the worker beside it), sharing one emulator state file; the people's tokens are
signed by the emulator's identity provider and checked by the broker as Entra ID's are; the
clients are httpx over HTTP, `--clients` at once; the requests go round 50 VMs, each with a
JIT policy. The emulator answers at once (no latency, no propagation delay): Azure's own time
is left out. It runs inside each broker's process (`--emulator`), so its CPU counts.

1. API latency (p50/p95/p99) of create (a requester's POST /api/v1/requests) and approve (an
   approver's POST .../approve), on SQLite (a file, WAL) and on PostgreSQL, on an API replica
   (`serve --no-worker`: Azure's calls excluded, as issue 22 says; the VM's tags, which a
   create reads, come from the emulator once per VM and 30 s): back to back
   (each client sends its next call when its last is answered) and paced (each client a call
   every `--every` seconds, latency counted from when the call was due).
2. Approval -> initiate: from the approve call to the initiate's arrival at the emulator (the
   time the emulator stamps on the JIT request it records), approvals a second apart.
3. The pending page (/pending, HTML, an approver signed in) with `--stored` requests stored.
4. Two replicas on one PostgreSQL: `--approvals` concurrent approvals of `--contested`
   requests, initiates counted at the emulator (the JIT policies' request history).

PostgreSQL: a throwaway server (initdb into a temp folder, a free port), skipped with a line
saying so when Debian's binaries (/usr/lib/postgresql/*/bin) are not there.

    python scripts/broker_benchmark.py [--quick] [--no-postgres] [--clients 50] [--every 1]
        [--requests 1000] [--stored 10000] [--initiates 20] [--contested 20] [--approvals 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/pgserver.py: the throwaway PostgreSQL the tests use

from jitctl.app import App  # noqa: E402
from jitctl.emulator.backend import Backend  # noqa: E402
from jitctl.emulator.bodies import parse_time  # noqa: E402
from jitctl.emulator.oidc import BROKER_APP_ID  # noqa: E402
from jitctl.emulator.seeder import DEMO_GROUP, DEMO_SUBSCRIPTION, Seeder, subnet_id  # noqa: E402
from jitctl.emulator.settings import Settings  # noqa: E402
from jitctl.emulator.store import open_store, read_file  # noqa: E402
from jitctl.emulator.worlds import demo  # noqa: E402

REQUESTER, APPROVER = "alice@contoso.com", "bob@contoso.com"
VM, VMS, PORT = "vm-bench", 50, 3389
TARGETS = {"api": 50.0, "initiate": 100.0, "page": 100.0}  # ms, issue 22
RULES = f"""\
subscriptions: [{DEMO_SUBSCRIPTION}]
targets:
  - resourceGroup: {DEMO_GROUP}
    names: ['*']
    ports: [22, 3389]
approvals:
  - match: {{resourceGroup: {DEMO_GROUP}}}
    requesters: ["group:engineers"]
    approvers: ["group:ops-leads"]
    minApprovals: 1
    maxDuration: 3h
    reasonRequired: true
"""
JITCTL = [sys.executable, "-m", "jitctl", "--emulator"]
JUSTIFICATION = re.compile(r"^broker:([0-9a-f-]{36}):")


def world(b: Backend) -> None:
    """The demo world and VMS VMs more, each with its NSG and JIT enabled (what an admin does
    before the broker). The requests go round the VMs, as a team's do: one VM's JIT request
    history (which every initiate reads) stays as short as it is in use."""
    demo(b)
    s = Seeder(b)
    vnet = s.vnet("bench-vnet", "10.99.0.0/16", {"snet": ("10.99.0.0/16", None)})
    for i in range(VMS):
        nic = s.nic(
            f"{VM}{i}-nic", subnet_id(vnet, "snet"), f"10.99.0.{i + 4}", nsg=s.nsg(f"{VM}{i}-nsg")
        )
        s.vm(f"{VM}{i}", [nic])
        s.jit_policy(f"{VM}{i}-jit", {f"{VM}{i}": [PORT]})


def ask(i: int) -> dict[str, Any]:
    return {
        "vm": f"{VM}{i % VMS}",
        "resource_group": DEMO_GROUP,
        "ports": [PORT],
        "duration": "1h",
        "reason": f"benchmark {i}",
        "source": f"198.51.{i // 250 % 250}.{i % 250 + 1}",
    }


# --- the emulator -------------------------------------------------------------------------------


class Emulator:
    """The emulator's state file the brokers share, its tokens, and what reached it."""

    def __init__(self, folder: Path) -> None:
        self.state = folder / "emulator.sqlite"
        # no propagation delay: access is live as soon as the initiate is taken
        open_store(self.state, Backend(settings=Settings()), seed=world).close()
        self.app = App(emulator=True, state_file=self.state)
        self._tokens: dict[str, str] = {}

    def token(self, upn: str) -> str:
        if upn not in self._tokens:
            self._tokens[upn] = self.app.emulator_token(upn, BROKER_APP_ID)
        return self._tokens[upn]

    def initiates(self) -> list[tuple[str, datetime]]:
        """Every initiate the broker sent, as the emulator recorded it: (request id, when)."""
        found = []
        for entry in read_file(self.state).state["jit"].values():
            for req in entry["policy"]["properties"].get("requests", []):
                hit = JUSTIFICATION.match(req.get("justification") or "")
                if hit:
                    found.append((hit.group(1), parse_time(req["startTimeUtc"])))
        return found

    def close(self) -> None:
        self.app.close()


# --- the broker, served -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def served(
    db: str, folder: Path, emulator: Emulator, replicas: int = 1, worker: bool = True
) -> Iterator[list[str]]:
    """`replicas` `jitctl --emulator broker serve` processes on one database; their URLs.
    `worker=False`: API replicas (`--no-worker`), nothing sent to Azure."""
    policies = folder / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "approvals.yaml").write_text(RULES)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JITCTL_", "AZURE_"))}
    env.update(
        JITCTL_EMULATOR_STATE=str(emulator.state),
        JITCTL_BROKER_LOG_LEVEL="warning",
        JITCTL_BROKER_SESSION_SECRET="benchmark-" + "s" * 32,
    )
    ports = [free_port() for _ in range(replicas)]
    serve = [*JITCTL, "broker", "serve", "--db", db, "--policies", str(policies)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    with contextlib.ExitStack() as logs:
        procs = [
            subprocess.Popen(
                [*serve, "--port", str(port), "--admin", "group:broker-admins"]
                + ([] if worker else ["--no-worker"]),
                cwd=folder,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=logs.enter_context(open(folder / f"broker-{port}.log", "w")),
            )
            for port in ports
        ]
        try:
            for url, proc in zip(urls, procs, strict=True):
                _wait_up(url, proc, folder)
            yield urls
        finally:
            _stop(procs)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_up(url: str, proc: subprocess.Popen[bytes], folder: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            logs = "".join(p.read_text() for p in folder.glob("broker-*.log"))
            raise RuntimeError(f"the broker stopped (exit {proc.returncode}):\n{logs}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the broker at {url} did not answer within 60 s")


# --- load ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    ms: list[float]  # each call's latency
    statuses: Counter[int]
    answers: list[Any]  # each call's JSON answer (None when not JSON), in the order asked
    wall: float  # seconds for all of them


async def _run(
    calls: list[Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]],
    clients: int,
    every: float | None,
) -> Timed:
    """`clients` at once over `calls`. every=None: each sends its next call as soon as its last
    is answered (saturation). every=S: each sends one call every S seconds (their starts
    spread over S), and a call's latency counts from when it was due, so a broker falling
    behind shows in the figures (no coordinated omission)."""
    ms: list[float] = [0.0] * len(calls)
    answers: list[Any] = [None] * len(calls)
    statuses: Counter[int] = Counter()
    todo = iter(range(len(calls)))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        began = time.perf_counter()

        async def client(k: int) -> None:
            due = began + (every * k / clients if every else 0.0)
            for i in todo:
                if every:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                start = due if every else time.perf_counter()
                try:
                    answer = await calls[i](http)
                except httpx.TransportError:  # counted as status 0 (not ok); the run goes on
                    statuses[0] += 1
                else:
                    statuses[answer.status_code] += 1
                    with contextlib.suppress(ValueError):
                        answers[i] = answer.json()
                ms[i] = (time.perf_counter() - start) * 1000
                due += every or 0.0

        await asyncio.gather(*(client(k) for k in range(clients)))
    return Timed(ms, statuses, answers, time.perf_counter() - began)


def run(
    calls: list[Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]],
    clients: int,
    every: float | None = None,
) -> Timed:
    return asyncio.run(_run(calls, clients, every))


def creates(url: str, token: str, n: int, first: int = 0) -> list[Any]:
    auth = {"Authorization": f"Bearer {token}"}
    return [
        lambda http, i=i: http.post(f"{url}/api/v1/requests", json=ask(first + i), headers=auth)
        for i in range(n)
    ]


def approves(urls: list[str], token: str, ids: list[str]) -> list[Any]:
    """An approval of each id, sent to the replicas in turn."""
    auth = {"Authorization": f"Bearer {token}"}
    return [
        lambda http, i=i, rid=rid: http.post(
            f"{urls[i % len(urls)]}/api/v1/requests/{rid}/approve", json={}, headers=auth
        )
        for i, rid in enumerate(ids)
    ]


def ids_of(timed: Timed) -> list[str]:
    return [a["id"] for a in timed.answers if isinstance(a, dict) and "id" in a]


def wait_for_initiates(emulator: Emulator, n: int, timeout: float) -> list[tuple[str, datetime]]:
    """The initiates at the emulator once there are `n` (or at `timeout`), and a moment more
    so that a second initiate of one request, if the broker sent one, is counted too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(emulator.initiates()) < n:
        time.sleep(0.05)
    time.sleep(1.0)
    return emulator.initiates()


# --- the measures -------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value with p% of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def row(name: str, ms: list[float], target: float, extra: str = "") -> str:
    p50, p95, p99 = (pct(ms, p) for p in (50, 95, 99))
    verdict = "met" if p99 <= target else "**missed**"
    return f"| {name} | {len(ms)} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {target:.0f} | {verdict} |{extra}"


def api_latency(
    db: str, folder: Path, emulator: Emulator, n: int, clients: int, every: float | None
) -> list[str]:
    """create then approve, `n` each, `clients` at once (after a warm-up of each), on an API
    replica (`serve --no-worker`): Azure's calls excluded, as the target says (approval ->
    initiate is measured on its own, with the worker)."""
    with served(db, folder, emulator, worker=False) as (url,):
        requester, approver = emulator.token(REQUESTER), emulator.token(APPROVER)
        warm = run(creates(url, requester, clients, first=n), clients)
        run(approves([url], approver, ids_of(warm)), clients)
        made = run(creates(url, requester, n), clients, every)
        decided = run(approves([url], approver, ids_of(made)), clients, every)
    load = f"each a call every {every:g} s" if every else "back to back"
    out = []
    for name, timed in (("create", made), ("approve", decided)):
        ok = timed.statuses[201 if name == "create" else 200]
        rate = f" {load}: {len(timed.ms) / timed.wall:.0f}/s, {ok}/{len(timed.ms)} ok |"
        out.append(row(name, timed.ms, TARGETS["api"], rate))
    return out


def approval_to_initiate(
    db: str, folder: Path, emulator: Emulator, n: int, gap: float = 1.0
) -> tuple[str, int]:
    """`n` approvals one after another (`gap` seconds apart, as people approve); for each, the
    time from the approve call to its initiate at the emulator. Returns the row and how many
    initiates reached the emulator for the `n` requests (exactly `n` is right)."""
    with served(db, folder, emulator) as (url,):
        made = run(creates(url, emulator.token(REQUESTER), n, first=100_000), 1)
        ids = ids_of(made)
        sent: dict[str, float] = {}
        answered: list[float] = []
        auth = {"Authorization": f"Bearer {emulator.token(APPROVER)}"}
        with httpx.Client(base_url=url, headers=auth, timeout=30) as http:
            http.get("/api/v1/healthz").raise_for_status()  # the connection, made beforehand
            for rid in ids:
                sent[rid] = time.time()
                http.post(f"/api/v1/requests/{rid}/approve", json={}).raise_for_status()
                answered.append((time.time() - sent[rid]) * 1000)
                time.sleep(gap)
        seen = [(rid, at) for rid, at in wait_for_initiates(emulator, n, 30) if rid in sent]
    ms = [(at.timestamp() - sent[rid]) * 1000 for rid, at in seen]
    extra = (
        f" {len(seen)} initiates for {n} approvals; the approve answered in "
        f"{statistics.median(answered):.1f} ms (median) |"
    )
    return row("approve -> initiate at the emulator", ms, TARGETS["initiate"], extra), len(seen)


def seed_requests(db: str, n: int) -> None:
    """`n` pending requests straight into the store (the API would take minutes to add them)."""
    from jitctl.broker.rules import Ask, Principal, RuleSet
    from jitctl.broker.store import Store
    from jitctl.clock import SystemClock
    from jitctl.policyfile import load_all

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "approvals.yaml").write_text(RULES)
        rules = RuleSet.from_files(load_all(Path(tmp))[0])
    store = Store.open(db, SystemClock())
    store.migrate()
    who = Principal(REQUESTER, frozenset({"engineers"}))
    group = f"/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/{DEMO_GROUP}"
    for i in range(n):
        vm_id = f"{group}/providers/Microsoft.Compute/virtualMachines/{ask(i)['vm']}"
        one = Ask(who, vm_id, (PORT,), timedelta(hours=1), store.clock.now(), reason=f"seed {i}")
        store.create(one, rules.evaluate(one), ask(i)["source"])
    store.engine.dispose()


def signed_in(url: str, upn: str) -> httpx.Client:
    """A browser's session: the pages' OIDC sign-in, the emulator's user picker answered."""
    http = httpx.Client(base_url=url, timeout=30)
    start = http.get("/auth/login", params={"next": "/pending"})
    picked = http.get(start.headers["location"] + "&login_hint=" + upn)
    back = http.get(picked.headers["location"])
    if back.status_code != 303:
        raise RuntimeError(f"sign-in failed: {back.status_code} {back.text[:200]}")
    return http


def pending_page(db: str, folder: Path, emulator: Emulator, stored: int, loads: int) -> str:
    """`loads` loads of /pending, one after another, by an approver who may decide all of the
    `stored` pending requests (the page shows the newest 50)."""
    seed_requests(db, stored)
    with (
        served(db, folder, emulator) as (url,),
        contextlib.closing(signed_in(url, APPROVER)) as browser,
    ):
        first = browser.get("/pending")  # warm-up: the VMs' exposure is read once, then kept
        size = len(first.content)
        ms = []
        for _ in range(loads):
            start = time.perf_counter()
            page = browser.get("/pending")
            ms.append((time.perf_counter() - start) * 1000)
            assert page.status_code == 200, page.status_code
    note = f" a page of 50 requests, {size:,} bytes |"
    return row(f"/pending, {stored:,} pending stored", ms, TARGETS["page"], note)


def two_replicas(
    db: str, folder: Path, emulator: Emulator, requests: int, approvals: int, clients: int
) -> tuple[str, int, int]:
    """Two replicas on one database, `approvals` approvals of `requests` requests at once,
    sent to both in turn; (the row, initiates at the emulator, distinct requests initiated)."""
    with served(db, folder, emulator, replicas=2) as urls:
        made = run(creates(urls[0], emulator.token(REQUESTER), requests, first=200_000), clients)
        ids = ids_of(made)
        contested = [ids[i % len(ids)] for i in range(approvals)]
        decided = run(approves(urls, emulator.token(APPROVER), contested), clients)
        seen = [r for r, _ in wait_for_initiates(emulator, requests, 30) if r in set(ids)]
    codes = ", ".join(f"{n}x{code}" for code, n in sorted(decided.statuses.items()))
    verdict = "met" if len(seen) == requests and len(set(seen)) == requests else "**missed**"
    line = (
        f"| {approvals} approvals of {requests} requests, 2 replicas | {codes} | "
        f"{len(seen)} | {len(set(seen))} | {requests} | {verdict} |"
    )
    return line, len(seen), len(set(seen))


# --- main ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def databases(postgres: bool) -> Iterator[list[tuple[str, Callable[[Path], Any]]]]:
    """(name, folder -> a fresh database URL) for SQLite and, when it can run, PostgreSQL."""
    dbs: list[tuple[str, Callable[[Path], Any]]] = [
        ("SQLite", lambda folder: f"sqlite:///{folder / 'broker.sqlite'}")
    ]
    if not postgres:
        yield dbs
        return
    from tests.pgserver import pg_bin, throwaway_postgres

    if pg_bin() is None:
        print("\nPostgreSQL rows skipped: no initdb (apt-get install postgresql).\n")
        yield dbs
        return
    with throwaway_postgres() as base:
        made = [0]

        def fresh(_folder: Path) -> str:
            import psycopg

            made[0] += 1
            name = f"bench{made[0]}"
            plain = base.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            return base.rsplit("/", 1)[0] + f"/{name}"

        yield [*dbs, ("PostgreSQL", fresh)]


HEAD = (
    "| what | calls | p50 ms | p95 ms | p99 ms | target p99 ms | verdict | notes |\n"
    "|---|---|---|---|---|---|---|---|"
)


def fresh_world(fresh: Callable[[Path], str], measure: Callable[[str, Path, Emulator], Any]) -> Any:
    """`measure(db, folder, emulator)` on a fresh database, emulator and folder."""
    with tempfile.TemporaryDirectory(prefix="jitctl-broker-bench-") as tmp:
        emulator = Emulator(Path(tmp))
        try:
            return measure(fresh(Path(tmp)), Path(tmp), emulator)
        finally:
            emulator.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests: a smoke run")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--every", type=float, default=1.0, help="paced run: seconds per call")
    parser.add_argument("--requests", type=int, help="creates and approves measured (1000)")
    parser.add_argument("--stored", type=int, help="requests stored for the pending page (10000)")
    parser.add_argument("--initiates", type=int, help="approvals timed to their initiate (20)")
    parser.add_argument("--contested", type=int, default=20, help="requests two replicas race on")
    parser.add_argument("--approvals", type=int, default=100, help="approvals of those, at once")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    opts = parser.parse_args()
    n = opts.requests or (200 if opts.quick else 1000)
    stored = opts.stored or (1000 if opts.quick else 10_000)
    initiates = opts.initiates or (5 if opts.quick else 20)
    clients = opts.clients

    def say(what: str) -> None:
        print(f"... {what}", file=sys.stderr, flush=True)

    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {clients} clients\n")
    parts: dict[str, list[str]] = {"api": [], "initiate": [], "page": [], "replicas": []}
    with databases(not opts.no_postgres) as dbs:
        for name, fresh in dbs:
            for every in (None, opts.every):
                say(f"{name}: API, {'back to back' if every is None else 'paced'}")
                load = partial(api_latency, n=n, clients=clients, every=every)
                lines = fresh_world(fresh, load)
                parts["api"] += [f"| {name}: {line[2:]}" for line in lines]
            say(f"{name}: approval -> initiate")
            line = fresh_world(fresh, lambda d, f, e: approval_to_initiate(d, f, e, initiates)[0])
            parts["initiate"].append(f"| {name}: {line[2:]}")
            say(f"{name}: the pending page")
            line = fresh_world(fresh, lambda d, f, e: pending_page(d, f, e, stored, 30))
            parts["page"].append(f"| {name}: {line[2:]}")
            if name == "PostgreSQL":
                say("PostgreSQL: two replicas")
                race = partial(
                    two_replicas, requests=opts.contested, approvals=opts.approvals, clients=clients
                )
                line = fresh_world(fresh, race)[0]
                parts["replicas"].append(line)
    print(f"## API, {clients} concurrent clients\n\n{HEAD}\n" + "\n".join(parts["api"]))
    print(f"\n## Approval -> initiate\n\n{HEAD}\n" + "\n".join(parts["initiate"]))
    print(f"\n## The pending page\n\n{HEAD}\n" + "\n".join(parts["page"]))
    print("\n## Two replicas on one PostgreSQL\n")
    print("| what | approve answers | initiates | distinct requests | wanted | verdict |")
    print("|---|---|---|---|---|---|")
    print("\n".join(parts["replicas"]) or "| (no PostgreSQL) | | | | | |")


if __name__ == "__main__":
    main()
