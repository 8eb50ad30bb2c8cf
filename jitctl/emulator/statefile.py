"""The emulator's state file on disk: created private, told apart from files that are not ours
before SQLite touches them, and the one-line errors that name the command that fixes them."""

from __future__ import annotations

import os
import shlex
from contextlib import suppress
from pathlib import Path

from jitctl.emulator.backend import Backend
from jitctl.errors import BadInput
from jitctl.textsafe import printable

STATE_ENV = "JITCTL_EMULATOR_STATE"
SQLITE_MAGIC = b"SQLite format 3\x00"
ELSEWHERE = "Point JITCTL_EMULATOR_STATE (or --state) at a file in a folder you can write to."


class StateFileError(BadInput):
    """The state file is damaged, foreign, of an older format, or cannot be read."""


def emulator_state_file() -> Path:
    """Where `--emulator` keeps its state: JITCTL_EMULATOR_STATE, else the user's state folder."""
    explicit = os.environ.get(STATE_ENV)
    if explicit:
        return Path(explicit)
    from platformdirs import user_state_dir

    return Path(user_state_dir("jitctl", appauthor=False)) / "emulator.sqlite"


def reset_command(path: Path) -> str:
    """The command that replaces the state file at `path`."""
    if path == emulator_state_file():
        return "jitctl emulator reset"
    return f"jitctl emulator reset --state {shlex.quote(printable(path))}"


def bad_file(path: Path, why: str, hint: str | None = None) -> StateFileError:
    hint = hint or f"Start afresh with: {reset_command(path)} (it replaces the file)."
    return StateFileError(f"The emulator state file {printable(path)} {why}.", hint)


def companions(path: Path) -> list[Path]:
    """The database file and the files SQLite keeps beside it in WAL mode."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def make_private_dir(folder: Path) -> None:
    """Create `folder` and its missing parents with mode 0700, whatever the umask."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        if os.name == "posix":
            os.chmod(d, 0o700)


def _create(path: Path) -> None:
    try:
        make_private_dir(path.parent)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:  # another process made it first
        return
    except OSError as err:
        raise bad_file(path, f"cannot be created ({err.strerror})", ELSEWHERE) from None
    if os.name == "posix":
        os.chmod(path, 0o600)


def check_file(path: Path) -> None:
    """Create a new file 0600 (SQLite gives its -wal and -shm files the same mode); refuse a file
    that is not an SQLite database before SQLite touches it."""
    if path.is_dir():
        raise bad_file(path, "is a folder", ELSEWHERE)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except (FileNotFoundError, NotADirectoryError):
        return _create(path)
    except OSError as err:
        raise bad_file(path, f"cannot be read ({err.strerror})") from None
    try:
        head = os.read(fd, len(SQLITE_MAGIC))
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    if head and head != SQLITE_MAGIC:
        if head.lstrip().startswith(b"{") and _read_json_state(path) is not None:
            # a new X.sqlite imports the X.json beside it
            if path.suffix == ".sqlite":
                move = f"rename it {printable(path.with_suffix('.json').name)} first"
            else:
                move = f"use {printable(path.with_suffix('.sqlite').name)} (same folder) instead"
            raise bad_file(
                path,
                "is in jitctl's former JSON format",
                f"To import it, {move}; to start afresh: {reset_command(path)}",
            )
        raise bad_file(path, "is not an emulator state file (not SQLite)")
    if os.name == "posix" and mode & 0o077:
        with suppress(OSError):
            os.chmod(path, 0o600)


def unreadable(path: Path) -> StateFileError:
    return bad_file(path, "holds state this jitctl cannot read")


def _read_json_state(path: Path) -> Backend | None:
    try:
        return Backend.load(path)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def legacy_backend(path: Path) -> Backend | None:
    """The state of jitctl's former JSON file beside `path` (emulator.json for emulator.sqlite)."""
    old = path.with_suffix(".json")
    return None if old == path or not old.is_file() else _read_json_state(old)
