"""`jitctl broker serve`: the API on uvicorn, the approval rules re-read from their folder,
migrations applied on start, and the worker beside it in a thread.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jitctl.broker.rules import RuleSet
from jitctl.errors import BadInput
from jitctl.policyfile import load_all, no_policy_files, policy_paths

log = logging.getLogger("jitctl.broker")

CHECK_EVERY = 2.0  # seconds between looks at the policy folder's files


class FolderRules:
    """The approval rules of a policy folder, re-read when a file changes (checked at most
    every CHECK_EVERY seconds, when the rules are asked for) or on `reload()` (SIGHUP).

    A folder that does not load when the broker starts stops it (bad input); a change that
    does not load later is logged and the rules in force stay: a typo must not open access
    nor stop the approvals in flight."""

    def __init__(self, folder: Path, monotonic: Callable[[], float] | None = None) -> None:
        import time

        self.folder = folder
        self._monotonic = monotonic or time.monotonic
        self._lock = threading.Lock()
        self._checked = self._monotonic()
        self._seen = self._stamp()
        self.rules = self._load()

    def _stamp(self) -> tuple[tuple[str, int, int], ...]:
        try:
            return tuple(
                (p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in policy_paths(self.folder)
            )
        except (OSError, BadInput):
            return ()

    def _load(self) -> RuleSet:
        files, problems = load_all(self.folder)
        if problems:
            raise BadInput(
                f"The policy files in {self.folder} have {len(problems)} problem(s): "
                + "; ".join(str(p) for p in problems[:5]),
                f"Fix them (jitctl policy validate {self.folder}), then start again.",
            )
        if not files:
            raise no_policy_files(self.folder)
        return RuleSet.from_files(files)

    def reload(self) -> bool:
        """Read the folder again; False (and the rules in force kept) when it does not load."""
        with self._lock:
            self._seen = self._stamp()
            self._checked = self._monotonic()
            try:
                self.rules = self._load()
            except BadInput as err:
                log.error("policy files not reloaded, the rules in force stay: %s", err.message)
                return False
            log.info(
                "approval rules reloaded from %s: %d entries", self.folder, len(self.rules.rules)
            )
            return True

    def __call__(self) -> RuleSet:
        now = self._monotonic()
        if now - self._checked >= CHECK_EVERY:
            self._checked = now
            if self._stamp() != self._seen:
                self.reload()
        return self.rules


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Path | None = None
    tls_key: Path | None = None
    worker_interval: float = 2.0


def check_tls(config: ServeConfig) -> None:
    if (config.tls_cert is None) != (config.tls_key is None):
        raise BadInput(
            "--tls-cert and --tls-key go together.", "Give both (PEM files), or neither."
        )
    for path in (config.tls_cert, config.tls_key):
        if path is not None and not path.is_file():
            raise BadInput(f"No file {path}.", "Give the PEM file's path.")


def make_worker(store: Any, gateway: Any, clock: Any) -> Any:
    """The worker (initiates, sweeps, revoke clean-up, notifications), acting in Azure with the
    broker's own identity (`gateway`); notifications as the environment configures them
    (docs/broker.md)."""
    from jitctl.broker.notify import Notifier, NotifySettings
    from jitctl.broker.worker import Worker, worker_name

    name = worker_name()
    notifier = Notifier(
        store, NotifySettings.from_environ(os.environ), name=name, environ=os.environ
    )
    return Worker(store, gateway, clock, name=name, notifier=notifier)


@dataclass(frozen=True)
class ServedBroker:
    """What `broker serve` runs: the API (an ASGI app), the worker beside it, and the rules to
    re-read on SIGHUP. `serve` runs them on uvicorn and a thread; the docs' tests answer the
    API in-process and run the worker's rounds themselves."""

    asgi: Any
    worker: Any  # jitctl.broker.worker.Worker; None: the API alone (serve --no-worker)
    rules: FolderRules
    config: ServeConfig


def serve(broker: ServedBroker) -> None:
    """Run uvicorn until SIGINT/SIGTERM, the worker in a thread beside it; SIGHUP re-reads the
    policy folder."""
    import uvicorn

    config = broker.config
    check_tls(config)
    uv = uvicorn.Config(
        broker.asgi,
        host=config.host,
        port=config.port,
        ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
        ssl_keyfile=str(config.tls_key) if config.tls_key else None,
        log_level=os.environ.get("JITCTL_BROKER_LOG_LEVEL", "info").lower(),
        access_log=True,
        server_header=False,
    )
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: broker.rules.reload())
    stop = threading.Event()
    if broker.worker is not None:
        threading.Thread(
            target=broker.worker.run_forever,
            args=(stop, config.worker_interval),
            name="jitctl-broker-worker",
            daemon=True,
        ).start()
    # What start-up made (the SDKs, the app, the rules) lives as long as the process: out of
    # the collector's way, a full collection no longer walks it in the middle of a request.
    gc.freeze()
    try:
        uvicorn.Server(uv).run()
    finally:
        stop.set()
