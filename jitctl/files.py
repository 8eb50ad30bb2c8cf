"""Files that may hold connection details are written for their owner only.

Folders jitctl creates are 0700 and files 0600 whatever the umask (os.mkdir and os.open apply
the umask to the mode they are given, so the mode is set again afterwards). On Windows, files
inherit the user's profile ACL.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path, *, own: bool = False) -> Path:
    """Create `path` and its missing parents as 0700. With `own` (a folder that is jitctl's
    alone, such as the .rdp folder), an existing `path` is tightened to 0700 too."""
    missing = []
    folder = path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent writer made it first
            folder.mkdir(mode=PRIVATE_DIR)
            if os.name == "posix":
                os.chmod(folder, PRIVATE_DIR)
    if own and os.name == "posix" and path.stat().st_mode & 0o077:
        os.chmod(path, PRIVATE_DIR)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600: a unique temporary file in the same folder, then a
    rename, so concurrent writers never share a temporary file and readers never see half."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp creates it 0600, whatever the umask
            f.write(data)
        if os.name == "posix":
            os.chmod(tmp, PRIVATE_FILE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
