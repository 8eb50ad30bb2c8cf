"""Shell completion of VM and resource group names, for click's `shell_complete=` hooks.

Names come from one ARM list of the subscription's VMs, with a short timeout (the shell is
waiting) and a per-user cache (a 0600 file, 5 minutes): a second TAB costs nothing. Completion
never raises into the shell and never prints an error: on any failure it offers what the cache
has, or nothing. Imports stay inside the functions so that `jitctl --help` does not pay for them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

TIMEOUT = 2.0  # seconds the shell waits for names from Azure
TTL = 300.0  # seconds a cached list stays fresh
CACHE_ENV = "JITCTL_COMPLETION_CACHE"  # a file to use instead of the user cache directory

Names = list[tuple[str, str]]  # (resource group, VM name)


def complete_vm(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """VM names (of the -g resource group when it was given before the cursor)."""
    from click.shell_completion import CompletionItem

    group = (ctx.params.get("resource_group") or "").lower()
    names = sorted({vm for rg, vm in vm_names(ctx) if not group or rg.lower() == group})
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def complete_group(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Resource groups that hold VMs (the only ones JIT has anything to do with)."""
    from click.shell_completion import CompletionItem

    groups = sorted({rg for rg, _ in vm_names(ctx)}, key=str.lower)
    low = incomplete.lower()
    return [CompletionItem(g) for g in groups if g.lower().startswith(low)]


def vm_names(
    ctx: click.Context,
    timeout: float | None = None,
    ttl: float | None = None,
    now: Callable[[], float] = time.time,
) -> Names:
    """Cached names when fresh; else a list from Azure within `timeout`; else stale or none."""
    try:
        app = completion_app(ctx)
        key = cache_key(app)
        entry = read_cache().get(key)
        if entry and now() - entry["time"] < (TTL if ttl is None else ttl):
            return [(g, n) for g, n in entry["names"]]
        fetched = fetch_with_timeout(lambda: list_names(app), timeout or TIMEOUT)
        if fetched is None:
            return [(g, n) for g, n in entry["names"]] if entry else []
        with contextlib.suppress(OSError):  # a read-only home: complete without a cache
            write_cache(key, fetched, now())
        return fetched
    except Exception:  # completion must never break the shell
        return []


def completion_app(ctx: click.Context) -> Any:
    """The App a test injected, else one made from the global options typed so far."""
    from jitctl.app import App
    from jitctl.cli.logs import quiet_library_logging

    quiet_library_logging()

    root = ctx.find_root()
    if isinstance(root.obj, App):
        return root.obj
    from jitctl.cli.globalopts import TYPED_GLOBALS

    p = {**root.params, **root.meta.get(TYPED_GLOBALS, {})}
    subs = p.get("subscription") or ()
    return App(
        subscription=subs[0] if subs else None,
        cloud=p.get("cloud"),
        arm_endpoint=p.get("arm_endpoint"),
        emulator=bool(p.get("emulator")),
    )


def cache_key(app: Any) -> str:
    where = "emulator" if app.emulator else (app.arm_endpoint or app.cloud or "AzureCloud")
    return f"{where}|{app.subscription_id}".lower()


def list_names(app: Any) -> Names:
    from jitctl.parsing import parse_vm

    vms = app.gateway().list_vms(app.subscription_id)
    return sorted(
        {
            (parse_vm(vm.id, resource_group=None, subscription_id=None).resource_group, vm.name)
            for vm in vms
        }
    )


def fetch_with_timeout(fetch: Callable[[], Names], timeout: float) -> Names | None:
    """Run `fetch` in a daemon thread; None when it fails or is not done in time.

    Logging is switched off first: the SDK's warnings would land on the user's prompt.
    """
    import logging
    import threading

    logging.disable(logging.CRITICAL)
    box: list[Names] = []

    def run() -> None:
        with contextlib.suppress(Exception):  # "no names": the cache keeps what it had
            box.append(fetch())

    worker = threading.Thread(target=run, name="jitctl-complete", daemon=True)
    worker.start()
    worker.join(timeout)
    return box[0] if box else None


# --- the cache ----------------------------------------------------------------------------


def cache_file() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("jitctl", appauthor=False)) / "completion.json"


def read_cache() -> dict[str, Any]:
    import json

    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(key: str, names: Names, when: float) -> None:
    """Owner-only file in an owner-only folder, written to a unique temp file then renamed."""
    import json
    import tempfile

    path = cache_file()
    data = read_cache()
    data[key] = {"time": when, "names": [list(n) for n in names]}
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".completion-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp makes it 0600
            json.dump(data, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
