"""Bad input, every command and option and every policy-file field, through the CLI.

Each row: the documented exit code, one `jitctl: error:` line on stderr, no traceback, and not
a single ARM call (so certainly no write): everything here is checkable locally.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from jitctl.cli.commands import cli
from tests.support import RecordingRunner, error_parts, one_error

G = ["-g", "rg-jit-demo"]
IP = ["--source-ip", "203.0.113.7"]
REQ = ["request", "vm-win01", *G]
ENA = ["enable", "vm-win01", *G]
VER = ["verify", "vm-win01", *G]
RDP = ["rdp", "vm-win01", *G, "--source-ip", "198.51.100.7"]
SSH = ["ssh", "vm-lnx01", *G, "--source-ip", "198.51.100.7"]
VM_ID = "/subscriptions/0e1f5a7c-5e1e-4a1b-9c3d-7e3ab1e5d3e0/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}"
ESC = "INC-1\x1b]0;pwned\x07\x1b[2J"
CRLF = "azureuser\r\nfull address:s:evil.example:3389"

# (row id, arguments, what the one error line must say). Exit 2, no ARM call.
ROWS: list[tuple[str, list[str], str]] = [
    # request --source-ip
    ("req-src-star", [*REQ, "--source-ip", "*"], "opens the port to the whole Internet"),
    ("req-src-cidr0", [*REQ, "--source-ip", "0.0.0.0/0"], "whole Internet"),
    ("req-src-internet", [*REQ, "--source-ip", "Internet"], "whole Internet"),
    ("req-src-internet-lc", [*REQ, "--source-ip", "internet"], "whole Internet"),
    ("req-src-any-uc", [*REQ, "--source-ip", "ANY"], "whole Internet"),
    ("req-src-other-0", [*REQ, "--source-ip", "10.0.0.0/0"], "whole Internet"),
    ("req-src-unspecified", [*REQ, "--source-ip", "0.0.0.0"], "unspecified address"),
    ("req-src-ipv6", [*REQ, "--source-ip", "2001:db8::1"], "IPv6"),
    ("req-src-ipv6-any", [*REQ, "--source-ip", "::/0", "--allow-any-source"], "IPv6"),
    ("req-src-zone", [*REQ, "--source-ip", "fe80::1%eth0"], "zone id"),
    ("req-src-short", [*REQ, "--source-ip", "1.2.3"], "not an IPv4 address or CIDR"),
    ("req-src-junk", [*REQ, "--source-ip", "203.0.113.7 x"], "not an IPv4 address"),
    ("req-src-esc", [*REQ, "--source-ip", "203.0.113.7\x1b[2J"], "203.0.113.7\\x1b[2J"),
    ("req-src-prefix33", [*REQ, "--source-ip", "203.0.113.7/33"], "not an IPv4 address"),
    ("req-src-octet", [*REQ, "--source-ip", "300.1.1.1"], "not an IPv4 address"),
    ("req-src-empty", [*REQ, "--source-ip", ""], "not an IPv4 address"),
    ("req-src-zeros", [*REQ, "--source-ip", "010.0.0.1"], "not an IPv4 address"),
    ("req-src-host", [*REQ, "--source-ip", "host.example"], "not an IPv4 address"),
    # request --port
    ("req-port-high", [*REQ, *IP, "--port", "70000"], "Port 70000 is out of range"),
    ("req-port-zero", [*REQ, *IP, "--port", "0"], "Port 0 is out of range"),
    ("req-port-neg", [*REQ, *IP, "--port", "-1"], "Port -1 is out of range"),
    ("req-port-suffix", [*REQ, *IP, "--port", "22x"], "'22x' is not a port number"),
    ("req-port-float", [*REQ, *IP, "--port", "22.0"], "'22.0' is not a port number"),
    ("req-port-empty", [*REQ, *IP, "--port", ""], "'' is not a port number"),
    ("req-port-arabic", [*REQ, *IP, "--port", "\u0662\u0662"], "is not a port number"),
    ("req-port-underscore", [*REQ, *IP, "--port", "2_2"], "'2_2' is not a port number"),
    ("req-port-hex", [*REQ, *IP, "--port", "0x16"], "'0x16' is not a port number"),
    ("req-port-huge", [*REQ, *IP, "--port", "9" * 30], "is out of range"),
    ("req-port-inner-space", [*REQ, *IP, "--port", "2 2"], "is not a port number"),
    # request --duration
    ("req-dur-short", [*REQ, *IP, "--duration", "2m"], "Duration 2m is out of range"),
    ("req-dur-long", [*REQ, *IP, "--duration", "25h"], "Duration 25h is out of range"),
    ("req-dur-overflow-h", [*REQ, *IP, "--duration", "99999999999999h"], "out of range"),
    ("req-dur-overflow-d", [*REQ, *IP, "--duration", "P99999999999D"], "out of range"),
    ("req-dur-overflow-s", [*REQ, *IP, "--duration", "PT" + "9" * 40 + "S"], "out of range"),
    ("req-dur-digits", [*REQ, *IP, "--duration", "9" * 5000 + "m"], "out of range"),
    ("req-dur-word", [*REQ, *IP, "--duration", "soon"], "'soon' is not a duration"),
    ("req-dur-neg", [*REQ, *IP, "--duration", "-1h"], "is not a duration"),
    ("req-dur-days", [*REQ, *IP, "--duration", "1d"], "is not a duration"),
    ("req-dur-pt", [*REQ, *IP, "--duration", "PT"], "is not an ISO 8601 duration"),
    ("req-dur-trailing-t", [*REQ, *IP, "--duration", "P1DT"], "is not an ISO 8601 duration"),
    ("req-dur-arabic", [*REQ, *IP, "--duration", "\u0661h"], "is not a duration"),
    ("req-dur-zero", [*REQ, *IP, "--duration", "0h"], "out of range"),
    # request --timeout (with --wait), --justification, wide-open source with --wait
    ("req-timeout-zero", [*REQ, *IP, "--wait", "--timeout", "0s"], "out of range"),
    ("req-timeout-huge", [*REQ, *IP, "--wait", "--timeout", "99999999999999h"], "out of range"),
    ("req-timeout-word", [*REQ, *IP, "--wait", "--timeout", "later"], "is not a duration"),
    ("req-just-esc", [*REQ, *IP, "--justification", ESC], "holds control characters"),
    ("req-just-crlf", [*REQ, *IP, "--justification", "a\r\nb"], "holds control characters"),
    ("req-just-bidi", [*REQ, *IP, "--justification", "a\u202eb"], "holds control characters"),
    ("req-just-long", [*REQ, *IP, "--justification", "x" * 2000], "2000 characters long"),
    (
        "req-star-wait",
        [*REQ, "--source-ip", "*", "--allow-any-source", "--wait"],
        "cannot be checked",
    ),
    (
        "req-internet-wait",
        [*REQ, "--source-ip", "Internet", "--allow-any-source", "--wait"],
        "cannot be checked",
    ),
    # VM and resource group names, ids
    ("req-rg-traversal", ["request", "vm-win01", "-g", "rg/../x", *IP], "not a resource group"),
    ("req-rg-space", ["request", "vm-win01", "-g", "rg x", *IP], "not a resource group"),
    ("req-rg-long", ["request", "vm-win01", "-g", "r" * 91, *IP], "not a resource group"),
    ("req-rg-dot", ["request", "vm-win01", "-g", "rg.", *IP], "not a resource group"),
    ("req-rg-empty", ["request", "vm-win01", "-g", "", *IP], "without its resource group"),
    ("req-vm-traversal", ["request", "vm/../x", *G, *IP], "not a virtual machine name"),
    ("req-vm-long", ["request", "v" * 65, *G, *IP], "not a virtual machine name"),
    ("req-vm-shell", ["request", "vm;rm", *G, *IP], "not a virtual machine name"),
    ("req-vm-esc", ["request", "vm\x1b[2J", *G, *IP], "vm\\x1b[2J"),
    ("req-vm-dash", ["request", "vm-", *G, *IP], "not a virtual machine name"),
    ("req-id-short", ["request", "/subscriptions/x/resourceGroups", *IP], "resource id"),
    (
        "req-id-bad-rg",
        ["request", VM_ID.format(rg="bad rg", vm="vm-win01"), *IP],
        "not a resource group",
    ),
    (
        "req-id-bad-vm",
        ["request", VM_ID.format(rg="rg-jit-demo", vm="vm?x"), *IP],
        "not a virtual machine name",
    ),
    ("req-no-group", ["request", "vm-win01", *IP], "named without its resource group"),
    # enable
    ("ena-port-high", [*ENA, "--port", "70000"], "Port 70000 is out of range"),
    ("ena-port-true", [*ENA, "--port", "true"], "'true' is not a port number"),
    ("ena-port-list", [*ENA, "--port", "22,3389"], "'22,3389' is not a port number"),
    ("ena-proto", [*ENA, "--protocol", "icmp"], "'icmp' is not a protocol"),
    ("ena-proto-empty", [*ENA, "--protocol", ""], "'' is not a protocol"),
    ("ena-max-long", [*ENA, "--max-duration", "25h"], "Duration 25h is out of range"),
    ("ena-max-short", [*ENA, "--max-duration", "4m"], "Duration 4m is out of range"),
    ("ena-max-overflow-h", [*ENA, "--max-duration", "99999999999999h"], "out of range"),
    ("ena-max-overflow-d", [*ENA, "--max-duration", "P99999999999D"], "out of range"),
    ("ena-max-bad-iso", [*ENA, "--max-duration", "PT1.5.5S"], "not an ISO 8601 duration"),
    ("ena-src-any", [*ENA, "--source", "any"], "whole Internet"),
    ("ena-src-internet", [*ENA, "--source", "Internet"], "whole Internet"),
    ("ena-src-cidr0", [*ENA, "--source", "0.0.0.0/0"], "whole Internet"),
    ("ena-src-ipv6", [*ENA, "--source", "2001:db8::/32"], "IPv6"),
    ("ena-src-comma", [*ENA, "--source", "198.51.100.0/24,192.0.2.0/24"], "not an IPv4"),
    ("ena-src-empty", [*ENA, "--source", ""], "not an IPv4 address"),
    ("ena-no-group", ["enable", "vm-win01"], "named without its resource group"),
    ("ena-bad-second-vm", ["enable", "vm-win01", "x y", *G], "'x y' is not a virtual machine"),
    # disable, show, list, status, history
    ("dis-port-zero", ["disable", "vm-win01", *G, "--port", "0"], "Port 0 is out of range"),
    ("dis-port-word", ["disable", "vm-win01", *G, "--port", "ssh"], "'ssh' is not a port"),
    ("dis-rg", ["disable", "vm-win01", "-g", "a/b"], "not a resource group"),
    ("show-vm", ["show", "bad vm", *G], "not a virtual machine name"),
    ("show-rg", ["show", "vm-win01", "-g", "bad/rg"], "not a resource group"),
    ("list-rg-slash", ["list", "-g", "bad/rg"], "not a resource group"),
    ("list-rg-space", ["list", "-g", "rg with space"], "not a resource group"),
    ("status-rg", ["status", "-g", "bad/rg"], "not a resource group"),
    ("status-vm", ["status", "vm;x", *G], "not a virtual machine name"),
    ("history-vm", ["history", "vm\x1b]0;x\x07", *G], "not a virtual machine name"),
    # verify
    ("ver-src-star", [*VER, "--source-ip", "*"], "whole Internet"),
    ("ver-src-internet", [*VER, "--source-ip", "Internet"], "whole Internet"),
    ("ver-src-ipv6", [*VER, "--source-ip", "2001:db8::1"], "IPv6"),
    ("ver-src-junk", [*VER, "--source-ip", "me"], "not an IPv4 address"),
    ("ver-port", [*VER, *IP, "--port", "0"], "Port 0 is out of range"),
    ("ver-timeout-zero", [*VER, *IP, "--wait", "--timeout", "0s"], "out of range"),
    ("ver-timeout-huge", [*VER, *IP, "--wait", "--timeout", "99999999999999h"], "out of range"),
    # rdp
    ("rdp-user-crlf", [*RDP, "--user", CRLF], "holds control characters"),
    ("rdp-user-esc", [*RDP, "--user", "a\x1b[2Jb"], "holds control characters"),
    ("rdp-user-nul", [*RDP, "--user", "a\x00b"], "holds control characters"),
    ("rdp-user-dash", [*RDP, "--user", "-admin"], "starts with '-'"),
    ("rdp-user-empty", [*RDP, "--user", ""], "is empty"),
    ("rdp-user-space", [*RDP, "--user", " admin"], "spaces at an end"),
    ("rdp-user-long", [*RDP, "--user", "u" * 300], "too long"),
    ("rdp-port", [*RDP, "--port", "70000"], "Port 70000 is out of range"),
    ("rdp-duration", [*RDP, "--duration", "P99999999999D"], "out of range"),
    ("rdp-min-huge", [*RDP, "--min-remaining", "99999999999h"], "out of range"),
    ("rdp-min-long", [*RDP, "--min-remaining", "25h"], "out of range"),
    ("rdp-min-neg", [*RDP, "--min-remaining", "-1m"], "is not a duration"),
    ("rdp-timeout", [*RDP, "--timeout", "0s"], "out of range"),
    ("rdp-src-star", [*RDP[:-1], "*"], "whole Internet"),
    ("rdp-src-unspecified", [*RDP[:-1], "0.0.0.0"], "unspecified address"),
    ("rdp-just-esc", [*RDP, "--justification", ESC], "holds control characters"),
    # ssh
    ("ssh-user-option", [*SSH, "--user", "-oProxyCommand=touch /tmp/x"], "starts with '-'"),
    ("ssh-user-space", [*SSH, "--user", "a b"], "shell characters"),
    ("ssh-user-semicolon", [*SSH, "--user", "a;b"], "shell characters"),
    ("ssh-user-subst", [*SSH, "--user", "$(id)"], "shell characters"),
    ("ssh-user-lf", [*SSH, "--user", "a\nb"], "holds control characters"),
    ("ssh-port", [*SSH, "--port", "22x"], "'22x' is not a port number"),
    ("ssh-min", [*SSH, "--min-remaining", "xyz"], "'xyz' is not a duration"),
    # policy export, plan, apply: paths
    ("exp-nothing", ["policy", "export"], "Say what to export"),
    ("exp-rg", ["policy", "export", "-g", "bad/rg"], "not a resource group"),
    ("plan-missing", ["policy", "plan", "/nonexistent/policies"], "neither a policy file"),
    ("apply-missing", ["policy", "apply", "/nonexistent/policies", "--yes"], "neither a policy"),
    ("validate-missing", ["policy", "validate", "/nonexistent/p"], "neither a policy file"),
    # subscriptions: letters, digits and '-' only
    ("sub-slash-list", ["-s", "a/b", "list"], "No subscription is named 'a/b'"),
    (
        "sub-esc-show",
        ["-s", "\x1b[2J", "show", "vm-win01", *G],
        "No subscription is named '\\x1b[2J'",
    ),
    ("sub-status", ["-s", "..", "status"], "No subscription is named '..'"),
    ("sub-export", ["-s", "x y", "policy", "export", *G], "No subscription is named 'x y'"),
    ("sub-in-id", ["show", VM_ID.replace("0e1f5a7c-5e1e-4a1b-9c3d-7e3ab1e5d3e0", "..")], "subscr"),
]


@pytest.fixture
def hostile_app(app, tmp_path, monkeypatch):
    """No JIT policy is needed: a row whose input slipped through would make an ARM call."""
    for name in ("JITCTL_EMULATOR_STATE", "JITCTL_IP_ECHO_URLS", "AZURE_SUBSCRIPTION_ID"):
        monkeypatch.delenv(name, raising=False)
    app.runner = RecordingRunner()  # never starts anything
    app.data_dir = tmp_path / "data"
    app.ip_fetch = lambda url, timeout: "198.51.100.7\n"
    return app


def invoke(app, args):
    return CliRunner().invoke(cli, args, obj=app, catch_exceptions=False)


def assert_refused_locally(app, backend, args, message, code=2):
    before = len(backend.log)
    r = invoke(app, args)
    assert r.exit_code == code, (r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr and "unexpected error" not in r.stderr
    assert one_error(r.stderr) and r.stderr.startswith("jitctl: error: "), r.stderr
    assert message in r.stderr, r.stderr
    assert backend.log[before:] == []  # not one ARM call, so certainly no write
    assert app.runner.ran == []
    return r


@pytest.mark.parametrize(("args", "message"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_option_is_one_line_exit_2_and_no_call(hostile_app, backend, args, message):
    assert_refused_locally(hostile_app, backend, args, message)


def test_rows_cover_every_command():
    commands = {args[0] if args[0] != "policy" else f"policy {args[1]}" for _, args, _ in ROWS}
    assert commands >= {
        "request",
        "enable",
        "disable",
        "show",
        "list",
        "status",
        "history",
        "verify",
        "rdp",
        "ssh",
        "policy export",
        "policy plan",
        "policy apply",
        "policy validate",
    }


def test_json_error_too(hostile_app, backend):
    r = assert_refused_locally(hostile_app, backend, ["-o", "json", *REQ, "--source-ip", "*"], "")
    assert '"kind": "bad_input"' in r.stdout


# --- the output file of policy export: refused before anything is read ----------------------


def test_export_through_a_file_is_refused_and_a_missing_folder_is_made(
    hostile_app, backend, tmp_path
):
    (tmp_path / "plain").write_text("x")
    through = tmp_path / "plain" / "sub" / "x.yaml"
    assert_refused_locally(
        hostile_app, backend, ["policy", "export", *G, "--file", str(through)], "is not a folder"
    )
    missing = tmp_path / "no" / "such" / "x.yaml"
    r = CliRunner().invoke(cli, ["policy", "export", *G, "--file", str(missing)], obj=hostile_app)
    assert r.exit_code == 0, r.output
    assert missing.read_text(encoding="utf-8").strip()


# --- click's own usage errors: exit 2, one line, and no call -------------------------------

USAGE_ROWS = [
    ("usage-cloud", ["--cloud", "Mars", "list"]),
    ("usage-output", ["-o", "xml", "list"]),
    ("usage-unknown-option", ["list", "--colour"]),
    ("usage-missing-source", ["request", "vm-win01", *G]),
    ("usage-missing-vm", ["enable"]),
    ("usage-role", ["role", "show", "root"]),
    ("usage-world", ["emulator", "reset", "--world", "nope"]),
    ("usage-export-dir", ["policy", "export", *G, "--file", "."]),
    ("usage-unknown-command", ["connect", "vm-win01"]),
]


@pytest.mark.parametrize("args", [r[1] for r in USAGE_ROWS], ids=[r[0] for r in USAGE_ROWS])
def test_usage_errors_exit_2_and_no_call(hostile_app, backend, args):
    before = len(backend.log)
    r = invoke(hostile_app, args)
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    assert one_error(r.stderr)
    assert backend.log[before:] == []


# --- policy files: every field, the encoding and the YAML itself ----------------------------

TARGET = "targets:\n  - resourceGroup: rg-jit-demo\n    names: ['*']\n"


def _port(body: str) -> bytes:
    return (TARGET + "    ports:\n      - " + body + "\n").encode()


FILES: list[tuple[str, bytes, str]] = [
    (
        "alias-bomb",
        b"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n" + TARGET.encode(),
        ":2: yaml: aliases",
    ),
    ("deep", b"targets: " + b"[" * 200 + b"]" * 200 + b"\n", ":1: yaml: nested more than"),
    ("utf16", TARGET.encode("utf-16"), ":1: (file): is UTF-16; save it as UTF-8"),
    ("utf32", TARGET.encode("utf-32"), ":1: (file): is UTF-32"),
    ("nul", b"targets:\n  - \x00\n", ":2: (file): holds a NUL byte"),
    ("latin1", "targets:\n  - names: ['caf\xe9']\n".encode("latin-1"), ":2: (file): is not UTF-8"),
    ("huge", b"#" * (1024 * 1024 + 1), ":1: (file): is larger than 1 MiB"),
    ("esc", b"targets:\n  - names: ['\x1b[2J']\n", ":2: yaml: holds the control character 0x1b"),
    ("syntax", b"targets:\n  - ids: [oops\n", ": yaml: "),
    ("two-docs", TARGET.encode() + b"---\n" + TARGET.encode(), "expected a single document"),
    ("dup-key", b"targets: []\ntargets: []\n", ":2: yaml: key 'targets' appears twice"),
    ("complex-key", b"? [a, b]\n: c\n", ":1: yaml: "),
    ("long-int", _port("number: " + "9" * 5000), "number too long"),
    ("top-list", b"- 22\n", ":1: (file): Input should be a valid dictionary"),
    ("no-targets", b"defaults: {}\n", "targets: Field required"),
    ("empty-targets", b"targets: []\n", "targets: List should have at least 1 item"),
    (
        "unknown-key",
        b"colour: blue\n" + TARGET.encode() + b"    ports: [22]\n",
        ":1: colour: Extra",
    ),
    ("number-true", _port("number: true"), ":5: targets[0].ports[0].number: 'true' is not a port"),
    ("number-str", _port("number: '22x'"), "'22x' is not a port number"),
    ("number-float", _port("number: 22.5"), "'22.5' is not a port number"),
    ("number-zero", _port("number: 0"), "Port 0 is out of range"),
    ("number-high", _port("number: 70000"), "Port 70000 is out of range"),
    ("number-missing", _port("protocol: tcp"), "number: Field required"),
    ("short-port-bool", (TARGET + "    ports: [true]\n").encode(), "ports[0]: Input should be"),
    ("port-twice", (TARGET + "    ports: [22, 22]\n").encode(), "a port is listed twice"),
    ("no-ports", TARGET.encode(), "ports: Field required"),
    ("max-overflow-h", _port("{number: 22, maxDuration: 99999999999999h}"), "out of range"),
    ("max-overflow-d", _port("{number: 22, maxDuration: P99999999999D}"), "out of range"),
    ("max-days", _port("{number: 22, maxDuration: 2d}"), "'2d' is not a duration"),
    ("max-number", _port("{number: 22, maxDuration: 3600}"), "maxDuration: Input should be"),
    ("protocol", _port("{number: 22, protocol: icmp}"), "protocol: Input should be"),
    ("src-star", _port("{number: 22, sources: ['*']}"), "set allowAnySource: true"),
    ("src-internet", _port("{number: 22, sources: [Internet]}"), "set allowAnySource: true"),
    ("src-internet-uc", _port("{number: 22, sources: [INTERNET]}"), "set allowAnySource: true"),
    ("src-any", _port("{number: 22, sources: [Any]}"), "set allowAnySource: true"),
    ("src-cidr0", _port("{number: 22, sources: [0.0.0.0/0]}"), "set allowAnySource: true"),
    ("src-unspecified", _port("{number: 22, sources: [0.0.0.0]}"), "unspecified address"),
    ("src-ipv6", _port("{number: 22, sources: ['2001:db8::/32']}"), "IPv6"),
    ("src-empty", _port("{number: 22, sources: []}"), "list at least one source"),
    ("src-junk", _port("{number: 22, sources: ['10.0.0.0/8 x']}"), "not an IPv4 address"),
    (
        "defaults-src",
        b"defaults: {sources: ['*']}\n" + TARGET.encode() + b"    ports: [22]\n",
        "defaults.sources",
    ),
    (
        "defaults-max",
        b"defaults: {maxDuration: P99999999999D}\n" + TARGET.encode() + b"    ports: [22]\n",
        "defaults.maxDuration",
    ),
    (
        "defaults-proto",
        b"defaults: {protocol: icmp}\n" + TARGET.encode() + b"    ports: [22]\n",
        "defaults.protocol",
    ),
    (
        "rg-name",
        b"targets:\n  - resourceGroup: bad/rg\n    names: ['*']\n    ports: [22]\n",
        ":2: targets[0].resourceGroup: 'bad/rg' is not a resource group",
    ),
    (
        "ids-short",
        b"targets:\n  - ids: [/subscriptions/s/resourceGroups/rg]\n    ports: [22]\n",
        "is not a virtual machine resource id",
    ),
    (
        "ids-bad-vm",
        (
            "targets:\n  - ids: ['"
            + VM_ID.format(rg="rg-jit-demo", vm="a b")
            + "']\n    ports: [22]\n"
        ).encode(),
        "'a b' is not a virtual machine name",
    ),
    (
        "selector-both",
        (
            "targets:\n  - ids: ['"
            + VM_ID.format(rg="rg", vm="v")
            + "']\n    resourceGroup: rg\n    ports: [22]\n"
        ).encode(),
        "give either 'ids'",
    ),
    (
        "bidi-key",
        "\u202ecolour: x\n".encode() + TARGET.encode() + b"    ports: [22]\n",
        "\\u202ecolour: Extra inputs",
    ),
    (
        "subscription",
        b"subscriptions: [../x]\n" + TARGET.encode() + b"    ports: [22]\n",
        ":1: subscriptions: '../x' is not a subscription id",
    ),
    (
        "target-subscription",
        TARGET.encode() + b"    subscriptions: ['a b']\n    ports: [22]\n",
        ":4: targets[0].subscriptions: 'a b' is not a subscription id",
    ),
    (
        "tags-list",
        b"targets:\n  - resourceGroup: rg\n    tags: {os: [a]}\n    ports: [22]\n",
        "tags.os: Input should be a valid string",
    ),
]
POLICY_COMMANDS = [["policy", "validate"], ["policy", "plan"], ["policy", "apply", "--yes"]]


YAML_ONLY = [f for f in FILES if ": yaml: " in f[2] or "single document" in f[2]]


@pytest.mark.parametrize(
    ("content", "message"), [f[1:] for f in YAML_ONLY], ids=[f[0] for f in YAML_ONLY]
)
def test_both_yaml_parsers_refuse_alike(tmp_path, monkeypatch, content, message):
    """libyaml's events (the default) and PyYAML's pure-Python scanner: the same problem."""
    import yaml

    from jitctl import yamlload

    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    seen = []
    for base in (yamlload._loader_base(), yaml.SafeLoader):
        monkeypatch.setattr(yamlload, "_loader_base", lambda base=base: base)
        with pytest.raises(yamlload.YamlProblem) as err:
            yamlload.compose_bounded(path)
        seen.append((err.value.line, err.value.key))
        assert message.split(": yaml: ")[-1] in f"{err.value.key}: {err.value.message}"
    assert seen[0] == seen[1] and len(YAML_ONLY) >= 6


@pytest.mark.parametrize("command", POLICY_COMMANDS, ids=lambda c: c[1])
@pytest.mark.parametrize(("content", "message"), [f[1:] for f in FILES], ids=[f[0] for f in FILES])
def test_bad_policy_file(hostile_app, backend, tmp_path, command, content, message):
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    before = len(backend.log)
    r = invoke(hostile_app, [*command[:2], str(path), *command[2:]])
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "unexpected error" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("jitctl: error: ")]
    ending = r.stderr.splitlines()[-2:]  # the error, then its hint
    said, _ = error_parts("\n".join(ending) + "\n")
    assert errors == [ending[0]] and "problem(s)" in said
    problems = (r.stdout if command[1] == "validate" else r.stderr).splitlines()
    problems = [p for p in problems if not p.startswith(("jitctl: error: ", "Hint: "))]
    assert problems and all(re.match(rf"{re.escape(str(path))}:\d+: ", p) for p in problems)
    assert any(message in p for p in problems), problems
    assert backend.log[before:] == []


def test_policy_file_tables_are_large_enough():
    assert len(ROWS) + len(USAGE_ROWS) + len(FILES) * len(POLICY_COMMANDS) > 100
    fields = {"number", "protocol", "maxDuration", "sources", "resourceGroup", "ids", "tags"}
    assert all(any(f in content.decode("latin-1") for _, content, _ in FILES) for f in fields)


def test_unreadable_policy_file_is_a_problem_not_a_crash(tmp_path):
    from jitctl.policyfile import load_file

    loaded, problems = load_file(tmp_path)  # a folder where a file was expected: an OSError
    assert loaded is None and [str(p) for p in problems] == [
        f"{tmp_path}:1: (file): cannot be read: Is a directory"
    ]


def test_policy_paths_with_a_nul_is_bad_input():
    from jitctl.errors import BadInput
    from jitctl.policyfile import policy_paths

    with pytest.raises(BadInput, match="neither a policy file nor a folder"):
        policy_paths(Path("p\x00.yaml"))


# --- the library refuses the same, before any ARM call ----------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "*"}, "whole Internet"),
        ({"source": "Internet"}, "whole Internet"),
        ({"source": "203.0.113.7; rm"}, "not an IPv4 address"),
        ({"port": True}, "'true' is not a port number"),
        ({"port": 70000}, "Port 70000 is out of range"),
        ({"justification": ESC}, "holds control characters"),
        ({"duration": timedelta(days=2)}, "Duration 48h is out of range"),
        ({"duration": timedelta(seconds=1)}, "Duration 1s is out of range"),
        ({"min_remaining": timedelta(minutes=-1)}, "Duration -60s is out of range"),
        ({"timeout": 0.0}, "Duration 0s is out of range"),
        ({"timeout": 1e300}, "Duration 1e+300s is out of range"),
    ],
)
def test_ensure_access_checks_its_input(app, backend, kwargs, message):
    from jitctl.errors import BadInput
    from jitctl.services.connect import AccessRequest, ensure_access
    from tests.support import vm_ref

    args = {"source": "203.0.113.7", "port": 3389, **kwargs}
    with pytest.raises(BadInput, match=re.escape(message)):
        ensure_access(app.gateway(), AccessRequest(vm_ref("vm-win01"), **args), app.clock)
    assert backend.log == []


def test_check_output_file(tmp_path):
    from jitctl.errors import BadInput
    from jitctl.services.export import check_output_file

    assert check_output_file(tmp_path / "new.yaml") == tmp_path / "new.yaml"
    assert check_output_file(tmp_path / "new" / "x.yaml") == tmp_path / "new" / "x.yaml"
    cases = [
        (tmp_path, "is a folder"),
        (tmp_path / "a\x00.yaml", "'.*a\\\\x00.yaml' cannot be written"),
    ]
    if Path("/dev/null").exists():
        cases.append((Path("/dev/null"), "is not a regular file"))
    for path, message in cases:
        with pytest.raises(BadInput, match=message):
            check_output_file(path)
