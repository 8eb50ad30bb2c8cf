"""Docs that run: every command line of README.md, EMULATOR.md and every --help example.

Each document's examples run one after another, in document order, as a user runs them: each
command a new App (a new process, as far as jitctl can tell) in one fresh home folder and
working folder, in the environment the README documents (`export JITCTL_EMULATOR=1` and
`jitctl emulator reset --world docs`, from its top), on the real `--emulator` state file
(JITCTL_EMULATOR_STATE in a temporary folder). Nothing is faked but time (a fake clock, so 3 s
waits take none), the programs rdp and ssh would start, and the network: this machine is
offline (the IP echo services refuse), as on a build agent with no internet. Each command must
exit 0 (or the code its line documents with `# exit N`), and the main ones have their effect
checked in the emulator's state.

Conventions (README "Commands"): ```sh and ```bat blocks hold examples, ```text blocks hold
synopses (checked: every option they name exists). In a block where lines start with `$ `, only
those are commands, the rest is output. A line ending in `\\` continues on the next.
`export NAME=VALUE` sets NAME for the lines after it; `NAME=VALUE jitctl ...` for that line;
`NAME=$(jitctl ...)` keeps the command's output in $NAME; `jitctl broker serve ... &` starts the
broker in the background (tests/docsession.py: its API answers in-process at the address it
listens on, and its worker does its rounds against the emulator).

The --help examples run in one more session, set up as the README sets up its examples (and
its broker); a `jitctl broker` example runs as the person it is for (the requester, an approver,
the admin: who a --help line leaves to the reader's sign-in), on a request made for it when
it names one.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from jitctl.cli.commands import cli
from tests.docsession import Session, check_effect, environment, new_session

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "EMULATOR.md")
RUN_BLOCKS = {"sh", "bat"}
ENV = {"BUILD_ID": "20260105.1"}  # variables the examples use
README_SETUP = "export JITCTL_EMULATOR=1"  # the README's block that sets up its examples

# What cannot run offline: a pattern of the whole command, and why. Small on purpose.
SKIP = {
    r"python3 -m venv .*": "installs into a new virtual environment (the lines at the top)",
    r"(\. \.venv/bin/activate|pip install) .*": "installs or activates the package: the tests "
    "run in the environment it is installed in",
    r"az .*|export AZURE_CONFIG_DIR=.*": "the Azure CLI: needs Azure or a served emulator; not "
    "installed in the tests",
    r"jitctl (emulator serve|tunnel|ssh-proxy)( .*)?": "serves or relays until Ctrl-C or the "
    "connection ends; tests/test_server.py and tests/test_tunnel.py run them on 127.0.0.1",
    r"jitctl broker serve .*--issuer https://login\.microsoftonline\.com/.*": "signs people in "
    "with a team's Entra ID (TENANT, its app registration): needs Azure; the emulator's "
    "`broker serve` line runs",
    r"jitctl demo": "its own world on the real clock (3 s waits) and a public-IP lookup; "
    "demo --fast --source-ip runs",
}

# What the docs name that this machine has not, and what stands in for it: the same command on
# something at hand. Small on purpose.
STAND_INS = {
    r"postgresql\+psycopg://\S+": "sqlite:///broker-migrate.sqlite",  # no PostgreSQL server here:
    # migrate runs the same migrations on SQLite (tests/test_broker_store.py on PostgreSQL)
}


def load_gen_commands() -> Any:
    spec = importlib.util.spec_from_file_location(
        "gen_commands", ROOT / "scripts" / "gen_commands.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_commands = load_gen_commands()


# --- extraction ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    where: str  # README.md:55, or "jitctl enable --help"
    text: str  # continuations joined
    block: str  # the fence's language ("sh", "text"...)


def join_continuations(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for number, text in lines:
        if out and out[-1][1].endswith("\\"):
            out[-1] = (out[-1][0], out[-1][1][:-1].rstrip() + " " + text.strip())
        else:
            out.append((number, text.strip()))
    return out


def markdown_lines(name: str) -> Iterator[Line]:
    """Command lines of a Markdown file: in fenced blocks, and `$ jitctl ...` lines outside them."""
    lang: str | None = None
    block: list[tuple[int, str]] = []
    for number, raw in enumerate((ROOT / name).read_text(encoding="utf-8").splitlines(), 1):
        fence = re.fullmatch(r"\s*```\s*(\w*).*", raw)
        if fence and lang is None:
            lang, block = fence.group(1) or "output", []
        elif fence:
            prompted = [(n, t.strip()[2:]) for n, t in block if t.strip().startswith("$ ")]
            for n, text in join_continuations(prompted or block):
                if text and not text.startswith("#"):
                    yield Line(f"{name}:{n}", text, lang)
            lang = None
        elif lang is not None:
            block.append((number, raw))
        elif raw.startswith("$ jitctl "):  # a prompt outside a block; prose may start "jitctl "
            yield Line(f"{name}:{number}", raw.removeprefix("$ "), "sh")


def help_lines() -> Iterator[Line]:
    for path, command, _ in gen_commands.commands():
        for text in gen_commands.examples(command):
            yield Line(" ".join(("jitctl", *path, "--help")), text, "sh")


# --- running -------------------------------------------------------------------------------


def segments(text: str, variables: dict[str, str] | None = None) -> list[tuple[str, list[str]]]:
    """A shell line as (operator before it, words): operators &&, ||, |, >, ;, & (after a
    command: in the background). $NAME is the shell's variable, else the environment's."""
    known = {**ENV, **(variables or {})}
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    parts: list[tuple[str, list[str]]] = [("", [])]
    for token in lexer:
        if token in ("&&", "||", "|", ">", ";", "&"):
            parts.append((token, []))
        else:
            parts[-1][1].append(re.sub(r"\$(\w+)", lambda m: known[m.group(1)], token))
    return parts


def skipped(text: str) -> str | None:
    return next((why for pattern, why in SKIP.items() if re.fullmatch(pattern, text)), None)


def jq(filters: list[str], document: str) -> list[Any]:
    """The little of jq the docs use: `jq [-r] '.a.b[0].c, .d'`; a missing key fails."""
    values = []
    for path in filters[-1].split(","):
        value: Any = json.loads(document)
        for key, index in re.findall(r"\.(\w+)|\[(\d+)\]", path.strip()):
            value = value[key] if key else value[int(index)]
        values.append(value)
    return values


def line_env(session: Session, words: list[str]) -> dict[str, str | None]:
    """The session's environment with the line's own `NAME=VALUE` prefixes (taken off words)."""
    env = dict(session.env)
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return env


def invoke(session: Session, words: list[str], env: dict[str, str | None]) -> click.testing.Result:
    if words[:2] == ["cmd", "/c"]:
        words = words[2:]
    assert words and Path(words[0]).name == "jitctl", f"not a jitctl command: {words}"
    return CliRunner().invoke(cli, words[1:], obj=session.app(), env=env, catch_exceptions=False)


def run_line(session: Session, line: Line) -> str | None:
    if re.fullmatch(r"(\w+=\$\(jq -r \S+ \S+\);?\s*)+", line.text):  # host=$(jq -r .a f); ...
        for _, path, name in re.findall(r"(\w+)=\$\(jq -r (\S+) (\S+)\)", line.text):
            assert jq([path], (session.cwd / name).read_text()) != [None], line.text
        return
    if kept := re.fullmatch(r"(\w+)=\$\((jitctl .*)\)", line.text):  # ID=$(jitctl ... -o tsv)
        out = run_line(session, Line(line.where, kept.group(2), line.block))
        assert out and out.strip() and "\n" not in out.strip(), f"{line.where}: {out!r}"
        session.variables[kept.group(1)] = out.strip()
        return
    text = line.text
    for pattern, stand_in in STAND_INS.items():
        text = re.sub(pattern, stand_in, text)
    expected = int(m.group(1)) if (m := re.search(r"#\s*exit (\d+)\s*$", text)) else 0
    parts = segments(text, session.variables)
    result = None
    for operator, words in parts:
        if operator == "&" and not words:
            continue  # the command before runs in the background (broker serve: BrokerHost)
        if operator in ("", "&&", ";", "&"):
            if skipped(" ".join(words)):
                continue
            if words[0] == "export":  # for the lines after it, as a shell keeps it
                key, value = words[1].split("=", 1)
                session.env[key] = value
                continue
            env = line_env(session, words)
            result = invoke(session, words, env)
            assert result.exit_code == expected, (
                f"{line.where}: {line.text}\nexit {result.exit_code}\n{result.output}"
            )
            with environment(env):
                session.broker.catch_up()  # the served broker's worker, while one types on
            if expected == 0:
                with environment(env):
                    check_effect(session, words, result)
        elif operator == "||":
            break  # runs only when the command before failed, which the assert above excludes
        elif operator == ">":
            assert result is not None
            (session.cwd / words[0]).write_text(result.stdout)
        elif operator == "|":
            assert result is not None and words[0] == "jq", f"{line.where}: unknown pipe {words}"
            assert None not in jq(words[1:], result.stdout), line.text
    return result.stdout if result is not None else None


# --- the tests -----------------------------------------------------------------------------


def collect() -> dict[str, list[Line]]:
    runnable = {
        name: [x for x in markdown_lines(name) if x.block in RUN_BLOCKS] for name in DOCUMENTS
    }
    runnable["--help"] = list(help_lines())
    return runnable


DOCS = collect()
ROWS = [
    pytest.param(
        doc,
        index,
        id=f"{line.where}: {line.text[:60]}",
    )
    for doc, lines in DOCS.items()
    for index, line in enumerate(lines)
]


@pytest.fixture(scope="module")
def offline() -> Iterator[str]:
    """An address where nothing listens (bound, never listening): a connection is refused at
    once, as when this machine is offline."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{closed.getsockname()[1]}/"


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory, offline: str) -> dict[str, Session]:
    return {}


def setup_lines() -> list[Line]:
    """The README's lines that prepare its examples (at its top): the same for --help's."""
    readme = DOCS["README.md"]
    first = next(i for i, x in enumerate(readme) if x.text.startswith(README_SETUP))
    return [x for x in readme[first - 1 : first + 2]]


def broker_setup_lines() -> list[Line]:
    """The README's lines that start its broker and point the CLI at it: for --help's too."""
    readme = DOCS["README.md"]
    first = next(i for i, x in enumerate(readme) if x.text.startswith("jitctl broker serve "))
    assert readme[first + 1].text.startswith("export JITCTL_BROKER_URL="), readme[first + 1]
    return readme[first : first + 2]


# Who a --help example of `jitctl broker` is for (a --help line leaves it to the reader's
# sign-in; on the emulator, --as): the requester, else these.
HELP_READERS = {
    "approve": "bob@contoso.com",  # an ops lead, the rules' approver
    "deny": "bob@contoso.com",
    "extend": "bob@contoso.com",
    "list": "bob@contoso.com",  # list --pending: what waits for him
    "explain": "bob@contoso.com",
    "log": "carol@contoso.com",  # the broker's admin
}
REQUESTER, ON_CALL = "alice@contoso.com", "dave@contoso.com"  # dave's requests: approved at once
REQUEST_ID = r"0b7c1e52-4f0e-4d5a-9a53-2f1d1a3f9e10"  # the id the --help examples show
STATE_FOR = {"revoke": "active", "extend": "active"}  # else a pending request


def as_reader(session: Session, line: Line) -> Line:
    """A --help example of `jitctl broker` as its reader runs it: as the person it is for, on
    a request of theirs in the state the command acts on (made now, as the README makes one)."""
    words = line.text.split()
    if words[:2] != ["jitctl", "broker"] or words[2] in ("serve", "migrate"):
        return line
    on_call = words[2] == "request" and "--wait" in words  # approved at once: no approver
    who = HELP_READERS.get(words[2], ON_CALL if on_call else REQUESTER)
    text = line.text.replace("jitctl broker", f"jitctl --as {who} broker", 1)
    if REQUEST_ID in text:
        text = text.replace(REQUEST_ID, new_request(session, STATE_FOR.get(words[2], "pending")))
    return Line(line.where, text, line.block)


def new_request(session: Session, state: str) -> str:
    asked = (
        f"jitctl --as {REQUESTER} broker request vm-lnx01 -g rg-prod --port 22 "
        '--reason "deploy INC42" --ticket INC42 --query id -o tsv'
    )
    request_id = (run_line(session, Line("new request", asked, "sh")) or "").strip()
    if state == "active":  # approved, and the broker's worker opened it (run_line: a round)
        run_line(
            session,
            Line("approve", f"jitctl --as bob@contoso.com broker approve {request_id}", "sh"),
        )
    return request_id


@pytest.mark.parametrize(("doc", "index"), ROWS)
def test_example_runs(
    sessions: dict[str, Session],
    doc: str,
    index: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    offline: str,
) -> None:
    if doc not in sessions:
        sessions[doc] = new_session(tmp_path_factory.mktemp(doc.strip("-")), offline)
        if doc != "README.md":  # set up as the README says, as a reader of --help would
            monkeypatch.chdir(sessions[doc].cwd)
            for line in [*setup_lines(), *broker_setup_lines()]:
                if not skipped(line.text):
                    run_line(sessions[doc], line)
    session = sessions[doc]
    monkeypatch.chdir(session.cwd)
    line = DOCS[doc][index]
    if reason := skipped(line.text):
        pytest.skip(reason)
    run_line(session, as_reader(session, line) if doc == "--help" else line)


def test_the_readme_sets_up_its_examples_at_the_top():
    """The lines a reader pastes first: activate, JITCTL_EMULATOR=1, the docs world."""
    assert [x.text.split("#")[0].strip() for x in setup_lines()] == [
        ". .venv/bin/activate",
        "export JITCTL_EMULATOR=1",
        "jitctl emulator reset --world docs",
    ]
    assert all(int(x.where.split(":")[1]) < 40 for x in setup_lines())


def test_the_documents_have_examples_and_all_commands_are_shown():
    readme = [x.text for x in DOCS["README.md"]]
    assert len(readme) >= 30
    helped = {
        path for path, command, _ in gen_commands.commands() if not isinstance(command, click.Group)
    }
    for path in helped:
        assert any(x.text.startswith(" ".join(("jitctl", *path))) for x in DOCS["--help"]), (
            f"jitctl {' '.join(path)} --help has no example"
        )


def test_synopsis_lines_name_only_real_options():
    """A ```text line `jitctl CMD ...` is a synopsis: every option it names exists."""
    synopses = [x for name in DOCUMENTS for x in markdown_lines(name) if x.block == "text"]
    assert len(synopses) >= 15
    for line in synopses:
        if not line.text.startswith("jitctl "):
            continue
        words = line.text.split()[1:]
        command: click.Command = cli
        ctx = click.Context(cli)
        options = {o for p in cli.params for o in p.opts}
        while words and (given := next((p for p in cli.params if words[0] in p.opts), None)):
            words = words[1 if getattr(given, "is_flag", False) else 2 :]  # a global option first
        while isinstance(command, click.Group) and words and command.get_command(ctx, words[0]):
            command = command.get_command(ctx, words.pop(0))  # type: ignore[assignment]
            options |= {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        named = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", " ".join(words)))
        assert named <= options | {"--help"}, f"{line.where}: unknown {named - options}"


def test_skips_are_few_and_explained():
    assert len(SKIP) <= 6 and all(len(reason) > 20 for reason in SKIP.values())


def test_the_command_reference_is_current():
    assert (ROOT / "docs" / "COMMANDS.md").read_text(
        encoding="utf-8"
    ) == gen_commands.reference(), (
        "docs/COMMANDS.md is out of date: run python scripts/gen_commands.py"
    )


def test_every_command_is_in_the_reference_order():
    names = {path[-1] for path, _, _ in gen_commands.commands() if path}
    assert names <= set(gen_commands.ORDER), (
        f"add to ORDER in scripts/gen_commands.py: {names - set(gen_commands.ORDER)}"
    )


def test_no_command_line_hides_in_a_block_that_is_not_run():
    """A `jitctl` line is an example (sh, bat), a synopsis (text), or a profile line."""
    for name in DOCUMENTS:
        for line in markdown_lines(name):
            if line.block in (*RUN_BLOCKS, "text") or not re.search(
                r"(^|[\s/])jitctl\s", line.text
            ):
                continue
            assert line.block in ("bash", "zsh", "fish", "powershell", "python"), line
            assert line.block == "python" or "jitctl completion" in line.text, line
