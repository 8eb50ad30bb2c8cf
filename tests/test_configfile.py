"""The user's config file (jitctl.cli.configfile): defaults for any option, the order command
line > environment > file > built-in, and the errors of a broken file (exit 2, naming the file
and the key)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from jitctl.cli.configfile import Defaults, load, option_names
from jitctl.cli.root import cli

WIN = ["rdp", "vm-win01", "-g", "rg-jit-demo", "--source-ip", "203.0.113.7", "--no-launch"]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "config.toml"
        path.write_text(text)
        monkeypatch.setenv("JITCTL_CONFIG", str(path))
        return path

    return write


def test_via_broker_from_the_file_and_the_order_command_line_env_file(
    config: Callable[[str], Path], run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("enable", "vm-win01", "-g", "rg-jit-demo").exit_code == 0
    direct = run(*WIN, "-o", "json")
    assert direct.exit_code == 0, direct.output
    config("[rdp]\nvia-broker = true\n")
    by_file = run(*WIN)
    assert by_file.exit_code == 2
    assert by_file.stderr.splitlines()[0] == "jitctl: error: No broker given."  # it asked one
    assert run(*WIN, "--direct", "-o", "json").exit_code == 0  # the command line wins
    monkeypatch.setenv("JITCTL_VIA_BROKER", "0")
    assert run(*WIN, "-o", "json").exit_code == 0  # the environment wins over the file
    assert run(*WIN, "--via-broker").exit_code == 2  # and the command line over both


def test_defaults_apply_to_every_command_with_the_option_and_a_section_wins(
    config: Callable[[str], Path], run: Callable[..., Result]
) -> None:
    config('[defaults]\noutput = "json"\nbroker = "http://example.invalid"\n')
    listed = run("list", "-g", "rg-jit-demo")
    assert listed.exit_code == 0 and listed.stdout.startswith("{")
    assert not run("list", "-g", "rg-jit-demo", "-o", "table").stdout.startswith("{")
    asked = run("broker", "list")
    assert asked.exit_code == 2 and "http://example.invalid is plain HTTP" in asked.stderr
    config(
        '[defaults]\nbroker = "http://example.invalid"\n'
        '[broker]\nbroker = "http://group.invalid"\n'
        '[broker.show]\nbroker = "http://show.invalid"\n'
    )
    assert "http://group.invalid is plain HTTP" in run("broker", "list").stderr
    assert "http://show.invalid is plain HTTP" in run("broker", "show", "r-1").stderr
    assert "http://other.invalid is plain" in (
        run("broker", "show", "r-1", "--broker", "http://other.invalid").stderr
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[rdp\n", "is not valid TOML: Expected ']' at the end of a table declaration"),
        ("via-broker = true\n", "'via-broker' is outside any section."),
        ("[rpd]\nuser = 'x'\n", "[rpd] names no jitctl command."),
        ("[rdp]\nvia-brokr = true\n", "[rdp] via-brokr: `jitctl rdp` has no --via-brokr option."),
        ("[rdp]\nvia-broker = 'yes'\n", "[rdp] via-broker: give true or false."),
        ("[rdp]\nport = 'ssh'\n", "[rdp] port:"),
        ("[rdp]\nport = [1, 2]\n", "[rdp] port: give one value, not a list."),
        ("[defaults]\nsource-ipp = '1.2.3.4'\n", "[defaults] source-ipp: no jitctl command has"),
        ("[broker.requst]\nreason = 'x'\n", "[broker.requst] names no command of `jitctl broker`."),
        ("[broker]\nnope = 1\n", "[broker] nope: `jitctl broker` has no --nope option."),
    ],
)
def test_a_broken_file_is_one_error_naming_the_file_and_key_exit_2(
    config: Callable[[str], Path], run: Callable[..., Result], text: str, message: str
) -> None:
    path = config(text)
    args = ["broker", "list"] if text.startswith("[broker") else WIN
    got = run(*args)
    assert got.exit_code == 2, got.output
    first = got.stderr.splitlines()[0]
    assert first.startswith(f"jitctl: error: {path}: ") or first.startswith(
        f"jitctl: error: The config file {path} "
    )
    assert message in first
    assert got.stdout == ""


def test_a_named_file_must_exist_and_dev_null_means_none(
    run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JITCTL_CONFIG", str(tmp_path / "missing.toml"))
    got = run("list", "-g", "rg-jit-demo")
    assert got.exit_code == 2
    assert got.stderr.splitlines()[0] == (
        f"jitctl: error: The config file {tmp_path / 'missing.toml'} (JITCTL_CONFIG) does not exist."
    )
    monkeypatch.setenv("JITCTL_CONFIG", "/dev/null")
    assert run("list", "-g", "rg-jit-demo").exit_code == 0


def test_the_default_place_is_the_user_config_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run: Callable[..., Result]
) -> None:
    monkeypatch.delenv("JITCTL_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(sys, "platform", "linux")  # platformdirs' Unix rules, on any machine
    (tmp_path / "xdg" / "jitctl").mkdir(parents=True)
    (tmp_path / "xdg" / "jitctl" / "config.toml").write_text("[list]\noutput = 'json'\n")
    path, doc = load()
    assert path == tmp_path / "xdg" / "jitctl" / "config.toml"
    assert doc == {"list": {"output": "json"}}
    assert run("list", "-g", "rg-jit-demo").stdout.startswith("{")


def test_help_reads_no_config_file_and_imports_no_azure(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[rdp\n")
    code = (
        "import sys; from jitctl.cli.root import main; rc = main(['--help'], "
        "standalone_mode=False); "
        "print(rc, any(m.startswith('azure') for m in sys.modules), 'tomllib' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"JITCTL_CONFIG": str(broken), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split()[-3:] == ["0", "False", "False"]


def test_the_readme_example_is_a_valid_config() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = re.search(r"## Configuration file\n.*?```toml\n(.*?)```", readme, re.S)
    assert block, "README has a Configuration file part with a toml example"
    import tomllib

    doc = tomllib.loads(block.group(1))
    commands = cli.load_all()
    defaults = Defaults(
        Path("README"), doc, lambda n: n in commands, lambda: option_names(commands)
    )
    for name in doc:
        if name != "defaults":
            assert defaults.for_command(name, commands[name])
