"""Shell completion: the scripts, click's protocol, VM and group names with a timeout and a cache."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from jitctl.app import App
from jitctl.cli import completion
from jitctl.cli.commands import cli
from jitctl.emulator import Backend


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith(("JITCTL_", "AZURE_", "_JITCTL")):
            monkeypatch.delenv(key)
    path = tmp_path / "cache" / "jitctl" / "completion.json"
    monkeypatch.setenv(completion.CACHE_ENV, str(path))
    return path


def complete(app: App | None, words: str) -> list[str]:
    """click's bash protocol, in process: what the shell would offer after `words`."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    env = {"_JITCTL_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    result = CliRunner().invoke(cli, [], env=env, obj=app, prog_name="jitctl")
    assert result.exit_code == 0, result.output
    return [line.split(",", 1)[1] for line in result.output.splitlines() if line]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "powershell"])
def test_completion_prints_a_script_that_calls_jitctl_back(shell: str):
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0
    assert "_JITCTL_COMPLETE" in result.output and f"{shell}_complete" in result.output
    if shell == "powershell":
        assert "Register-ArgumentCompleter -Native -CommandName jitctl" in result.output


def test_commands_and_options_complete(app: App):
    assert complete(app, "jitctl ena") == ["enable"]
    assert complete(app, "jitctl completion ") == ["bash", "zsh", "fish", "powershell"]
    assert "--source-ip" in complete(app, "jitctl request vm-win01 --so")


def test_vm_and_group_names_complete_from_azure(app: App, backend: Backend):
    assert complete(app, "jitctl show -g rg") == ["rg-jit-demo"]
    assert complete(app, "jitctl show -g rg-jit-demo vm-") == ["vm-lnx01", "vm-win01"]
    assert complete(app, "jitctl rdp vm-w") == ["vm-win01"]
    assert complete(app, "jitctl enable vm-win01 vm-l") == ["vm-lnx01"]
    assert complete(app, "jitctl show -g rg-other vm-") == []


def test_names_are_cached_for_five_minutes_in_an_owner_only_file(
    app: App, backend: Backend, cache: Path
):
    complete(app, "jitctl show vm-")
    calls = len(backend.log)
    assert complete(app, "jitctl status vm-") == ["vm-lnx01", "vm-win01"]
    assert len(backend.log) == calls  # the second TAB asks Azure nothing
    if os.name == "posix":
        assert stat.S_IMODE(cache.stat().st_mode) == 0o600
        assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    assert list(cache.parent.iterdir()) == [cache]  # no temp file left behind


def test_a_stale_cache_is_refreshed(app: App, backend: Backend):
    ctx = cli.make_context("jitctl", [], obj=app, resilient_parsing=True)
    start = time.time()
    completion.vm_names(ctx, now=lambda: start)
    calls = len(backend.log)
    completion.vm_names(ctx, now=lambda: start + completion.TTL - 1)
    assert len(backend.log) == calls
    completion.vm_names(ctx, now=lambda: start + completion.TTL + 1)
    assert len(backend.log) == calls + 1


class SlowGateway:
    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def list_vms(self, subscription_id: str, resource_group: str | None = None) -> list[Any]:
        self.release.wait(5)
        return []


class BrokenGateway:
    def list_vms(self, subscription_id: str, resource_group: str | None = None) -> list[Any]:
        raise RuntimeError("boom: Authorization: Bearer secret")


def app_with(gateway: Any) -> App:
    app = App(subscription="00000000-0000-0000-0000-000000000001")
    app._gateway = gateway
    return app


def test_a_slow_azure_gives_the_stale_names_within_the_timeout(app: App, backend: Backend):
    ctx = cli.make_context("jitctl", [], obj=app, resilient_parsing=True)
    completion.vm_names(ctx, now=lambda: 0.0)  # cached long ago
    release = threading.Event()
    slow = App.for_backend(backend)  # the same subscription: the same cache entry
    slow._gateway = SlowGateway(release)
    slow_ctx = cli.make_context("jitctl", [], obj=slow, resilient_parsing=True)
    start = time.monotonic()
    names = completion.vm_names(slow_ctx, timeout=0.2)
    release.set()
    assert time.monotonic() - start < 1.0
    assert ("rg-jit-demo", "vm-win01") in names


def test_completion_never_raises_nor_prints(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(completion, "TIMEOUT", 0.2)
    broken = app_with(BrokenGateway())
    assert complete(broken, "jitctl show vm-") == []
    release = threading.Event()
    assert complete(app_with(SlowGateway(release)), "jitctl show -g ") == []
    release.set()
    out, err = capfd.readouterr()
    assert "boom" not in out + err


def test_an_unwritable_cache_still_completes(app: App, cache: Path):
    cache.parent.parent.mkdir(parents=True)
    cache.parent.write_text("a file where the folder should be")
    assert complete(app, "jitctl show vm-w") == ["vm-win01"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_really_completes_with_the_printed_script(tmp_path: Path):
    jitctl = Path(sys.executable).with_name("jitctl")
    if not jitctl.exists():
        pytest.skip("jitctl is not installed next to this Python")
    env = {
        "PATH": f"{jitctl.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        completion.CACHE_ENV: str(tmp_path / "completion.json"),
        "JITCTL_EMULATOR_STATE": str(tmp_path / "emulator.json"),
    }
    script = (
        'eval "$(jitctl completion bash)"; '
        "COMP_WORDS=(jitctl --emulator show -g rg-jit-demo vm-); COMP_CWORD=5; "
        '_jitctl_completion jitctl; echo "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["vm-lnx01", "vm-win01"], done.stderr
    assert done.stderr == ""


def test_the_readme_gives_the_profile_line_of_every_shell():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for line in (
        'eval "$(jitctl completion bash)"',
        'eval "$(jitctl completion zsh)"',
        "jitctl completion fish | source",
        "jitctl completion powershell | Out-String | Invoke-Expression",
    ):
        assert line in readme
        assert line in (cli.load_all()["completion"].help or "")


def test_completion_functions_are_hooked_to_vm_arguments_and_group_options():
    for path in (["enable"], ["show"], ["request"], ["verify"], ["rdp"], ["ssh"], ["history"]):
        command = cli.load_all()[path[0]]
        params = {p.name: p for p in command.params}
        vm = params.get("vm") or params["vms"]
        ctx = click.Context(command)
        assert vm._custom_shell_complete is completion.complete_vm, path
        assert params["resource_group"]._custom_shell_complete is completion.complete_group
        assert ctx.command is command


@pytest.mark.parametrize(
    ("shell", "cword"),
    [("zsh", "4"), ("fish", "vm-"), ("powershell", "4")],
)
def test_every_shell_gets_vm_names_through_its_protocol(app: App, shell: str, cword: str):
    env = {
        "_JITCTL_COMPLETE": f"{shell}_complete",
        "COMP_WORDS": "jitctl show -g rg-jit-demo vm-",
        "COMP_CWORD": cword,
    }
    result = CliRunner().invoke(cli, [], env=env, obj=app, prog_name="jitctl")
    assert result.exit_code == 0
    assert "vm-win01" in result.output and "vm-lnx01" in result.output


def test_on_click_without_powershell_our_script_speaks_the_same_protocol(
    app: App, monkeypatch: pytest.MonkeyPatch
):
    from click import shell_completion as sc

    from jitctl.cli.completion_cmds import completion_class

    shells = dict(sc._available_shells)
    monkeypatch.setattr(
        sc, "_available_shells", {k: v for k, v in shells.items() if k != "powershell"}
    )
    ours = completion_class("powershell")
    assert (
        ours.__module__ == "jitctl.cli.completion_cmds"
        and sc.get_completion_class("powershell") is ours
    )
    source = ours(cli, {}, "jitctl", "_JITCTL_COMPLETE").source()
    assert "Register-ArgumentCompleter -Native -CommandName jitctl" in source
    assert "$env:_JITCTL_COMPLETE = 'powershell_complete'" in source
    env = {
        "_JITCTL_COMPLETE": "powershell_complete",
        "COMP_WORDS": "jitctl show -g rg-jit-demo vm-w",
        "COMP_CWORD": "4",
    }
    result = CliRunner().invoke(cli, [], env=env, obj=app, prog_name="jitctl")
    assert result.output == "plain\nvm-win01\n_\n"
