"""--debug logging: HTTP requests and responses on stderr, with secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable

# What is redacted: only what looks like a credential, never ordinary words ("the bearer token
# is not a JWT" stays readable). Azure's own HTTP logging already hides header values.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_SECRETS = [
    (_JWT, "<redacted-jwt>"),
    # a header or a field that holds a credential, whatever its value looks like (but a
    # placeholder such as <token> in a hint)
    (
        re.compile(
            r'(?i)("?(?:authorization|access_token|refresh_token|id_token|client_secret|'
            r'x-identity-header|identity_header|password)"?\s*[:=]\s*["\']?)'
            r"(?:bearer\s+)?(?!<|bearer\b)[^\"'\s,}]+"
        ),
        r"\1<redacted>",
    ),
    # "Bearer <credential>": a credential is long; a word after "bearer" is not one
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]{16,}=*"), r"\1<redacted>"),
]
# A long run of base64url or secret characters (Entra client secrets have "~")
_RUN = re.compile(r"[A-Za-z0-9_~+/=-]{32,}")
_WORDISH = re.compile(r"[A-Za-z]*[0-9]*|[0-9]+[A-Za-z]*")


def _opaque(run: str) -> bool:
    """Random-looking: a long stretch mixing upper and lower case and digits, and not a word
    with a number (a JIT rule's MicrosoftDefenderForCloud-JITRule_<number>_<HEX>, a VM named
    MyVeryLongVmName001, a resource id's parts, a GUID or a hex hash are left alone)."""
    return any(
        len(part) >= 16
        and not _WORDISH.fullmatch(part)
        and any(c.isupper() for c in part)
        and any(c.islower() for c in part)
        and any(c.isdigit() for c in part)
        for part in re.split(r"[-_/+=~]", run)
    )


def redact(text: str) -> str:
    for pattern, repl in _SECRETS:
        text = pattern.sub(repl, text)
    return _RUN.sub(lambda m: "<redacted>" if _opaque(m.group(0)) else m.group(0), text)


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
