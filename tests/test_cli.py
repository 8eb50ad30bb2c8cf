"""The CLI as a user runs it: exact output and exit codes for every command and error."""

from __future__ import annotations

import json

import pytest

from jitctl.emulator.settings import Fault
from jitctl.errors import ExitCode
from tests.support import one_error

G = ["-g", "rg-jit-demo"]
IP = ["--source-ip", "203.0.113.7"]


def test_enable_then_unchanged(run, backend):
    r = run(
        "enable",
        "vm-win01",
        "vm-lnx01",
        *G,
        "--port",
        "3389",
        "--port",
        "22",
        "--max-duration",
        "2h",
    )
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        "JIT policy default (rg-jit-demo, westeurope): created\n"
        "  + vm-win01 port 3389/any from * max 2h\n"
        "  + vm-win01 port 22/any from * max 2h\n"
        "  + vm-lnx01 port 3389/any from * max 2h\n"
        "  + vm-lnx01 port 22/any from * max 2h\n"
    )
    r = run("enable", "vm-win01", *G, "--port", "22", "--max-duration", "2h")
    assert r.exit_code == 0
    assert (
        r.stdout
        == "JIT policy default (rg-jit-demo, westeurope): unchanged\n  no change: nothing written\n"
    )


def test_enable_dry_run_and_change(run, backend):
    run("enable", "vm-win01", *G)
    writes = sum(e.method == "PUT" for e in backend.log)
    r = run(
        "enable",
        "vm-win01",
        *G,
        "--source",
        "198.51.100.0/24",
        "--source",
        "192.0.2.0/24",
        "--protocol",
        "tcp",
        "--dry-run",
    )
    assert r.exit_code == 0
    assert r.stdout == (
        "JIT policy default (rg-jit-demo, westeurope): would update\n"
        "  ~ vm-win01 port 3389/tcp from 198.51.100.0/24,192.0.2.0/24 max 3h (was any from * max 3h)\n"
        "dry run: nothing was written\n"
    )
    assert sum(e.method == "PUT" for e in backend.log) == writes


def test_request_show_list_verify_disable(run, clock):
    run("enable", "vm-win01", *G)
    r = run("request", "vm-win01", *G, *IP, "--duration", "1h", "--justification", "INC-1")
    assert r.exit_code == 0
    assert r.stdout == (
        "Requested JIT access to vm-win01 (policy default) as jitctl-emulator@contoso.com\n"
        "  port 3389 from 203.0.113.7 until 2026-01-05 10:00 UTC (1h left): Initiating\n"
    )
    r = run("show", "vm-win01", *G)
    assert r.stdout.splitlines() == [
        "GROUP: rg-jit-demo  REGION: westeurope  POLICY: default",  # folded: same in every row
        "VM        PORT      SOURCES  MAX  GRANTS",
        "vm-win01  3389/any  *        3h   203.0.113.7 active until 2026-01-05 10:00 UTC (1h left)",
    ]
    assert run("list").stdout == r.stdout
    r = run("verify", "vm-win01", *G, *IP, "--require-jit")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0] == "EFFECTIVE: 203.0.113.7 -> vm-win01 10.10.1.4:3389/tcp"
    assert lines[1] == "  subnet: no NSG: allow (nothing to evaluate)"
    assert lines[2].startswith("  nic NSG vm-win01-nsg: JIT allow rule MicrosoftDefenderFor")
    assert lines[2].endswith(" priority 100") and len(lines[2]) <= 100
    assert lines[3].startswith("    (precedes the JIT deny rule MicrosoftDefenderFor")
    assert lines[3].endswith(" priority 4096)")
    r = run("disable", "vm-win01", *G)
    assert (
        r.stdout
        == "JIT policy default (rg-jit-demo, westeurope): deleted\n  - vm-win01 port 3389/any from * max 3h\n"
    )


def test_request_wait_until_effective(run, backend, clock):
    backend.settings.propagation_delay = 30
    run("enable", "vm-win01", *G)
    r = run("request", "vm-win01", *G, *IP, "--wait", "--timeout", "2m")
    assert r.exit_code == 0, r.stderr
    assert "EFFECTIVE: 203.0.113.7 -> vm-win01" in r.stdout
    assert 30 <= sum(clock.slept) <= 40
    assert r.stderr == ""  # no spinner when stderr is not a terminal


def test_wait_timeout_exit_8(run, backend):
    backend.settings.propagation_delay = 3600
    run("enable", "vm-win01", *G)
    r = run("request", "vm-win01", *G, *IP, "--wait", "--timeout", "30s")
    assert r.exit_code == ExitCode.TIMED_OUT == 8
    # short: what was seen, what to do (the grant stands: until when, and how to check again)
    assert r.stderr == (
        "jitctl: error: Access to vm-win01 was not effective after 30s: Azure says Initiating "
        "(UserRequested); no allow rule for 203.0.113.7 port 3389 in vm-win01-nsg."
        "\nHint: Granted until 12:00 UTC; check again: "
        "jitctl --emulator verify vm-win01 -g rg-jit-demo --source-ip 203.0.113.7 --wait\n"
    )


@pytest.mark.parametrize("world", ["busy"])
def test_verify_bypass_warns_and_require_jit_fails(run):
    run("enable", "vm-legacy", *G)
    r = run("verify", "vm-legacy", *G, "--source-ip", "198.51.100.9")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[-2:] == [  # wrapped to the width, indented
        "  warning: JIT is bypassed for port 3389: access is allowed by Allow-RDP-Any (priority 1001, nic",
        "      NSG), not by a JIT rule",
    ]
    r = run("verify", "vm-legacy", *G, "--source-ip", "198.51.100.9", "--require-jit")
    assert r.exit_code == 7
    r = run("verify", "vm-nonsg", *G, *IP)
    assert r.exit_code == 0 and "warning: no NSG guards this VM's NIC or subnet" in r.stdout
    assert run("verify", "vm-nonsg", *G, *IP, "--require-jit").exit_code == 7


def test_verify_not_effective_exit_7(run):
    r = run("verify", "vm-lnx01", *G, *IP)
    assert r.exit_code == 7
    assert r.stdout.splitlines()[0] == "NOT EFFECTIVE: 203.0.113.7 -> vm-lnx01 10.10.2.4:3389/tcp"
    assert r.stderr == (
        "jitctl: error: Access to vm-lnx01 is not effective: port 3389 from 203.0.113.7 is denied by "
        "rule DenyAllInBound (priority 65500) of the subnet NSG snet-linux-nsg.\nHint: Request access: "
        "jitctl --emulator request vm-lnx01 -g rg-jit-demo --source-ip 203.0.113.7 --wait\n"
    )


REQ = ["request", "vm-win01", "-g", "rg-jit-demo", "--source-ip"]
ENA = ["enable", "vm-win01", "-g", "rg-jit-demo"]
BAD_INPUT = [
    ([*REQ, "*"], "Source '*' opens the port to the whole Internet."),
    ([*REQ, "0.0.0.0/0"], "opens the port to the whole Internet"),
    ([*REQ, "Internet"], "opens the port to the whole Internet"),
    ([*REQ, "2001:db8::1"], "IPv6, which Just-In-Time access does not support"),
    ([*REQ, "1.2.3"], "is not an IPv4 address or CIDR"),
    ([*REQ, "203.0.113.7", "--port", "70000"], "Port 70000 is out of range"),
    ([*REQ, "203.0.113.7", "--duration", "2m"], "Duration 2m is out of range"),
    ([*REQ, "203.0.113.7", "--duration", "soon"], "'soon' is not a duration"),
    ([*ENA, "--max-duration", "25h"], "Duration 25h is out of range"),
    ([*ENA, "--protocol", "icmp"], "'icmp' is not a protocol"),
    ([*ENA, "--source", "any"], "opens the port to the whole Internet"),
    (["enable", "vm-win01"], "VM 'vm-win01' is named without its resource group"),
    (
        ["verify", "/subscriptions/x/resourceGroups", "--source-ip", "203.0.113.7"],
        "is not a virtual machine resource id",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_no_call(run, backend, args, message):
    before = len(backend.log)
    r = run(*args)
    assert r.exit_code == 2
    assert message in r.stderr and one_error(r.stderr) and r.stderr.startswith("jitctl: error: ")
    assert "Traceback" not in r.stderr
    assert len(backend.log) == before  # not a single ARM call, so certainly no write


def test_missing_option_is_usage_exit_2(run):
    r = run("request", "vm-win01", *G)
    assert r.exit_code == 2 and "Missing option '--source-ip'" in r.stderr


NOT_IN_POLICY = "VM vm-win01 is in no JIT policy of resource group rg-jit-demo."
# the hint's command carries the global options in force (here --emulator)
ENABLE_IT = "Enable it with: jitctl --emulator enable vm-win01 -g rg-jit-demo"


@pytest.mark.parametrize(
    "args",
    [
        ["request", "vm-win01", *G, *IP],
        ["show", "vm-win01", *G],
        ["history", "vm-win01", *G],
        ["disable", "vm-win01", *G],
        ["disable", "vm-win01", *G, "--port", "3389"],
    ],
)
def test_a_vm_in_no_policy_is_one_error_with_one_wording(run, backend, args):
    r = run(*args)
    assert (r.exit_code, r.stderr) == (
        ExitCode.NOT_FOUND,
        f"jitctl: error: {NOT_IN_POLICY}\nHint: {ENABLE_IT}\n",
    )
    assert not [e for e in backend.log if e.method in ("PUT", "DELETE", "POST")]


def test_doctor_says_the_same_words_and_a_policy_name_is_named(run):
    r = run("doctor", "vm-win01", *G)
    assert r.exit_code == ExitCode.REFUSED
    assert f"FAIL jit policy: {NOT_IN_POLICY} {ENABLE_IT}\n" in r.stdout
    run("enable", "vm-win01", *G)
    r = run("disable", "vm-win01", *G, "--policy-name", "jit-{vm}")
    assert (r.exit_code, r.stderr) == (
        ExitCode.NOT_FOUND,
        "jitctl: error: VM vm-win01 is in no JIT policy named jit-vm-win01 of resource group "
        "rg-jit-demo.\nHint: Enable it with: jitctl --emulator enable vm-win01 -g rg-jit-demo "
        "--policy-name jit-vm-win01\n",
    )


@pytest.mark.parametrize(
    ("setup", "args", "code", "message"),
    [
        (None, ["request", "vm-win01", *G, *IP], 4, "VM vm-win01 is in no JIT policy"),
        (None, ["show", "vm-win01", *G], 4, "VM vm-win01 is in no JIT policy"),
        (None, ["request", "vm-ghost", *G, *IP], 4, "virtualMachines/vm-ghost' under resource"),
        (None, ["history", "vm-ghost", *G], 4, "az vm list -g rg-jit-demo -o table"),
        (None, ["enable", "vm-ghost", *G], 4, "ResourceNotFound"),
        (
            "enable",
            ["request", "vm-win01", *G, *IP, "--port", "22"],
            6,
            "Port 22 is not in the JIT policy 'default' of VM vm-win01 (configured: 3389).",
        ),
        (
            "enable",
            ["request", "vm-win01", *G, *IP, "--duration", "4h"],
            6,
            "Duration 4h exceeds the maximum of 3h",
        ),
        (
            "enable",
            ["disable", "vm-win01", *G, "--port", "22"],
            6,
            "Port 22 is not in the JIT policy of VM vm-win01",
        ),
    ],
)
def test_refusals_and_not_found(run, backend, setup, args, code, message):
    if setup:
        run("enable", "vm-win01", *G)
    r = run(*args)
    assert r.exit_code == code, r.output
    assert message in r.stderr


@pytest.mark.parametrize("world", ["busy"])
def test_enable_vm_without_nsg_exit_6_no_write(run, backend):
    r = run("enable", "vm-win01", "vm-nonsg", *G)
    assert r.exit_code == 6
    assert r.stderr.startswith(
        "jitctl: error: VM vm-nonsg has no network security group on its NIC or subnet"
    )
    assert not any(e.method in ("PUT", "POST", "DELETE") for e in backend.log)


@pytest.mark.parametrize(("status", "code"), [(403, 5), (401, 3), (500, 1), (409, 6)])
def test_azure_errors_map_to_exit_codes(run, backend, status, code):
    backend.faults.append(Fault(status, match="virtualMachines", times=20))
    r = run("enable", "vm-win01", *G)
    assert r.exit_code == code, r.stderr
    assert one_error(r.stderr) and "Traceback" not in r.stderr


def test_json_output_and_json_errors(run):
    r = run("-o", "json", "enable", "vm-win01", *G)
    data = json.loads(r.stdout)
    assert data["changed"] is True and data["policies"][0]["action"] == "created"
    r = run("-o", "json", "request", "vm-win01", *G, *IP, "--port", "22")
    assert r.exit_code == 6
    assert json.loads(r.stdout) == {
        "error": {
            "exit_code": 6,
            "kind": "refused",
            "message": (
                "Port 22 is not in the JIT policy 'default' of VM vm-win01 (configured: 3389)."
            ),
            "hint": "Ask an admin to run: jitctl --emulator enable vm-win01 -g rg-jit-demo --port 22",
        }
    }


def test_debug_shows_http_but_never_the_token(run, backend):
    r = run("--debug", "list")
    assert r.exit_code == 0
    assert "emulator-token" not in r.stderr and "emulator-token" not in r.stdout
    assert "Request URL" in r.stderr and "REDACTED" in r.stderr


def test_vm_by_full_id(run):
    from jitctl.emulator.seeder import DEMO_SUBSCRIPTION

    vm_id = f"/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/rg-jit-demo/providers/Microsoft.Compute/virtualMachines/vm-win01"
    assert run("enable", vm_id).exit_code == 0
    assert run("show", vm_id).exit_code == 0
