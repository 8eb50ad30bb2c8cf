"""`policy plan` grows linearly: ten times the VMs cost at most twelve times the ARM calls and
the work (counted as calls of jitctl's own functions, not timed), by tags and by ids."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import yaml

from jitctl.app import App
from jitctl.emulator import Backend, FakeClock, Settings
from jitctl.emulator.fleet import fleet, fleet_subscription
from jitctl.policyfile import load_all
from jitctl.services.plan import make_plan

PRODUCT = str(Path(__file__).resolve().parents[1] / "jitctl")
EMULATOR = str(Path(PRODUCT) / "emulator")


def files(tmp_path: Path, b: Backend, subs: list[str]) -> dict[str, Path]:
    by_tags = {
        "subscriptions": subs,
        "targets": [
            {"tags": {"os": "windows"}, "ports": [3389]},
            {"tags": {"os": "linux"}, "ports": [22]},
        ],
    }
    ids = [
        vm["id"]
        for e in b.state["jit"].values()
        for vm in e["policy"]["properties"]["virtualMachines"]
    ]
    by_ids = {"targets": [{"ids": [i for i in ids if b.find(i)], "ports": [3389]}]}
    out = {}
    for name, doc in (("tags", by_tags), ("ids", by_ids)):
        out[name] = tmp_path / f"{name}-{len(ids)}.yaml"
        out[name].write_text(yaml.safe_dump(doc))
    return out


def cost(vms: int, tmp_path: Path) -> dict[str, tuple[int, int]]:
    """(ARM calls, calls of jitctl functions outside the emulator) of each plan."""
    b = Backend(settings=Settings(propagation_delay=0), clock=FakeClock())
    fleet(b, vms, subscriptions=2)
    subs = [fleet_subscription(i) for i in range(2)]
    out = {}
    for name, path in files(tmp_path, b, subs).items():
        loaded = load_all(path)[0]
        gw = App.for_backend(b).gateway()  # its pool threads start inside, profiled
        counted = [0]

        def profile(frame, event, arg, counted=counted):
            if event == "call":
                f = frame.f_code.co_filename
                if f.startswith(PRODUCT) and not f.startswith(EMULATOR):
                    counted[0] += 1

        before = len(b.log)
        threading.setprofile(profile)
        sys.setprofile(profile)
        try:
            plan = make_plan(gw, loaded, subs[0])
        finally:
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]
            gw.close()  # type: ignore[attr-defined]
        assert plan.policies
        out[name] = (len(b.log) - before, counted[0])
    return out


def test_plan_cost_grows_linearly(tmp_path):
    small, big = cost(100, tmp_path), cost(1000, tmp_path)
    for name in ("tags", "ids"):
        (calls_s, work_s), (calls_b, work_b) = small[name], big[name]
        assert calls_b <= 12 * calls_s, (name, calls_s, calls_b)
        assert work_b <= 12 * work_s, (name, work_s, work_b)
