"""--debug logging: HTTP requests and responses on stderr, with secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable

_SECRETS = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1<redacted>"),
    (
        re.compile(
            r'(?i)("?(?:access_token|refresh_token|id_token|client_secret|x-identity-header|'
            r'identity_header|secret)"?\s*[:=]\s*["\']?)[^"\'\s,}]+'
        ),
        r"\1<redacted>",
    ),
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), "<redacted-jwt>"),
]


def redact(text: str) -> str:
    for pattern, repl in _SECRETS:
        text = pattern.sub(repl, text)
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time (so a test runner's capture works)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


DEBUG_LOGGERS = {
    "jitctl": logging.DEBUG,
    "azure.core.pipeline.policies.http_logging_policy": logging.DEBUG,  # headers come redacted
    "azure.identity": logging.INFO,
}


def enable_debug_logging() -> Callable[[], None]:
    """Turn on --debug logging; returns the function that turns it off again."""
    handler = StderrHandler()
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    before = {name: logging.getLogger(name).level for name in DEBUG_LOGGERS}
    for name, level in DEBUG_LOGGERS.items():
        logging.getLogger(name).setLevel(level)

    def restore() -> None:
        root.removeHandler(handler)
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)

    return restore


def quiet_library_logging() -> None:
    """Without --debug, azure-identity's own warnings (one per credential it tried) stay off
    stderr: jitctl's one line says how to sign in. A NullHandler keeps logging's last-resort
    handler from printing them; --debug's handler on the root logger still gets everything."""
    azure = logging.getLogger("azure")
    if not any(isinstance(h, logging.NullHandler) for h in azure.handlers):
        azure.addHandler(logging.NullHandler())
