"""Benchmark: ARM calls per command (on the emulator) and cold-start times. Prints Markdown.

python scripts/benchmark.py [--runs 5] [--az PATH]

The --help comparison runs `az security jit-policy --help` (the Azure CLI found on PATH, or
--az) side by side with `jitctl --help`, interleaved, and is left out when there is no az.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.emulator import Backend, FakeClock, Settings
from jitctl.emulator.worlds import Seeder, demo

G = ["-g", "rg-jit-demo"]
IP = ["--source-ip", "203.0.113.7"]


def count_calls() -> list[tuple[str, int, int]]:
    backend = Backend(settings=Settings(propagation_delay=30), clock=FakeClock())
    demo(backend)
    s = Seeder(backend)
    nsg = s.nsg("vm-extra-nsg")
    vnet = s.vnet("vnet-extra", "10.40.0.0/16", {"snet": ("10.40.1.0/24", None)})
    for i in range(3):
        s.vm(
            f"vm-extra{i}",
            [s.nic(f"vm-extra{i}-nic", f"{vnet}/subnets/snet", f"10.40.1.{4 + i}", nsg=nsg)],
        )
    app = App.for_backend(backend)
    rows = []
    steps = [
        ("enable 1 VM (NIC NSG)", ["enable", "vm-win01", *G]),
        ("enable 1 VM (subnet NSG)", ["enable", "vm-lnx01", *G]),
        ("enable 3 VMs, one policy", ["enable", "vm-extra0", "vm-extra1", "vm-extra2", *G]),
        ("enable again, no change", ["enable", "vm-win01", *G]),
        ("request (VM by name)", ["request", "vm-win01", *G, *IP]),
        ("verify 1-NIC VM, NIC NSG", ["verify", "vm-win01", *G, *IP]),
        ("verify 1-NIC VM, subnet NSG", ["verify", "vm-lnx01", *G, *IP]),
        ("request --wait (rule appears after 30 s)", ["request", "vm-lnx01", *G, *IP, "--wait"]),
        ("show", ["show", "vm-win01", *G]),
        ("list", ["list"]),
        ("disable a VM", ["disable", "vm-extra0", *G]),
    ]
    runner = CliRunner()
    for label, args in steps:
        before = len(backend.log)
        result = runner.invoke(cli, args, obj=app)
        calls = backend.log[before:]
        writes = sum(e.method in ("PUT", "POST", "DELETE") for e in calls)
        rows.append((label, len(calls), writes))
        if result.exit_code not in (0, 7):
            raise SystemExit(f"{label}: exit {result.exit_code}: {result.output}")
    return rows


def timed(cmd: list[str], env: dict[str, str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


MOCKED_REQUEST = """
from unittest.mock import create_autospec
from types import SimpleNamespace
import json
from azure.mgmt.security.v2020_01_01 import models as sm
from azure.mgmt.security.v2020_01_01.operations import JitNetworkAccessPoliciesOperations
from jitctl.app import App
from jitctl.arm.gateway import AzureGateway, Connection
from jitctl.cli.commands import cli
body = json.load(open(sys.argv[1]))["responses"]["200"]["body"]
jit = create_autospec(JitNetworkAccessPoliciesOperations, instance=True)
jit.list_by_resource_group.return_value = iter([sm.JitNetworkAccessPolicy.deserialize(body)])
jit.initiate.return_value = sm.JitNetworkAccessRequest(virtual_machines=[], start_time_utc=None, requestor="bench")
app = App(subscription="20ff7fc3-e762-44dd-bd96-b71116dcdc23")
app._gateway = AzureGateway(Connection(object(), app.subscription), factory=lambda k, s: SimpleNamespace(jit_network_access_policies=jit))
cli.main(["request", "vm1", "-g", "myRg1", "--source-ip", "192.127.0.2"], obj=app, standalone_mode=False)
"""


def cold_starts(runs: int) -> list[tuple[str, float]]:
    env = dict(os.environ)
    spec = (
        Path(__file__).resolve().parents[1].parent
        / "shared"
        / "azure-specs"
        / "security-2020-01-01"
        / "GetJitNetworkAccessPolicy_example.json"
    )
    with tempfile.TemporaryDirectory() as tmp:
        env["JITCTL_EMULATOR_STATE"] = str(Path(tmp) / "state.json")
        py = sys.executable
        subprocess.run(
            [py, "-m", "jitctl", "--emulator", "enable", "vm-win01", "-g", "rg-jit-demo"],
            env=env,
            capture_output=True,
            check=True,
        )
        return [
            ("python -c pass (interpreter floor)", timed([py, "-c", "pass"], env, runs)),
            ("jitctl --help", timed([py, "-m", "jitctl", "--help"], env, runs)),
            (
                "jitctl request, mocked SDK clients",
                timed([py, "-c", "import sys\n" + MOCKED_REQUEST, str(spec)], env, runs),
            ),
            (
                "jitctl --emulator request (real SDK, in-process emulator)",
                timed(
                    [
                        py,
                        "-m",
                        "jitctl",
                        "--emulator",
                        "request",
                        "vm-win01",
                        "-g",
                        "rg-jit-demo",
                        "--source-ip",
                        "203.0.113.7",
                    ],
                    env,
                    runs,
                ),
            ),
        ]


def help_vs_az(runs: int, az: str | None) -> list[tuple[str, float]]:
    """`jitctl --help` next to `az security jit-policy --help`: interleaved runs, medians, ratio."""
    az = az or shutil.which("az")
    if az is None:
        return []
    script = Path(sys.executable).with_name("jitctl")
    jitctl = [str(script)] if script.exists() else [sys.executable, "-m", "jitctl"]
    with tempfile.TemporaryDirectory() as tmp:
        # A fresh az profile, warmed once: az builds its command index on the first run.
        env = {**os.environ, "AZURE_CONFIG_DIR": tmp, "AZURE_CORE_COLLECT_TELEMETRY": "no"}
        commands = {"az": [az, "security", "jit-policy", "--help"], "jitctl": [*jitctl, "--help"]}
        for cmd in commands.values():
            subprocess.run(cmd, env=env, capture_output=True, check=True)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, cmd in commands.items():
                start = time.perf_counter()
                subprocess.run(cmd, env=env, capture_output=True, check=True)
                samples[name].append(time.perf_counter() - start)
    az_s, jit_s = (statistics.median(samples[n]) for n in ("az", "jitctl"))
    return [
        ("az security jit-policy --help", az_s),
        ("jitctl --help, same run", jit_s),
        ("ratio jitctl / az (target at most 0.15)", jit_s / az_s),
    ]


def fleet_commands(
    vms: int = 10_000, subscriptions: int = 20, latency: float = 0.1
) -> list[tuple[str, float, int, int]]:
    """`status` and `audit --all-subscriptions` over the fleet world, `latency` seconds added to
    every ARM call: (label, seconds, ARM calls, Resource Graph queries throttled), with Azure's
    Resource Graph quota (15 queries per 5 s) and with it lifted."""
    from jitctl.emulator.backend import latency_and_faults
    from jitctl.emulator.fleet import fleet

    backend = Backend(settings=Settings(propagation_delay=0))
    fleet(backend, vms, subscriptions)
    rows = []
    runner = CliRunner()
    for quota, note in ((15, "Azure's graph quota"), (0, "graph quota lifted")):
        backend.settings.graph_quota = quota
        for label, args in (
            ("status --all-subscriptions", ["status", "--all-subscriptions", "-o", "none"]),
            ("audit --all-subscriptions", ["audit", "--all-subscriptions", "-o", "none"]),
        ):
            app = App.for_backend(backend)
            backend.faults[:] = latency_and_faults(latency)
            before = len(backend.log)
            start = time.perf_counter()
            result = runner.invoke(
                cli, [*args, "--fail-on", "none"] if "audit" in args else args, obj=app
            )
            seconds = time.perf_counter() - start
            if result.exit_code != 0:
                raise SystemExit(f"{label}: exit {result.exit_code}: {result.output}")
            calls = backend.log[before:]
            throttled = sum(e.status == 429 for e in calls)
            rows.append((f"{label} ({note})", seconds, len(calls), throttled))
            app.close()
    backend.faults.clear()
    return rows


def fleet_process_memory(
    vms: int = 10_000, subscriptions: int = 20
) -> list[tuple[str, float, float]]:
    """`jitctl --emulator audit --all-subscriptions` as its own process on a fleet state file:
    (label, seconds, peak resident MB of that process, emulator included; no latency added)."""
    import resource

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "JITCTL_EMULATOR_STATE": str(Path(tmp) / "state.sqlite")}
        jitctl = [sys.executable, "-m", "jitctl"]
        subprocess.run(
            [
                *jitctl,
                "emulator",
                "reset",
                "--world",
                "fleet",
                "--vms",
                str(vms),
                "--subscriptions",
                str(subscriptions),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        for label, args in (
            ("status --all-subscriptions", ["status", "--all-subscriptions", "-o", "none"]),
            (
                "audit --all-subscriptions",
                ["audit", "--all-subscriptions", "--fail-on", "none", "-o", "none"],
            ),
        ):
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            start = time.perf_counter()
            subprocess.run([*jitctl, "--emulator", *args], env=env, check=True, capture_output=True)
            seconds = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            rows.append((label, seconds, max(peak, before) / 1024))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--az", help="the Azure CLI to compare --help with (default: az on PATH)")
    parser.add_argument("--fleet", action="store_true", help="only the fleet figures (10,000 VMs)")
    args = parser.parse_args()
    if args.fleet:
        print_fleet()
        return
    print("| command | ARM calls | writes |\n|---|---:|---:|")
    for label, calls, writes in count_calls():
        print(f"| {label} | {calls} | {writes} |")
    print(f"\n| cold start (median of {args.runs}) | seconds |\n|---|---:|")
    for label, seconds in cold_starts(args.runs):
        print(f"| {label} | {seconds:.2f} |")
    side_by_side = help_vs_az(args.runs, args.az)
    if side_by_side:
        print(f"\n| --help side by side (median of {args.runs}) | seconds |\n|---|---:|")
        for label, seconds in side_by_side:
            print(f"| {label} | {seconds:.2f} |")


def print_fleet() -> None:
    print(
        "| 10,000 VMs in 20 subscriptions, 100 ms per ARM call | seconds | ARM calls "
        "| throttled |\n|---|---:|---:|---:|"
    )
    for label, seconds, calls, throttled in fleet_commands():
        print(f"| {label} | {seconds:.2f} | {calls} | {throttled} |")
    print(
        "\n| `jitctl --emulator`, own process, no latency | seconds | peak RSS MB |\n|---|---:|---:|"
    )
    for label, seconds, rss in fleet_process_memory():
        print(f"| {label} | {seconds:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
