"""ssh-config: Host entries whose ProxyCommand is `jitctl ssh-proxy`, in a managed block.

The block sits between two marker lines; everything else in the user's file is kept byte for
byte. Entries are keyed by VM id, so a run over one resource group replaces that group's entries
and keeps the others; VMs that are gone from the scope lose theirs. Names and values come from
Azure: only plain names become Host entries, so a VM name cannot add ssh_config directives.
"""

from __future__ import annotations

import difflib
import re
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from jitctl.errors import BadInput
from jitctl.files import private_dir, write_private
from jitctl.gateway import Gateway
from jitctl.ids import name_of, segments
from jitctl.textsafe import has_unsafe, printable

BEGIN = "# BEGIN jitctl managed"
END = "# END jitctl managed"
BEGIN_LINE = f"{BEGIN} (written by 'jitctl ssh-config'; changes here are replaced)"
VM_MARK = "# vm: "
# Azure VM names: letters, digits, '-', '_' and '.'; nothing a pattern or a token could read.
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_ID_SAFE = re.compile(r"[^\s%#\"'\\]+")


@dataclass(frozen=True)
class HostEntry:
    alias: str
    vm_id: str
    lines: tuple[str, ...]  # the entry as written, its "# vm:" line first

    @property
    def vm_name(self) -> str:
        return name_of(self.vm_id)


@dataclass(frozen=True)
class SshConfigResult:
    path: str  # the file the entries are in
    config: str  # the ssh config file (with the Include, when `path` is another file)
    hosts: tuple[str, ...]  # every alias in the block after the run
    added: tuple[str, ...]
    removed: tuple[str, ...]
    skipped: tuple[str, ...]  # VM names that cannot be a Host name
    changed: bool
    written: bool
    diff: str = ""


@dataclass(frozen=True)
class Scope:
    subscription_id: str
    resource_group: str | None = None

    def holds(self, vm_id: str) -> bool:
        parts = segments(vm_id)
        if parts.get("subscriptions", "").lower() != self.subscription_id.lower():
            return False
        return self.resource_group is None or (
            parts.get("resourcegroups", "").lower() == self.resource_group.lower()
        )


def jit_vms(gw: Gateway, scope: Scope, port: int) -> list[str]:
    """Ids of the VMs that exist and are in a JIT policy with `port`, sorted."""
    policies = gw.list_policies(scope.subscription_id, scope.resource_group)
    existing = {vm.id.lower() for vm in gw.list_vms(scope.subscription_id, scope.resource_group)}
    found = {
        pvm.id.lower(): pvm.id
        for policy in policies
        for pvm in policy.vms
        if pvm.port(port) is not None and pvm.id.lower() in existing
    }
    return sorted(found.values(), key=str.lower)


# --- quoting ---------------------------------------------------------------------------------


def proxy_command(argv: Sequence[str], platform: str) -> str:
    """A ProxyCommand value: POSIX ssh runs it with the user's shell, Windows' OpenSSH as a
    Windows command line; '%' is ssh's token character either way."""
    for word in argv:
        if has_unsafe(word) or "\n" in word:
            raise BadInput(f"'{printable(word)}' cannot be put in an ssh config file.")
    line = subprocess.list2cmdline(list(argv)) if platform == "win32" else shlex.join(argv)
    return line.replace("%", "%%")


def include_value(path: str) -> str:
    """An Include argument: forward slashes (Windows' OpenSSH reads them), in double quotes."""
    value = path.replace("\\", "/")
    if '"' in value or has_unsafe(value):
        raise BadInput(f"'{printable(path)}' cannot be named in an ssh config file.")
    return f'"{value}"'


def entry(
    alias: str, vm_id: str, argv: Sequence[str], user: str | None, platform: str
) -> HostEntry:
    if not _ID_SAFE.fullmatch(vm_id):
        raise BadInput(f"'{printable(vm_id)}' is not a resource id jitctl can write.")
    lines = [f"{VM_MARK}{vm_id}", f"Host {alias}", f"    HostName {alias}"]
    if user:
        lines.append(f"    User {user}")
    lines.append(f"    ProxyCommand {proxy_command(argv, platform)}")
    return HostEntry(alias, vm_id, tuple(lines))


def host_name_ok(name: str) -> bool:
    return bool(_HOST.fullmatch(name))


def aliases(vm_ids: Sequence[str], taken: dict[str, str]) -> dict[str, str]:
    """vm id -> Host name: the VM's name, or name.group when two VMs share a name (or the name
    belongs to a kept entry of another VM)."""
    by_name: dict[str, list[str]] = {}
    for vm_id in vm_ids:
        by_name.setdefault(name_of(vm_id).lower(), []).append(vm_id)
    out: dict[str, str] = {}
    for vm_id in vm_ids:
        name = name_of(vm_id)
        alias = name
        clash = taken.get(alias.lower())
        if len(by_name[name.lower()]) > 1 or (clash and clash.lower() != vm_id.lower()):
            alias = f"{name}.{segments(vm_id).get('resourcegroups', 'rg')}"
        out[vm_id] = alias
    return out


# --- the managed block -----------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    before: str
    block: list[str] | None  # the lines between the markers; None: no block yet
    after: str
    newline: str


def split(text: str, where: str) -> Split:
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.startswith(BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == END]
    if not begins and not ends:
        return Split(text, None, "", newline)
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise BadInput(
            f"{where} has a damaged jitctl block (markers '{BEGIN}' and '{END}' must appear "
            "once each, in that order).",
            "Fix or remove the markers by hand, then run again.",
        )
    b, e = begins[0], ends[0]
    inner = [line.rstrip("\r\n") for line in lines[b + 1 : e]]
    return Split("".join(lines[:b]), inner, "".join(lines[e + 1 :]), newline)


def parse_entries(block: Sequence[str]) -> list[HostEntry]:
    out: list[HostEntry] = []
    for line in block:
        if line.startswith(VM_MARK):
            out.append(HostEntry("", line[len(VM_MARK) :].strip(), (line,)))
        elif out and line.strip():
            last = out[-1]
            alias = line.split(None, 1)[1] if line.startswith("Host ") else last.alias
            out[-1] = HostEntry(alias, last.vm_id, (*last.lines, line))
    return out


def join(split_: Split, inner: Sequence[str], at_top: bool = False) -> str:
    nl = split_.newline
    block = nl.join([BEGIN_LINE, *inner, END]) + nl
    if split_.block is not None:
        return split_.before + block + split_.after
    text = split_.before
    if at_top:  # an Include inside a Host section would apply to that host only
        return block + (nl if text else "") + text
    if text and not text.endswith(("\n", "\r")):
        text += nl
    return text + (nl if text else "") + block


# --- a run -----------------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return ""


def _real(path: Path) -> Path:
    """A symlinked config (a dotfiles checkout) is written where it points, not replaced."""
    return path.resolve() if path.is_symlink() else path


def _diff(path: Path, old: str, new: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), str(path), str(path)
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def update(
    config: Path,
    found: dict[Scope, list[str]],
    argv_for: Callable[[str], list[str]],
    user: str | None = None,
    platform: str = "linux",
    file: Path | None = None,
    dry_run: bool = False,
) -> SshConfigResult:
    """Replace the entries of the scopes in `found` (scope -> VM ids) by entries for those VMs;
    keep the others. With `file`, the entries go there and `config` gets an Include of it."""
    config, target = _real(config), _real(file) if file else None
    where = target or config
    old_text = _read(where)
    parts = split(old_text, str(where))
    old = parse_entries(parts.block or [])
    kept = [e for e in old if not any(s.holds(e.vm_id) for s in found)]
    wanted = [vm_id for ids in found.values() for vm_id in ids]
    skipped = tuple(name_of(v) for v in wanted if not host_name_ok(name_of(v)))
    wanted = [v for v in wanted if host_name_ok(name_of(v))]
    names = aliases(wanted, {e.alias.lower(): e.vm_id for e in kept})
    new = [entry(names[v], v, argv_for(v), user, platform) for v in wanted]
    entries = sorted([*kept, *new], key=lambda e: e.alias.lower())
    inner: list[str] = []
    for e in entries:
        inner.extend([*([""] if inner else []), *e.lines])
    texts = {where: (old_text, join(parts, inner))}
    if target is not None:
        config_text = _read(config)
        include = join(
            split(config_text, str(config)), [f"Include {include_value(str(target))}"], True
        )
        texts[config] = (config_text, include)
    changed = {p: t for p, t in texts.items() if t[0] != t[1]}
    before = {e.alias for e in old}
    after = {e.alias for e in entries}
    result = SshConfigResult(
        str(where),
        str(config),
        tuple(e.alias for e in entries),
        tuple(sorted(after - before)),
        tuple(sorted(before - after)),
        skipped,
        bool(changed),
        bool(changed) and not dry_run,
        "".join(_diff(p, old_t, new_t) for p, (old_t, new_t) in changed.items()),
    )
    if not dry_run:
        for path, (_, text) in changed.items():
            private_dir(path.parent, own=path.parent.name == ".ssh")
            write_private(path, text.encode("utf-8", errors="surrogateescape"))
    return result


def default_config() -> Path:
    """~/.ssh/config: the user's profile folder on Windows (where Windows' OpenSSH reads it)."""
    return Path.home() / ".ssh" / "config"
