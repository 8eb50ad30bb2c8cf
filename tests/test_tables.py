"""Tables for people: fit the width, fold context columns, shorten names in the middle, never
drop a value; colors only on a terminal and never with NO_COLOR."""

from __future__ import annotations

import io
import json

import pytest

from jitctl.cli import tables

HEADER = ["GROUP", "VM", "NAME", "ACCESS", "NOTE"]
LONG = "MicrosoftDefenderForCloud-JITRule-671125404-98d679dc3dbf889f8146b0a36d7530d8"


def rows(n: int = 3) -> list[list[str]]:
    return [
        ["rg-prod", f"vm-{i}", LONG + str(i), "Allow" if i % 2 else "Deny", "word " * 12]
        for i in range(n)
    ]


@pytest.mark.parametrize("limit", [100, 80, 60])
def test_no_line_is_wider_than_the_width_and_no_value_is_lost(limit):
    text = tables.layout(rows(), HEADER, limit)
    assert all(len(line) <= limit for line in text.splitlines()), text
    flat = " ".join(text.split())
    for row in rows():
        assert row[1] in flat and row[3] in flat
        assert flat.count("word") >= 12 * 3  # the last column wraps, nothing cut


def test_context_columns_with_one_value_are_folded_above_the_table():
    text = tables.layout(rows(), HEADER, 100)
    assert text.splitlines()[0] == "GROUP: rg-prod"
    assert text.splitlines()[1].split()[:2] == ["VM", "NAME"]
    mixed = rows()
    mixed[1][0] = "rg-test"
    assert tables.layout(mixed, HEADER, 100).splitlines()[0].startswith("GROUP")
    assert "GROUP:" not in tables.layout(mixed, HEADER, 100)


def test_names_are_cut_in_the_middle_both_ends_stay():
    cut = tables.shorten_middle(LONG, 40)
    assert len(cut) == 40 and cut.startswith("MicrosoftDefenderFor") and cut.endswith("7530d8")
    assert tables.shorten_middle("short", 40) == "short"
    assert LONG not in tables.layout(rows(1), HEADER, 100)


def test_width_is_100_off_a_terminal_and_follows_columns(monkeypatch):
    monkeypatch.setattr("sys.stdout", io.StringIO())  # not a terminal, even under pytest -s
    monkeypatch.delenv("COLUMNS", raising=False)
    assert tables.width() == 100
    monkeypatch.setenv("COLUMNS", "72")
    assert tables.width() == 72


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colors_only_on_a_terminal_without_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert tables.colored(Tty()) and not tables.colored(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "")
    assert not tables.colored(Tty())


def test_paint_colors_allow_green_deny_red_and_keeps_the_text():
    text = "EFFECTIVE: a\n  nic: JIT allow rule x\nNOT EFFECTIVE: b deny [bold]x[/bold]\nwarning: w"
    painted = tables.paint(text)
    assert "\x1b[32mEFFECTIVE\x1b[0m" in painted and "\x1b[31mNOT EFFECTIVE\x1b[0m" in painted
    assert "\x1b[32mJIT allow\x1b[0m" in painted and "\x1b[31mdeny\x1b[0m" in painted
    assert "[bold]x[/bold]" in painted  # data is never read as rich markup
    assert "\x1b[33mwarning: w\x1b[0m" in painted


def test_table_output_is_painted_on_a_terminal(run, app, monkeypatch):
    from click.testing import CliRunner

    from jitctl.cli.root import cli

    monkeypatch.setattr("jitctl.cli.output.colored", lambda: True)
    run("enable", "vm-win01", "-g", "rg-jit-demo")
    run("request", "vm-win01", "-g", "rg-jit-demo", "--source-ip", "203.0.113.7")
    args = ["verify", "vm-win01", "-g", "rg-jit-demo", "--source-ip", "203.0.113.7"]
    r = CliRunner().invoke(cli, args, obj=app, color=True)  # as a terminal keeps ANSI
    assert "\x1b[32mEFFECTIVE\x1b[0m" in r.stdout
    j = run("verify", "vm-win01", "-g", "rg-jit-demo", "--source-ip", "203.0.113.7", "-o", "json")
    assert "\x1b[" not in j.stdout


def test_a_table_of_context_columns_only_is_not_folded_away():
    assert tables.layout([["rg", "eu"]], ["GROUP", "REGION"], 100).splitlines() == [
        "GROUP  REGION",
        "rg     eu",
    ]


def test_the_demo_paints_its_steps_and_verdict_on_a_terminal(app, monkeypatch):
    from click.testing import CliRunner

    from jitctl.cli.root import cli

    monkeypatch.setattr("jitctl.cli.output.colored", lambda: True)
    args = ["demo", "--fast", "--source-ip", "203.0.113.7"]
    r = CliRunner().invoke(cli, args, obj=app, color=True)
    assert r.exit_code == 0, r.stderr
    assert "\x1b[31mDeny\x1b[0m" in r.stdout or "\x1b[31mdeny\x1b[0m" in r.stdout  # NSG steps
    assert "\x1b[32mEFFECTIVE\x1b[0m" in r.stdout and "\x1b[31mNOT EFFECTIVE\x1b[0m" in r.stdout
    assert "through the \x1b[32mJIT allow\x1b[0m rule" in r.stdout.splitlines()[-1]
    monkeypatch.setattr("jitctl.cli.output.colored", lambda: False)
    plain = CliRunner().invoke(cli, args, obj=app, color=True)
    assert "\x1b[" not in plain.stdout


# --- real output at 80 and 100 columns, with long names --------------------------------------

LONG_GROUP = "rg-platform-engineering-shared-services-prod-weu"
LONG_VM = "vm-payments-settlement-batch-worker-weu-prod-0042"  # 49: 'default' + VM <= 56
LONG_NSG = "nsg-payments-settlement-batch-worker-weu-prod-0042-nic-inbound-guard-with-suffix"
REQUESTOR = "firstname.lastname-contractor@subsidiary.contoso.onmicrosoft.com"
WHY = (
    "INC-4711: quarterly settlement batch failed on node 3; restart the worker service and "
    "collect the logs for the vendor"
)


@pytest.fixture
def long_names(backend, run):
    from jitctl.emulator.seeder import Seeder, inbound_allow, subnet_id

    s = Seeder(backend, group=LONG_GROUP)
    nsg = s.nsg(LONG_NSG, [inbound_allow("Allow-RDP-Any-Legacy-Jumpbox-Access", 1001, "3389")])
    vnet = s.vnet("vnet-long", "10.30.0.0/16", {"snet": ("10.30.1.0/24", None)})
    s.vm(LONG_VM, [s.nic(f"{LONG_VM}-nic", subnet_id(vnet, "snet"), "10.30.1.4", nsg=nsg)])
    backend.settings.requestor = REQUESTOR
    run("enable", LONG_VM, "-g", LONG_GROUP, "--port", "3389", "--port", "22")
    run("enable", "vm-win01", "-g", "rg-jit-demo")
    ip = ["--source-ip", "203.0.113.7"]
    run("request", LONG_VM, "-g", LONG_GROUP, *ip, "--port", "22", "--justification", WHY)
    run("request", "vm-win01", "-g", "rg-jit-demo", *ip, "--justification", "INC-1")


COMMANDS = [
    ["history", LONG_VM, "-g", LONG_GROUP],
    ["history"],  # two groups: the group column stays, cut in the middle
    ["status"],
    ["show", LONG_VM, "-g", LONG_GROUP],
    ["list"],
    [
        "verify",
        LONG_VM,
        "-g",
        LONG_GROUP,
        "--source-ip",
        "203.0.113.7",
        "--port",
        "3389",
        "--port",
        "22",
    ],
    ["verify", LONG_VM, "-g", LONG_GROUP, "--source-ip", "198.51.100.9", "--port", "22"],
]


@pytest.mark.parametrize("columns", [80, 100])
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: "-".join(a[:2])[:20])
def test_output_fits_the_width_and_json_stays_whole(long_names, run, monkeypatch, columns, args):
    monkeypatch.setenv("COLUMNS", str(columns))
    r = run(*args)
    assert r.exit_code in (0, 7), r.output
    lines = r.stdout.splitlines()
    assert lines and all(len(line) <= columns for line in lines), r.stdout
    words = r.stdout.split()
    if args[0] == "history":
        assert all(w in words for w in WHY.split())  # wrapped, not cut
        assert REQUESTOR in r.stdout  # under its row when the table is narrow
    data = run(*args, "-o", "json").stdout
    assert (LONG_VM in data and LONG_NSG in data) or args[0] != "verify"
    if args[0] == "history" and len(args) > 1:
        (grant,) = json.loads(data)["grants"]
        assert (grant["vm_name"], grant["justification"], grant["requestor"]) == (
            LONG_VM,
            WHY,
            REQUESTOR,
        )


def test_a_wrapped_warning_is_yellow_to_its_end_and_a_line_fits():
    line = "  warning: JIT is bypassed for port 3389: access is allowed by Allow-RDP-Any (priority 1001)"
    lines = tables.fit_line(line, 60)
    assert lines == [
        "  warning: JIT is bypassed for port 3389: access is allowed",
        "      by Allow-RDP-Any (priority 1001)",
    ]
    painted = tables.paint("EFFECTIVE: x\n" + "\n".join(lines))
    yellow = "\n".join(f"\x1b[33m{x}\x1b[0m" for x in lines)  # 'allowed' too: a warning's word
    assert painted == "\x1b[32mEFFECTIVE\x1b[0m: x\n" + yellow
