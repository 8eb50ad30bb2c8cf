"""How a requested source must match a policy port's allowed prefixes is unconfirmed: by CIDR
containment (the emulator's default) or verbatim, as one report has it (MicrosoftDocs/azure-docs
#53026). The emulator models both (Settings.source_match); jitctl works under both and, when Azure
refuses an address its own check found within the policy, says which prefix to request (the real
SDK clients against the emulator; jitctl's answer as a user sees it)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from jitctl.errors import ExitCode, Refused
from jitctl.model import PortRule
from jitctl.services.access import verbatim_hint
from tests.support import RG, error_parts

G = ["-g", RG]
LNX = ["vm-lnx01", *G, "--port", "22"]


@pytest.fixture
def allowed_24(run):
    r = run("enable", *LNX, "--source", "203.0.113.0/24")
    assert r.exit_code == 0, r.output


def test_containment_lets_an_address_of_the_allowed_prefix_in(allowed_24, run, backend):
    assert backend.settings.source_match == "containment"
    r = run("request", *LNX, "--source-ip", "203.0.113.7", "--wait")
    assert r.exit_code == 0, r.output
    assert "EFFECTIVE: 203.0.113.7 -> vm-lnx01 10.10.2.4:22/tcp" in r.stdout


def test_verbatim_refuses_the_address_and_jitctl_says_which_prefix_to_ask_for(
    allowed_24, run, backend
):
    backend.settings.source_match = "verbatim"
    r = run("request", *LNX, "--source-ip", "203.0.113.7")
    assert r.exit_code == ExitCode.REFUSED
    assert r.stdout == ""
    assert r.stderr.startswith(
        "jitctl: error: Azure refused the request (BadRequest): The given access request is "
        "not a subset of policy '"
    )
    assert r.stderr.rstrip().endswith(
        "Azure may match the source verbatim against the allowed prefixes "
        "(MicrosoftDocs/azure-docs#53026): request 203.0.113.0/24 as it stands "
        "(--source-ip 203.0.113.0/24)."
    )
    message, hint = error_parts(r.stderr)  # Azure's words, then jitctl's on their own line
    assert message.endswith("within the allowed policy properties.") and hint.startswith(
        "Azure may"
    )
    history = json.loads(run("history", "vm-lnx01", *G, "-o", "json").stdout)
    assert history["grants"] == []  # nothing was granted


def test_verbatim_accepts_the_prefix_itself_and_the_address_gets_in(allowed_24, run, backend):
    backend.settings.source_match = "verbatim"
    r = run("request", *LNX, "--source-ip", "203.0.113.0/24", "--wait")
    assert r.exit_code == 0, r.output
    r = run("verify", *LNX, "--source-ip", "203.0.113.7", "--require-jit")
    assert r.exit_code == 0, r.output


def test_verbatim_still_lets_any_address_in_through_a_wide_open_port(run, backend):
    backend.settings.source_match = "verbatim"
    assert run("enable", "vm-win01", *G).exit_code == 0  # any source
    r = run("request", "vm-win01", *G, "--source-ip", "198.51.100.7", "--wait")
    assert r.exit_code == 0, r.output


NOT_SUBSET = Refused(
    "Azure refused the request (BadRequest): The given access request is not a subset of "
    "policy 'P'. Please make sure that the access request is within the allowed policy properties."
)


@pytest.mark.parametrize(
    "error, sources, source, hint",
    [
        (NOT_SUBSET, ("203.0.113.0/24",), "203.0.113.7", "request 203.0.113.0/24 as it stands"),
        (NOT_SUBSET, ("10.0.0.0/8", "203.0.113.0/24"), "203.0.113.7", "request 203.0.113.0/24"),
        (NOT_SUBSET, ("198.51.100.7",), "198.51.100.7", ""),  # the same text: not the cause
        (NOT_SUBSET, ("*",), "198.51.100.7", ""),  # wide open: not the cause
        (NOT_SUBSET, ("192.0.2.0/24",), "203.0.113.7", ""),  # outside: jitctl refuses first
        (
            Refused("Azure refused the request (BadRequest): other."),
            ("203.0.113.0/24",),
            "203.0.113.7",
            "",
        ),
    ],
)
def test_the_hint_only_when_a_verbatim_match_can_explain_the_refusal(error, sources, source, hint):
    rules = [PortRule(22, allowed_source_address_prefixes=sources)]
    said = verbatim_hint(error, rules, source)
    assert (hint in said) if hint else said == ""


def test_source_match_is_set_from_the_command_line(tmp_path):
    from jitctl.cli.commands import cli
    from jitctl.emulator.store import read_file

    state = tmp_path / "state.sqlite"
    base = ["emulator", "reset", "--state", str(state)]
    r = CliRunner().invoke(cli, [*base, "--set", "source_match=exact"])
    assert r.exit_code == ExitCode.BAD_INPUT
    assert "source_match is one of containment, verbatim, not 'exact'" in r.output
    assert not state.exists()
    r = CliRunner().invoke(cli, [*base, "--set", "source_match=Verbatim"])
    assert r.exit_code == 0, r.output
    assert read_file(state).settings.source_match == "verbatim"
