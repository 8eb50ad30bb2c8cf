"""Text from Azure or from another user, made safe for a terminal or a line-oriented file.

A justification, a requestor or an Azure message may hold ESC/OSC sequences or CR/LF that would
rewrite a terminal's screen or title, or add lines to a file. Table output and stderr messages
show such characters escaped; JSON keeps the exact value (json.dumps escapes them itself).
"""

from __future__ import annotations

import re

# C0 controls (TAB included: it would break column alignment), DEL, C1 controls, and the
# Unicode bidirectional overrides and isolates that can reorder what a reader sees.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """`text` with every control character shown as an escape (\\x1b, \\n, \\u202e...)."""
    return _UNSAFE.sub(_escape, str(text))


def has_unsafe(text: str) -> bool:
    """Whether `text` holds a character that `printable` would escape."""
    return _UNSAFE.search(text) is not None
