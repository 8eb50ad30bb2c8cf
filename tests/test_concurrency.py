"""Writes that converge under competing writers; lost answers are read back, not re-sent.

Real SDK clients against the emulator, a FakeClock for every delay (no real waiting).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace

import pytest

from jitctl.emulator.settings import Fault
from jitctl.errors import BadInput, Contended
from jitctl.ids import same_id
from jitctl.model import JitPolicy, PolicyVm, PortRule
from jitctl.policyfile import load_all
from jitctl.policynames import check_policy_name, policy_name_for
from jitctl.services.access import request_access
from jitctl.services.plan import apply_plan, make_plan
from jitctl.services.policies import WritePolicy, disable, enable
from tests.support import RG, SUB, one_error, vm_ref

WIN, LNX = vm_ref("vm-win01"), vm_ref("vm-lnx01")
IP = "203.0.113.7"
G = ["-g", RG]
KEY = (SUB, RG, "westeurope", "default")


class Clobberer:
    """A competing read-merge-write script that never re-reads: right after each of our
    writes it PUTs what it had read just before it (so our change is gone), `times` times."""

    def __init__(self, gw, times: float) -> None:
        self.gw, self.times, self.done = gw, times, 0
        self.original = gw.put_policy
        gw.put_policy = self.put

    def put(self, policy):
        stale = self.gw.get_policy(*KEY)
        out = self.original(policy)
        if self.done < self.times:
            self.done += 1
            if stale is None:
                self.gw.delete_policy(policy)
            else:
                self.original(stale)
        return out


def test_uncontended_enable_confirms_over_the_window_in_three_reads(gw, clock, calls):
    calls()
    start = clock.now()
    result = enable(gw, [WIN], [PortRule(3389)], clock=clock, rng=random.Random(1))
    assert result.policies[0].action == "created" and result.policies[0].attempts == 1
    added = (clock.now() - start).total_seconds()
    assert added == pytest.approx(WritePolicy().confirm_window)  # the last read ends the window
    assert sum(c.startswith("GET Microsoft.Security") for c in calls()) == 1 + 3


@pytest.mark.parametrize("times", [1, 3])
def test_enable_converges_after_being_clobbered(gw, clock, times):
    enable(gw, [LNX], [PortRule(22)], clock=clock)
    rival = Clobberer(gw, times)
    result = enable(gw, [WIN], [PortRule(3389)], clock=clock, rng=random.Random(2))
    assert rival.done == times and result.policies[0].attempts == times + 1
    policy = gw.get_policy(*KEY)
    assert policy.vm(WIN.id) and policy.vm(LNX.id)  # ours is in, theirs was never lost


def test_enable_gives_up_with_contended_after_max_time(gw, clock):
    Clobberer(gw, float("inf"))
    settings = WritePolicy(max_time=10)
    start = clock.now()
    with pytest.raises(Contended, match="another writer keeps replacing the policy"):
        enable(gw, [WIN], [PortRule(3389)], clock=clock, settings=settings)
    assert (clock.now() - start).total_seconds() <= settings.max_time + settings.confirm_window
    assert not (gw.get_policy(*KEY) or JitPolicy(*KEY)).vm(WIN.id)


def test_cli_exit_9_when_contended(run, gw, backend):
    Clobberer(gw, float("inf"))
    r = run("enable", "vm-win01", *G)
    assert r.exit_code == 9 and r.stdout == ""
    assert "another writer keeps replacing the policy" in r.stderr


def test_disable_of_the_last_vm_keeps_a_vm_added_meanwhile(gw, clock):
    enable(gw, [WIN], [PortRule(3389)], clock=clock)
    lnx = PolicyVm(LNX.id, (PortRule(22),))
    original = gw.get_policy
    state = {"reads": 0}

    def get_after_another_admin(*key):  # between our list and our re-read, LNX is enabled
        state["reads"] += 1
        if state["reads"] == 1:
            current = original(*key)
            gw.put_policy(replace(current, vms=(*current.vms, lnx)))
        return original(*key)

    gw.get_policy = get_after_another_admin
    result = disable(gw, WIN, clock=clock)
    assert result.policies[0].action == "updated"  # written, not deleted
    assert "gained VMs meanwhile" in result.policies[0].notes[0]
    policy = original(*KEY)
    assert policy is not None and policy.vm(LNX.id) == lnx and policy.vm(WIN.id) is None


def test_disable_of_the_last_vm_deletes_a_policy_still_empty(gw, clock, calls):
    enable(gw, [WIN], [PortRule(3389)], clock=clock)
    calls()
    assert disable(gw, WIN, clock=clock).policies[0].action == "deleted"
    pol = "Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default"
    assert calls()[:3] == [
        "GET Microsoft.Security/jitNetworkAccessPolicies",
        f"GET {pol}",
        f"DELETE {pol}",
    ]
    assert gw.get_policy(*KEY) is None


@pytest.mark.parametrize("after", [True, False])
def test_policy_write_with_a_lost_or_failed_answer(run, backend, after):
    backend.faults.append(
        Fault(503, match="jitNetworkAccessPolicies/default", method="PUT", after=after)
    )
    r = run("enable", "vm-win01", *G)
    assert r.exit_code == 0, r.stderr
    puts = [e.status for e in backend.log if e.method == "PUT"]
    assert puts == ([503] if after else [503, 200])  # never re-sent once it had taken effect
    assert "The answer to writing JIT policy default was lost" in r.stderr
    expected = "had taken effect" if after else "our change missing: merging and writing again"
    assert expected in r.stderr


def grants_in_history(backend):
    (entry,) = backend.state["jit"].values()
    return [
        p
        for req in entry["policy"]["properties"]["requests"]
        for vm in req["virtualMachines"]
        for p in vm["ports"]
    ]


@pytest.mark.parametrize(("status", "retry_after"), [(429, 1), (500, None), (503, None)])
def test_initiate_answer_lost_after_the_fact_is_one_grant_exit_0(run, backend, status, retry_after):
    run("enable", "vm-win01", *G)
    backend.faults.append(Fault(status, match="/initiate", retry_after=retry_after, after=True))
    r = run("request", "vm-win01", *G, "--source-ip", IP)
    assert r.exit_code == 0, r.stderr
    assert len(grants_in_history(backend)) == 1
    assert "request history shows it had landed, so it was not sent again" in r.stderr
    assert [e.status for e in backend.log if e.path.endswith("/initiate")] == [status]


def test_initiate_failed_before_the_fact_is_retried_once(run, backend):
    run("enable", "vm-win01", *G)
    backend.faults.append(Fault(503, match="/initiate", retry_after=0))
    r = run("request", "vm-win01", *G, "--source-ip", IP)
    assert r.exit_code == 0, r.stderr
    assert len(grants_in_history(backend)) == 1
    assert [e.status for e in backend.log if e.path.endswith("/initiate")] == [503, 202]
    assert "requested again" in r.stderr


def test_initiate_failing_every_time_is_bounded(gw, clock, backend):
    enable(gw, [WIN], [PortRule(3389)], clock=clock)
    backend.faults.append(Fault(503, match="/initiate", times=100))
    with pytest.raises(Exception, match="Azure is unavailable"):
        request_access(gw, WIN, IP, clock.now(), clock=clock)
    assert [e.status for e in backend.log if e.path.endswith("/initiate")] == [503] * 3


# --- policy names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        " ",
        "a/b",
        "a\\b",
        "..",
        "x..y",
        "bad\x07",
        "semi;colon",
        "trailing.",
        "{other}",
        "x" * 56,
    ],
)
def test_bad_policy_names_are_refused(name):
    with pytest.raises(BadInput):
        check_policy_name(name)


def test_policy_name_template_and_the_56_character_rule():
    assert policy_name_for("{vm}", "vm-win01") == "vm-win01"
    assert policy_name_for("jit-{vm}", "vm-win01") == "jit-vm-win01"
    assert policy_name_for("x" * 48, "vm-win01") == "x" * 48  # 48 + 8 = 56
    with pytest.raises(BadInput, match="at most 56"):
        policy_name_for("x" * 49, "vm-win01")


def test_enable_one_policy_per_vm_and_bad_name_writes_nothing(run, backend):
    r = run("enable", "vm-win01", "vm-lnx01", *G, "--policy-name", "{vm}")
    assert r.exit_code == 0, r.stderr
    names = sorted(e["policy"]["name"] for e in backend.state["jit"].values())
    assert names == ["vm-lnx01", "vm-win01"]
    before = len(backend.log)
    r = run("enable", "vm-win01", *G, "--policy-name", "../default")
    assert r.exit_code == 2 and one_error(r.stderr)
    assert not any(e.method in ("PUT", "DELETE") for e in backend.log[before:])
    r = run("request", "vm-win01", *G, "--source-ip", IP, "--policy-name", "{vm}")
    assert r.exit_code == 0, r.stderr


# --- the emulator's faults and latency ----------------------------------------------------


def test_latency_is_slept_outside_the_lock_so_clients_overlap(gw, backend):
    backend.faults.append(Fault(0, match="virtualMachines", latency=0.3, rate=1.0))
    start = time.perf_counter()
    threads = [threading.Thread(target=gw.get_vm, args=(WIN,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - start < 0.9  # serialised, four calls would take 1.2 s


def test_a_fault_after_the_fact_does_the_request(gw, backend):
    from jitctl.errors import Unavailable

    backend.faults.append(Fault(500, match="jitNetworkAccessPolicies", method="PUT", after=True))
    with pytest.raises(Unavailable):
        gw.put_policy(JitPolicy(*KEY, (PolicyVm(WIN.id, (PortRule(3389),)),)))
    assert any(
        same_id(v["id"], WIN.id)
        for e in backend.state["jit"].values()
        for v in e["policy"]["properties"]["virtualMachines"]
    )


# --- policy files -----------------------------------------------------------------------


def _policy_file(tmp_path, text):
    path = tmp_path / "jit.yaml"
    path.write_text(text, encoding="utf-8")
    return load_all(path)


def test_policy_apply_converges_when_clobbered(tmp_path, gw, clock):
    files, problems = _policy_file(
        tmp_path, f"targets:\n  - resourceGroup: {RG}\n    names: [vm-win01]\n    ports: [3389]\n"
    )
    assert problems == []
    plan = make_plan(gw, files, SUB)
    rival = Clobberer(gw, 2)
    result = apply_plan(gw, plan, clock=clock)
    assert rival.done == 2 and result.writes == 3
    assert gw.get_policy(*KEY).vm(WIN.id)


def test_policy_files_check_policy_names_and_resolve_templates(tmp_path, gw, clock):
    _, problems = _policy_file(
        tmp_path,
        "defaults: {policyName: 'a/b'}\ntargets:\n  - ids: [" + WIN.id + "]\n    ports: [22]\n",
    )
    assert [(p.line, p.key) for p in problems] == [(1, "defaults.policyName")]
    files, problems = _policy_file(
        tmp_path,
        f"targets:\n  - resourceGroup: {RG}\n    names: ['vm-*']\n    policyName: 'jit-{{vm}}'\n"
        "    ports: [3389]\n",
    )
    assert problems == []
    plan = make_plan(gw, files, SUB)
    assert sorted(p.key[3] for p in plan.policies if p.changes) == ["jit-vm-lnx01", "jit-vm-win01"]


def test_writes_failing_until_the_bound_exit_1_not_9(run, backend):
    backend.faults.append(
        Fault(503, match="jitNetworkAccessPolicies/default", method="PUT", times=10_000)
    )
    r = run("enable", "vm-win01", *G)
    assert r.exit_code == 1 and "Azure is unavailable (503" in r.stderr
    assert backend.state["jit"] == {}


def test_a_confirmation_read_that_fails_confirms_nothing(gw, clock, backend):
    """The last re-read failing (after the SDK's own GET retries) is not a confirmation."""
    original, state = gw.get_policy, {"n": 0}

    def flaky(*key):
        state["n"] += 1
        if state["n"] == 4:  # the last read of the first window
            from jitctl.errors import Unavailable

            raise Unavailable("Azure is unavailable (503)")
        return original(*key)

    gw.get_policy = flaky
    result = enable(gw, [WIN], [PortRule(3389)], "default", clock=clock)  # named: read by GET
    assert state["n"] > 4 and result.policies[0].attempts == 1  # read again, not written again
    assert gw.get_policy(*KEY).vm(WIN.id)
