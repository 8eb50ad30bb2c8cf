"""Stress: many `jitctl` processes writing one JIT policy at once through `jitctl emulator serve`'s
HTTPS server, with and without latency and faults. Prints a Markdown table.

python scripts/stress.py [--rounds 5] [--count 20] [--only TEXT]

Each row: processes that exited 0 / all, VMs in the policy as expected, processes that exited 0
although their change is missing (must be 0), writes (PUT and DELETE answered) per process,
median and slowest process in seconds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jitctl.emulator import Backend, Settings
from jitctl.emulator.server import EmulatorServer
from jitctl.emulator.settings import write_faults
from jitctl.emulator.worlds import crowd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_server import env_of  # the clean environment the tests use

GROUP = "rg-crowd"


@dataclass
class Round:
    ok: int = 0
    total: int = 0
    as_expected: bool = True
    lying: int = 0  # exit 0 although the change is missing
    writes: int = 0
    seconds: list[float] | None = None
    grants_ok: bool = True
    recovered: int = 0  # processes that read back a lost answer


def run_all(env: dict[str, str], commands: list[list[str]]) -> list[tuple[int, float, str]]:
    started = []
    for args in commands:
        started.append(
            (
                time.perf_counter(),
                subprocess.Popen(
                    [sys.executable, "-m", "jitctl", *args],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    out = []
    for start, proc in started:
        _, err = proc.communicate(timeout=300)
        out.append((proc.returncode, time.perf_counter() - start, err))
    return out


def policy_vms(backend: Backend) -> set[str]:
    with backend.lock:
        return {
            v["id"].rsplit("/", 1)[-1]
            for e in backend.state["jit"].values()
            for v in e["policy"]["properties"]["virtualMachines"]
        }


def one_round(count: int, latency: float, fault_rate: float, mode: str, tmp: Path) -> Round:
    backend = Backend(settings=Settings(propagation_delay=0))
    names = crowd(backend, count, GROUP)
    srv = EmulatorServer(backend, cert_dir=tmp / "certs")
    srv.start()
    try:
        env = env_of(srv)
        keep, gone = names, []
        if mode in ("enable+disable", "last VM"):  # some are in; they leave while the rest join
            split = 1 if mode == "last VM" else count // 2
            gone, keep = names[:split], names[split:]
            run_all(env, [["enable", *gone, "-g", GROUP]])
            commands = [["disable", n, "-g", GROUP] for n in gone]
            commands += [["enable", n, "-g", GROUP] for n in keep]
        elif mode == "request":
            run_all(env, [["enable", *names, "-g", GROUP]])
            commands = [["request", n, "-g", GROUP, "--source-ip", "203.0.113.7"] for n in names]
        else:
            commands = [["enable", n, "-g", GROUP] for n in names]
        before = len(backend.log)
        backend.settings.latency = latency
        backend.faults.extend(write_faults(fault_rate))
        results = run_all(env, commands)
        backend.faults.clear()
        writes = sum(e.method in ("PUT", "DELETE") for e in backend.log[before:])
    finally:
        srv.stop()
    present = policy_vms(backend)
    r = Round(total=len(results), writes=writes, seconds=[s for _, s, _ in results])
    targets = [c[1] for c in commands]
    for (code, _, err), cmd, vm in zip(results, commands, targets, strict=True):
        r.recovered += "was lost" in err
        if code == 0:
            r.ok += 1
            if (cmd[0] == "enable" and vm not in present) or (
                cmd[0] == "disable" and vm in present
            ):
                r.lying += 1
        elif code not in (9, 1):
            print(f"unexpected exit {code}: {err.strip()}", file=sys.stderr)
    if mode == "request":
        grants = _grants_per_vm(backend)
        r.grants_ok = all(
            grants.get(n, 0) == 1
            for n, (code, _, _) in zip(names, results, strict=True)
            if code == 0
        )
        r.as_expected = r.grants_ok
    else:
        r.as_expected = present == set(keep)
    return r


def _grants_per_vm(backend: Backend) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in backend.state["jit"].values():
        for req in e["policy"]["properties"]["requests"]:
            for vm in req["virtualMachines"]:
                name = vm["id"].rsplit("/", 1)[-1]
                out[name] = out.get(name, 0) + len(vm["ports"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--only", default="", help="run the scenarios whose label has this text")
    args = parser.parse_args()
    scenarios: list[tuple[str, float, float, str]] = [
        ("enable, no latency", 0.0, 0.0, "enable"),
        ("enable, 200 ms a call", 0.2, 0.0, "enable"),
        ("half disable while half enable, 200 ms", 0.2, 0.0, "enable+disable"),
        ("disable of the last VM while 19 enable, 200 ms", 0.2, 0.0, "last VM"),
        ("enable, 20% writes fail (half after the fact)", 0.0, 0.2, "enable"),
        ("request, 20% initiates fail (half after the fact)", 0.0, 0.2, "request"),
    ]
    print(
        f"| {args.count} processes at once, {args.rounds} rounds | exit 0 | policy as expected "
        "| exit 0 but change missing | writes per process | lost answers read back "
        "| median s | slowest s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, latency, rate, mode in [x for x in scenarios if args.only in x[0]]:
        rows: list[Any] = []
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.rounds):
                rows.append(one_round(args.count, latency, rate, mode, Path(tmp)))
        seconds = [s for r in rows for s in (r.seconds or [])]
        ok = sum(r.ok for r in rows)
        total = sum(r.total for r in rows)
        expected = sum(r.as_expected for r in rows)
        print(
            f"| {label} | {ok}/{total} | {expected}/{len(rows)} rounds | "
            f"{sum(r.lying for r in rows)} | {sum(r.writes for r in rows) / total:.1f} | "
            f"{sum(r.recovered for r in rows)} | "
            f"{statistics.median(seconds):.1f} | {max(seconds):.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
