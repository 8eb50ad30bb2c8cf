"""The command line an Azure admin expects: global options anywhere, az's output formats and
--query, az's defaults, one line for click's usage errors, escaped text in tables."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.cli.output import _color_json, to_tsv
from jitctl.emulator.seeder import DEMO_SUBSCRIPTION
from tests.support import one_error

G = ["-g", "rg-jit-demo"]
IP = ["--source-ip", "203.0.113.7"]
VM_ID = (
    f"/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/rg-jit-demo/providers/"
    "Microsoft.Compute/virtualMachines/"
)


@pytest.fixture(autouse=True)
def az_config_here(monkeypatch, tmp_path):
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path / "az"))


@pytest.mark.parametrize(
    "argv",
    [
        ["-o", "json", "list"],
        ["list", "-o", "json"],
        ["list", "--output=json"],
        ["--debug", "list", "-ojson"],
        ["list", "-s", DEMO_SUBSCRIPTION, "-o", "json", "--only-show-errors"],
    ],
)
def test_global_options_before_or_after_the_command(run, argv):
    r = run(*argv)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == {"policies": []}


def test_global_options_after_nested_commands_and_mixed_with_arguments(run, tmp_path):
    run("enable", "vm-win01", *G)
    r = run("history", "vm-win01", "-o", "json", *G)
    assert json.loads(r.stdout)["history"] is True
    r = run("verify", "-o", "json", "vm-win01", "--query", "ok", *G, *IP, "--verbose")
    assert r.exit_code == 7 and r.stdout == "false\n"
    path = tmp_path / "p.yaml"
    path.write_text("targets:\n  - ids: [" + VM_ID + "vm-win01]\n    ports: [3389]\n")
    r = run("policy", "plan", str(path), "-o", "json", "--detailed-exitcode")
    assert r.exit_code == 0 and json.loads(r.stdout)["changed"] is False


def test_every_help_lists_the_global_options():
    from tests.test_packaging import all_commands

    for args in [["--help"], ["policy", "--help"]] + [
        [*c.split(), "--help"] for c in all_commands()
    ]:
        out = CliRunner().invoke(cli, args).stdout
        assert "Global options:" in out and "--query JMESPATH" in out, args
        own, glob = out.split("Global options:")
        # (the emulator's --subscriptions, the size of its fleet world, is another option)
        assert "--subscription" in glob and not re.search(r"--subscription\b", own)


def test_ssh_arguments_after_dashdash_stay_untouched(run, app, tmp_path):
    from tests.test_connect import FakeRunner

    app.runner = FakeRunner(installed={"ssh": "/usr/bin/ssh"})
    run("enable", "vm-lnx01", *G, "--port", "22")
    r = run("ssh", "vm-lnx01", *G, *IP, "-o", "none", "--", "-o", "json", "--query", "x")
    assert r.exit_code == 0, r.stderr
    argv = app.runner.ran[0]
    dest = argv.index("--")
    # jitctl took none of them: ssh gets its options before '--', the command after the host
    assert argv[dest - 3 : dest] == ["-o", "json", "--query"] and argv[-1] == "x"


def test_output_formats(run):
    run("enable", "vm-win01", *G)
    data = json.loads(run("list", "-o", "json").stdout)
    assert yaml.safe_load(run("list", "-o", "yaml").stdout) == data
    assert json.loads(run("list", "-o", "jsonc").stdout) == data  # no color off a terminal
    assert run("list", "-o", "none").stdout == ""
    r = run("list", "-o", "tsv", "--query", "policies[].vms[].ports[]")
    assert r.stdout == "3389\tany\tPT3H\t1\n"
    assert run("list", "-o", "xml").exit_code == 2


def test_tsv_and_colors_as_az():
    assert to_tsv([{"a": 1, "b": None, "c": [1, 2], "d": {"x": 1}, "e": True}]) == "1\t\t2\t\ttrue"
    assert to_tsv(["x\ty", "z"]) == "x\\x09y\nz"  # a tab in a value cannot add a column
    colored = _color_json('{\n  "k": "v",\n  "n": 1\n}')
    assert '\x1b[94m"k"\x1b[0m' in colored and '\x1b[32m"v"\x1b[0m' in colored


def test_query_in_table_mode_and_azure_core_output(run, monkeypatch):
    run("enable", "vm-win01", "vm-lnx01", *G)
    r = run("list", "--query", "policies[0].vms[].{vm: name, id: vm_id}")
    assert r.stdout.splitlines()[0].split() == ["VM", "ID"]
    monkeypatch.setenv("AZURE_CORE_OUTPUT", "json")
    assert json.loads(run("list", "--query", "length(policies)").stdout) == 1
    assert run("list", "-o", "table").stdout.startswith("GROUP")  # -o wins over the variable


def test_control_characters_are_escaped_in_tables_and_kept_in_json(run, backend, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # wide enough that the justification does not wrap
    evil = "INC-1 \x1b]0;owned\x07\x1b[2J\nline2"
    run("enable", "vm-win01", *G)
    run("request", "vm-win01", *G, *IP, "--justification", "INC-1")
    # jitctl refuses such a justification; another tool (or the portal) may have written it
    for policy in backend.state["jit"].values():
        for entry in policy["policy"]["properties"]["requests"]:
            entry["justification"] = evil
    table = run("history", "vm-win01", *G).stdout
    assert "\x1b" not in table and "\x07" not in table
    assert "INC-1 \\x1b]0;owned\\x07\\x1b[2J\\x0aline2" in table
    assert (
        json.loads(run("history", "vm-win01", *G, "-o", "json").stdout)["grants"][0][
            "justification"
        ]
        == evil
    )
    status = run("status", "--query", "grants[].justification").stdout
    assert "\x1b" not in status and "\\x1b]0;owned" in status


def test_name_option_ids_and_the_az_default_group(run, monkeypatch, tmp_path):
    r = run("enable", "--ids", VM_ID + "vm-win01", VM_ID + "vm-lnx01", "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)["policies"][0]["changes"]) == 2
    assert run("enable", "-n", "vm-win01", *G).exit_code == 0
    r = run("rdp", "vm-win01", "-n", "vm-lnx01", *G)  # several VMs: tests/test_several_vms.py
    assert r.exit_code == 2 and "rdp works on one VM at a time; 2 were given" in r.stderr
    assert run("show", *G).exit_code == 2
    config = tmp_path / "az"
    config.mkdir()
    (config / "config").write_text("[defaults]\ngroup = rg-jit-demo\n")
    assert run("show", "vm-win01").exit_code == 0
    monkeypatch.setenv("AZURE_DEFAULTS_GROUP", "rg-other")
    r = run("show", "vm-win01")
    assert r.exit_code == 4 and "rg-other" in r.stderr


def test_subscription_by_name_from_the_az_profile(monkeypatch, tmp_path):
    from jitctl.clouds import resolve_subscription

    config = tmp_path / "az"
    config.mkdir()
    (config / "azureProfile.json").write_text(
        json.dumps({"subscriptions": [{"id": DEMO_SUBSCRIPTION, "name": "Contoso Prod"}]})
    )
    assert resolve_subscription("contoso prod") == DEMO_SUBSCRIPTION
    assert resolve_subscription(DEMO_SUBSCRIPTION) == DEMO_SUBSCRIPTION


def test_warnings_and_only_show_errors(run):
    run("enable", "vm-win01", *G)
    r = run("request", "vm-win01", *G, *IP, "--timeout", "1m")
    assert r.exit_code == 0 and r.stderr == "warning: --timeout has no effect without --wait.\n"
    r = run("request", "vm-win01", *G, *IP, "--timeout", "1m", "--only-show-errors")
    assert r.stderr == ""


def test_host_address_with_a_prefix_is_refused(run, backend):
    before = len(backend.log)
    r = run("request", "vm-win01", *G, "--source-ip", "203.0.113.7/24")
    assert r.exit_code == 2 and "it would let in all of 203.0.113.0/24" in r.stderr
    assert one_error(r.stderr) and len(backend.log) == before


def test_usage_error_is_one_line_naming_the_help():
    r = CliRunner().invoke(cli, ["request", "vm-win01", "--bogus"], obj=App())
    assert r.exit_code == 2
    assert r.stderr.startswith("jitctl: error: No such option '--bogus'")
    assert r.stderr.endswith(" Run 'jitctl request --help'.\n") and one_error(r.stderr)


def test_closed_pipe_ends_quietly(tmp_path):
    code = (
        "import sys\nfrom jitctl.cli.root import main\n"
        "sys.argv = ['jitctl', 'policy', 'schema']\nmain()\n"
    )
    proc = subprocess.run(
        f'"{sys.executable}" -c "{code}" | head -c 10',
        shell=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert len(proc.stdout) == 10 and proc.stderr == ""


def test_azure_identity_warnings_only_with_debug():
    code = (
        "import logging\nfrom jitctl.cli.root import main\n"
        "main(['completion', 'bash'], standalone_mode=False)\n"  # any command that runs
        "logging.getLogger('azure.identity._credentials.chained').warning('tried EnvironmentCredential')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "EnvironmentCredential" not in proc.stderr


def test_verbose_shows_each_poll_when_stderr_is_not_a_terminal(run, backend):
    backend.settings.propagation_delay = 5
    run("enable", "vm-win01", *G)
    r = run("request", "vm-win01", *G, *IP, "--wait", "--verbose", "-o", "json")
    assert r.exit_code == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) >= 2 and "is denied by rule" in lines[0] and lines[-1].endswith(": effective")
    assert set(json.loads(r.stdout)) == {"request", "verification"}
    quiet = run("request", "vm-win01", *G, *IP, "--wait")
    assert quiet.stderr == ""


def test_error_lines_escape_text_from_users_and_azure_but_json_keeps_it(run):
    r = run("show", "vm\x1b]0;x\x07", "-o", "json")  # no -g: the name is echoed back
    assert r.exit_code == 2
    assert "\x1b" not in r.stderr and "vm\\x1b]0;x\\x07" in r.stderr
    assert "vm\x1b]0;x\x07" in json.loads(r.stdout)["error"]["message"]


@pytest.mark.parametrize("world", ["busy"])
def test_verify_hints_say_what_to_do(run):
    run("enable", "vm-legacy", *G)
    r = run("verify", "vm-legacy", *G, "--source-ip", "198.51.100.9", "--require-jit")
    assert r.exit_code == 7 and r.stderr.endswith(
        "Remove or narrow that rule, so that only JIT opens the port.\n"
    )
    r = run("verify", "vm-nonsg", *G, *IP, "--require-jit", "--port", "22")
    assert r.stderr.endswith("then: jitctl --emulator enable vm-nonsg -g rg-jit-demo --port 22\n")


def test_subscription_by_name_on_the_emulator_and_an_unknown_name(run, backend):
    assert run("list", "-s", "emulated SUBSCRIPTION", "-o", "json").exit_code == 0
    before = len(backend.log)
    r = run("list", "-s", "Contoso Prod")
    assert r.exit_code == 2 and "No subscription is named 'Contoso Prod'." in r.stderr
    assert len(backend.log) == before  # refused before any ARM call


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "vm-win01", "-g", "rg-typo", *IP],
        ["show", "vm-win01", "-g", "rg-typo"],
        ["request", "vm-win01", "-g", "rg-typo", *IP],
        ["status", "-g", "rg-typo"],
        ["list", "-g", "rg-typo"],
    ],
)
def test_a_wrong_resource_group_is_named_as_such(run, args):
    r = run(*args)
    assert r.exit_code == 4 and one_error(r.stderr)
    assert "Resource group 'rg-typo' could not be found." in r.stderr
    assert "az group list -o table" in r.stderr and "JIT" not in r.stderr


def test_a_bad_policy_file_hint_names_the_file_ready_to_paste(run, tmp_path):
    bad = tmp_path / "my policies.yaml"
    bad.write_text("targets: nope\n")
    r = run("policy", "plan", str(bad))
    assert r.exit_code == 2
    assert r.stderr.splitlines()[-1].endswith(
        f"to list them: jitctl --emulator policy validate '{bad}'"
    )
