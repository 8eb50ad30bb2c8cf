"""Benchmark of the --emulator state store. Prints Markdown.

1. What one ARM request costs through the store (jitctl.emulator.store) against the plain
   in-process Router, for the demo world and for worlds with many more VMs.
2. N real `python -m jitctl --emulator enable` processes started at once: each with a policy of
   its own (every change must land), and all into the same policy (a read-merge-write race
   between clients, which the store cannot settle: Azure has the same race).

    python scripts/store_benchmark.py [--vms 0,1000,10000] [--processes 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from jitctl.emulator import Backend, Settings
from jitctl.emulator.responses import Router
from jitctl.emulator.seeder import DEMO_SUBSCRIPTION, Seeder, subnet_id
from jitctl.emulator.store import StoredRouter, open_store
from jitctl.emulator.worlds import demo

AUTH = {"Authorization": "Bearer benchmark"}
NSG = (
    f"https://e.invalid/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/rg-jit-demo/providers/"
    "Microsoft.Network/networkSecurityGroups/vm-win01-nsg"
)
RULE = json.dumps(
    {
        "properties": dict(
            protocol="Tcp",
            access="Allow",
            priority=300,
            direction="Inbound",
            sourceAddressPrefix="198.51.100.0/24",
            destinationPortRange="8443",
        )
    }
).encode()


def world(extra_vms: int) -> Callable[[Backend], None]:
    def seed(b: Backend) -> None:
        demo(b)
        s = Seeder(b)
        nsg = s.nsg("bench-nsg")
        vnet = s.vnet("bench-vnet", "10.99.0.0/16", {"snet": ("10.99.0.0/16", nsg)})
        for i in range(extra_vms):
            ip = f"10.99.{i // 250}.{i % 250 + 4}"
            s.vm(f"bench-vm{i}", [s.nic(f"bench-nic{i}", subnet_id(vnet, "snet"), ip)])

    return seed


def per_call_ms(f: Callable[[], object], runs: int) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        f()
    return (time.perf_counter() - start) / runs * 1000


def request_row(n: int) -> str:
    get, put = f"{NSG}?api-version=2023-09-01", f"{NSG}/securityRules/b?api-version=2023-09-01"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.sqlite"
        mine = open_store(path, Backend(settings=Settings()), world(n))
        other = open_store(path, Backend(settings=Settings()))
        plain = Router(mine.backend)
        stored, theirs = StoredRouter(plain, mine), StoredRouter(Router(other.backend), other)
        runs = 20 if n < 5000 else 5
        g0 = per_call_ms(lambda: plain.handle("GET", get, AUTH, None), runs)
        g1 = per_call_ms(lambda: stored.handle("GET", get, AUTH, None), runs)
        p1 = per_call_ms(lambda: stored.handle("PUT", put, AUTH, RULE), runs)
        both = per_call_ms(
            lambda: (stored.handle("PUT", put, AUTH, RULE), theirs.handle("GET", get, AUTH, None)),
            runs,
        )
        mine.close()
        other.close()
    return f"| {n} | {g0:.2f} ms | {g1:.2f} ms | {p1:.2f} ms | {both - p1:.2f} ms |"


def enable_args(scenario: str, i: int) -> list[str]:
    if scenario == "own policy each":
        return ["enable", "vm-win01", "-g", "rg-jit-demo", "--policy-name", f"p{i}"]
    return ["enable", "vm-win01", "-g", "rg-jit-demo", "--port", str(10000 + i)]


def processes_table(n: int) -> list[str]:
    lines = [
        "| scenario | wall time | exit 0 | tracebacks | changes present |",
        "|---|---|---|---|---|",
    ]
    for scenario in ("own policy each", "same policy, own port each"):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, JITCTL_EMULATOR_STATE=str(Path(tmp) / "state.sqlite"))
            base = [sys.executable, "-m", "jitctl", "--emulator"]
            subprocess.run([*base, "list"], env=env, capture_output=True, check=True)

            start = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [*base, *enable_args(scenario, i)],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for i in range(n)
            ]
            results = [(p.wait(), p.communicate()[1]) for p in procs]
            wall = time.perf_counter() - start
            listed = subprocess.run(
                [*base, "-o", "json", "list"], env=env, capture_output=True, text=True
            )
            policies = json.loads(listed.stdout)["policies"]
            present = (
                len(policies)
                if scenario == "own policy each"
                else sum(len(vm["ports"]) for p in policies for vm in p["vms"])
            )
        ok = sum(rc == 0 for rc, _ in results)
        tracebacks = sum("Traceback" in err for _, err in results)
        lines.append(f"| {scenario} | {wall:.1f} s | {ok}/{n} | {tracebacks} | {present}/{n} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--vms", default="0,1000,10000", help="extra VMs per world, comma-separated"
    )
    parser.add_argument("--processes", type=int, default=20)
    opts = parser.parse_args()
    print("## One ARM request through the store\n")
    print("| extra VMs | GET, plain Router | GET, store | PUT, store | GET after another's PUT |")
    print("|---|---|---|---|---|")
    for n in opts.vms.split(","):
        print(request_row(int(n)))
    print(f"\n## {opts.processes} `jitctl --emulator enable` processes at once\n")
    print("\n".join(processes_table(opts.processes)))


if __name__ == "__main__":
    main()
