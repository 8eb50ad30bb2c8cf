"""Benchmark: ARM calls per command (on the emulator) and cold-start times. Prints Markdown.

python scripts/benchmark.py [--runs 5] [--az PATH]
python scripts/benchmark.py --scale [--vms 10000] [--subscriptions 20] [--latency 0.1]
python scripts/benchmark.py --fleet

--scale times enable, plan and list over the `fleet` world, --fleet status and audit over all
its subscriptions: jitctl processes against `jitctl emulator serve`'s HTTPS server (a thread of
this process) with the latency injected on every ARM call (and `--emulator` commands on a state
file, no latency); seconds (the median of 3 runs), ARM calls (before the first write) and each
process's peak memory.

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
from typing import Any

from click.testing import CliRunner

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.emulator import Backend, FakeClock, Settings
from jitctl.emulator.seeder import Seeder
from jitctl.emulator.worlds import demo

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
from azure.core.rest import HttpResponse
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.security.v2020_01_01 import models as sm
from azure.mgmt.security.v2020_01_01.operations import JitNetworkAccessPoliciesOperations
from jitctl.app import App
from jitctl.arm.gateway import AzureGateway, Connection
from jitctl.cli.commands import cli
body = json.load(open(sys.argv[1]))["responses"]["200"]["body"]
listed = create_autospec(HttpResponse, instance=True)
listed.status_code = 200
listed.json.return_value = {"value": [body]}
arm = create_autospec(ARMPipelineClient, instance=True)
arm.send_request.return_value = listed
jit = create_autospec(JitNetworkAccessPoliciesOperations, instance=True)
jit.initiate.return_value = sm.JitNetworkAccessRequest(virtual_machines=[], start_time_utc=None, requestor="bench")
clients = {"arm": arm, "security": SimpleNamespace(jit_network_access_policies=jit)}
app = App(subscription="20ff7fc3-e762-44dd-bd96-b71116dcdc23")
app._gateway = AzureGateway(Connection(object(), app.subscription), factory=lambda k, s: clients[k])
sys.exit(cli.main(["request", "vm1", "-g", "myRg1", "--source-ip", "192.127.0.2", "-o", "none"], obj=app, standalone_mode=False))
"""


def cold_starts(runs: int) -> list[tuple[str, float]]:
    env = dict(os.environ)
    spec = (
        Path(__file__).resolve().parents[1]
        / "tests"
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
) -> list[tuple[str, float, float, int, int]]:
    """`status` and `audit --all-subscriptions` over the fleet world, as jitctl processes
    against `jitctl emulator serve`'s HTTPS server with `latency` seconds added to every ARM
    call: (label, seconds, peak MB, ARM calls, Resource Graph queries throttled), with Azure's
    Resource Graph quota (15 queries per 5 s; each command starts a window) and with it lifted."""
    from jitctl.emulator.fleet import fleet
    from jitctl.emulator.server import EmulatorServer

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.test_server import env_of

    jitctl = [sys.executable, "-m", "jitctl"]
    backend = Backend(settings=Settings(propagation_delay=0))
    fleet(backend, vms, subscriptions)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        srv = EmulatorServer(backend, cert_dir=Path(tmp) / "certs")
        srv.start()
        try:
            env = env_of(srv)
            backend.settings.latency = latency
            for quota, note in ((15, "Azure's graph quota"), (0, "graph quota lifted")):
                backend.settings.graph_quota = quota
                for label, args in (
                    ("status --all-subscriptions", ["status", "--all-subscriptions"]),
                    ("audit --all-subscriptions", ["audit", "--all-subscriptions"]),
                ):
                    extra = ["--fail-on", "none"] if "audit" in args else []
                    cmd = [*jitctl, *args, *extra, "-o", "none"]
                    pause = backend.settings.graph_quota_window if quota else 0.0
                    seconds, mb, calls = _median_of(backend, [cmd] * RUNS, env, pause)
                    throttled = sum(e.status == 429 for e in calls)
                    rows.append((f"{label} ({note})", seconds, mb, len(calls), throttled))
        finally:
            srv.stop()
    return rows


def fleet_process_memory(
    vms: int = 10_000, subscriptions: int = 20
) -> list[tuple[str, float, float]]:
    """`jitctl --emulator status/audit --all-subscriptions` as its own process on a fleet state
    file: (label, seconds, peak resident MB of that process, emulator included; no latency
    added, Azure's graph quota)."""
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
            seconds, mb, _ = _median_of(None, [[*jitctl, "--emulator", *args]] * RUNS, env)
            rows.append((label, seconds, mb))
    return rows


# A child's peak resident size on Linux counts the memory it was forked with (the parent's,
# until exec): measured from a small launcher process, not from this one (which holds a
# 10,000-VM world), so the figure is jitctl's own.
LAUNCHER = (
    "import resource, subprocess, sys, time; start = time.perf_counter(); "
    "code = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL).returncode; "
    "seconds = time.perf_counter() - start; "
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
    "open(sys.argv[1], 'w').write(f'{seconds} {peak}'); sys.exit(code)"
)


def _measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(seconds, peak resident MB, exit code) of one jitctl process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "measured"
        proc = subprocess.run(
            [sys.executable, "-c", LAUNCHER, str(out), *cmd],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        seconds, peak_kb = (float(x) for x in out.read_text().split())
    code = proc.returncode
    if code not in (0, 3):  # plan --detailed-exitcode: 3 = changes planned
        raise SystemExit(f"{' '.join(cmd[2:6])}...: exit {code}: {proc.stderr.decode().strip()}")
    return seconds, peak_kb / 1024, code


RUNS = 3  # each figure at scale: the median of this many runs (peak memory: the highest)


def _median_of(
    backend: Any, cmds: list[list[str]], env: dict[str, str], pause: float = 0.0
) -> tuple[float, float, list[Any]]:
    """(median seconds, highest peak MB, the last run's ARM calls) of the commands' runs;
    `pause` seconds before each (a new Resource Graph quota window)."""
    samples, peaks, calls = [], [], []
    for cmd in cmds:
        time.sleep(pause)
        before = len(backend.log) if backend is not None else 0
        seconds, mb, _ = _measured(cmd, env)
        samples.append(seconds)
        peaks.append(mb)
        calls = backend.log[before:] if backend is not None else []
    return statistics.median(samples), max(peaks), calls


def at_scale(vms: int, subscriptions: int, latency: float) -> list[tuple[str, float, float, str]]:
    """(label, seconds, peak MB, ARM calls) for enable, plan and list over the fleet world."""
    import yaml

    from jitctl.emulator.fleet import fleet, fleet_subscription
    from jitctl.emulator.server import EmulatorServer
    from jitctl.emulator.store import reset_file
    from jitctl.services.export import export_yaml

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.test_server import env_of

    jitctl = [sys.executable, "-m", "jitctl"]
    rows: list[tuple[str, float, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        backend = Backend(settings=Settings(propagation_delay=0))
        fleet(backend, vms, subscriptions)
        subs = [fleet_subscription(i) for i in range(subscriptions)]
        # enable runs once in each of `RUNS` resource groups (a second run in the same group
        # would find nothing to change); 00-00 lists a deleted VM, which Azure refuses in a PUT
        groups: list[tuple[str, list[str]]] = []
        for g in range(1, 40):
            group = f"rg-fleet-00-{g:02d}"
            scope = f"/subscriptions/{subs[0]}/resourceGroups/{group}"
            names = [
                v["name"]
                for v in backend.list_of(scope, "virtualmachines")
                if backend.vm_paths(v["id"])[0][2]
            ][:100]
            if len(names) == 100:
                groups.append((group, names))
            if len(groups) == RUNS:
                break
        by_tags = {
            "subscriptions": subs,
            "targets": [
                {"tags": {"os": "windows"}, "ports": [3389]},
                {"tags": {"os": "linux"}, "ports": [{"number": 22, "maxDuration": "1h"}]},
            ],
        }
        (tmp / "tags.yaml").write_text(yaml.safe_dump(by_tags))
        (tmp / "ids").mkdir()  # what `jitctl policy export -s SUB` writes, a file each
        gw = App.for_backend(backend).gateway()
        for sub in subs:  # less the deleted VM that a policy still lists (plan refuses it)
            text = export_yaml(gw, sub, None).splitlines(keepends=True)
            (tmp / "ids" / f"{sub}.yaml").write_text(
                "".join(x for x in text if "-retired" not in x)
            )
        srv = EmulatorServer(backend, cert_dir=tmp / "certs")
        srv.start()
        try:
            env = env_of(srv)
            backend.settings.latency = latency
            enables = [["enable", *names, "-g", group] for group, names in groups]
            for label, runs in (
                ("enable 100 VMs of one resource group", enables),
                ("policy plan, by tags", [["policy", "plan", str(tmp / "tags.yaml")]] * RUNS),
                (
                    "policy plan, by ids (exported files)",
                    [["policy", "plan", str(tmp / "ids")]] * RUNS,
                ),
            ):
                seconds, mb, calls = _median_of(backend, [[*jitctl, *args] for args in runs], env)
                writes = [i for i, e in enumerate(calls) if e.method in ("PUT", "POST", "DELETE")]
                shown = f"{len(calls)}" + (f" ({writes[0]} before the write)" if writes else "")
                rows.append((f"{label}, {latency * 1000:g} ms a call", seconds, mb, shown))
        finally:
            srv.stop()
        state = tmp / "state.sqlite"
        env = {**env_of(srv), "JITCTL_EMULATOR_STATE": str(state)}
        for n_subs in sorted({1, subscriptions}):
            world = Backend(settings=Settings(propagation_delay=0))
            fleet(world, vms, n_subs)
            reset_file(state, world)
            cmd = [*jitctl, "--emulator", "list", "-o", "json"]
            seconds, mb, _ = _median_of(None, [cmd] * RUNS, env)
            shown = f"{vms // n_subs} VMs listed"
            rows.append(
                (f"--emulator list, {n_subs} subscription(s), no latency", seconds, mb, shown)
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--az", help="the Azure CLI to compare --help with (default: az on PATH)")
    parser.add_argument("--fleet", action="store_true", help="only the fleet figures (10,000 VMs)")
    parser.add_argument("--scale", action="store_true", help="time enable/plan/list at scale")
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--subscriptions", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per ARM call")
    args = parser.parse_args()
    if args.fleet:
        print_fleet()
        return
    if args.scale:
        print(
            f"| {args.vms} VMs, {args.subscriptions} subscriptions (median of {RUNS}) | seconds "
            "| peak MB | ARM calls |"
        )
        print("|---|---:|---:|---|")
        for label, seconds, mb, calls in at_scale(args.vms, args.subscriptions, args.latency):
            print(f"| {label} | {seconds:.2f} | {mb:.0f} | {calls} |")
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
        f"| 10,000 VMs in 20 subscriptions, 100 ms per ARM call (median of {RUNS}) | seconds "
        "| peak RSS MB "
        "| ARM calls | throttled |\n|---|---:|---:|---:|---:|"
    )
    for label, seconds, mb, calls, throttled in fleet_commands():
        print(f"| {label} | {seconds:.2f} | {mb:.0f} | {calls} | {throttled} |")
    print(
        f"\n| `jitctl --emulator`, own process, no latency (median of {RUNS}) | seconds "
        "| peak RSS MB |\n|---|---:|---:|"
    )
    for label, seconds, rss in fleet_process_memory():
        print(f"| {label} | {seconds:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
