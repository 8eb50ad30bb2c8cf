"""The user's config file: defaults for any option of any command, in TOML.

    [defaults]                 # every command that has the option
    broker = "https://jit-broker.contoso.com"
    [rdp]                      # one command
    via-broker = true
    user = "azureuser"
    [broker]                   # a group: its commands that have the option
    output = "json"
    [broker.request]           # one command of a group
    duration = "2h"

Keys are the long options without their dashes. The file is `config.toml` in the user config
directory (platformdirs: ~/.config/jitctl on Linux, %APPDATA%\\jitctl on Windows,
~/Library/Application Support/jitctl on macOS), or the file JITCTL_CONFIG names
(JITCTL_CONFIG=/dev/null: none). Its values go into click's `default_map`, so the order is
click's own: command line > environment variable > config file > built-in default.

The file is read when a command is named, not for `jitctl --help`; a section is checked when
its command runs (a key no option of the command has, a value its type refuses): an error
naming the file, the section and the key, exit 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from jitctl.errors import BadInput

DEFAULTS = "defaults"
ENV = "JITCTL_CONFIG"


class ConfigError(BadInput):
    """The config file is broken: not TOML, or a section or key no command has."""


def config_path() -> Path:
    named = os.environ.get(ENV, "").strip()
    if named:
        return Path(named).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("jitctl", appauthor=False)) / "config.toml"


def load(path: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The file's tables, {} when there is none (JITCTL_CONFIG must name one that exists)."""
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if os.environ.get(ENV, "").strip():
            raise ConfigError(
                f"The config file {path} (JITCTL_CONFIG) does not exist.",
                "Create it, or unset JITCTL_CONFIG (JITCTL_CONFIG=/dev/null: no config file).",
            ) from None
        return path, {}
    except OSError as err:
        raise ConfigError(
            f"The config file {path} cannot be read: {err.strerror}.",
            "Check its permissions, or point JITCTL_CONFIG elsewhere.",
        ) from None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the tomli backport
        import tomli as tomllib
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"The config file {path} is not valid TOML: {err}.",
            "Fix it (https://toml.io), or point JITCTL_CONFIG elsewhere.",
        ) from None
    for key, value in doc.items():
        if not isinstance(value, dict):
            raise ConfigError(
                f"{path}: '{key}' is outside any section.",
                f"Put it under [{DEFAULTS}] (every command) or a command's [section].",
            )
    return path, doc


class Defaults:
    """The file's values for one command, as click's default_map wants them (by parameter
    name; for a group, its commands' maps under their names)."""

    def __init__(
        self,
        path: Path,
        doc: Mapping[str, Any],
        known: Callable[[str], bool],
        every_option: Callable[[], set[str]],
    ) -> None:
        self.path = path
        self.doc = doc
        self._every_option = every_option
        self._every: set[str] | None = None
        for name in doc:
            if name != DEFAULTS and not known(name):
                raise ConfigError(
                    f"{path}: [{name}] names no jitctl command.",
                    f"Name a command (jitctl --help lists them), or [{DEFAULTS}].",
                )

    def for_command(self, name: str, command: click.Command) -> dict[str, Any]:
        shared = self.doc.get(DEFAULTS, {})
        here = option_names({name: command})
        for key, value in shared.items():
            if isinstance(value, dict):
                raise ConfigError(
                    f"{self.path}: [{DEFAULTS}.{key}] is no section.",
                    f"Give [{DEFAULTS}] keys only; a command's defaults go in [{key}].",
                )
            if key not in here:
                self._known_somewhere(DEFAULTS, key)
        return self._map(command, [name], [(DEFAULTS, shared), (name, self.doc.get(name, {}))])

    def _map(
        self, command: click.Command, path: list[str], layers: list[tuple[str, Any]]
    ) -> dict[str, Any]:
        """`layers`: (section, table), the later winning; the last is this command's own
        (checked: its keys are options of the command, or of a group's commands). A group
        passes all of them on to its commands."""
        section, own = layers[-1]
        names = option_names({path[-1]: command})
        group = command if isinstance(command, click.Group) else None
        for key, value in own.items():
            if isinstance(value, dict):
                if group is None or key not in group.commands:
                    raise ConfigError(
                        f"{self.path}: [{section}.{key}] names no command of "
                        f"`jitctl {' '.join(path)}`.",
                        f"See jitctl {' '.join(path)} --help for its commands.",
                    )
            elif key not in names:
                raise ConfigError(
                    f"{self.path}: [{section}] {key}: `jitctl {' '.join(path)}` has no "
                    f"--{key} option.",
                    f"See jitctl {' '.join(path)} --help for its options.",
                )
        out: dict[str, Any] = {}
        options = _options(command)
        for where, table in layers:
            for key, value in table.items():
                param = options.get(key)
                if param is not None and not isinstance(value, dict):
                    out[param.name or key] = self._checked(command, where, key, param, value)
        if group is not None:
            for sub_name, sub in group.commands.items():
                table = own.get(sub_name, {})
                sub_layers = [*layers, (f"{section}.{sub_name}", table)]
                out[sub_name] = self._map(sub, [*path, sub_name], sub_layers)
        return out

    def _known_somewhere(self, section: str, key: str) -> None:
        """A shared key this command has not: it must be an option of some command."""
        if self._every is None:
            self._every = self._every_option()
        if key not in self._every:
            raise ConfigError(
                f"{self.path}: [{section}] {key}: no jitctl command has a --{key} option.",
                "Check the spelling (keys are long options without their dashes).",
            )

    def _checked(
        self, command: click.Command, section: str, key: str, param: click.Option, value: Any
    ) -> Any:
        """The value, if the option's type takes it (a flag takes true or false)."""
        where = f"{self.path}: [{section}] {key}"
        if param.is_flag and not param.count and not isinstance(value, bool):
            raise ConfigError(f"{where}: give true or false.", f"e.g. {key} = true")
        if isinstance(param.type, click.File):
            return value  # opened when the command runs, not now
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not param.multiple and param.nargs == 1:
            raise ConfigError(f"{where}: give one value, not a list.", f'e.g. {key} = "..."')
        try:
            for one in values:
                param.type.convert(one, param, click.Context(command))
        except click.BadParameter as err:
            raise ConfigError(f"{where}: {err.format_message()}", "Fix the value.") from None
        return value


def _options(command: click.Command) -> dict[str, click.Option]:
    """The command's options by their long names without dashes (and by parameter name)."""
    found: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in param.opts:
                if opt.startswith("--"):
                    found[opt[2:]] = param
            if param.name:
                found.setdefault(param.name.replace("_", "-"), param)
    return found


def option_names(commands: Mapping[str, click.Command]) -> set[str]:
    """Every option name of these commands and their subcommands."""
    names: set[str] = set()
    for command in commands.values():
        names.update(_options(command))
        if isinstance(command, click.Group):
            names.update(option_names(command.commands))
    return names
