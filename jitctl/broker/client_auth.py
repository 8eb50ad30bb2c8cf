"""The CLI's token for the broker.

This version honours JITCTL_BROKER_TOKEN only (a bearer token a pipeline already has); the
identity work replaces it with the emulator's users (`--as UPN`) and azure-identity's
credential for `api://<audience>/.default`, with the same signature.
"""

from __future__ import annotations

import os
from typing import Any

from jitctl.broker.errors import Unauthenticated


def broker_token(app: Any, audience: str) -> str:
    token = os.environ.get("JITCTL_BROKER_TOKEN", "").strip()
    if not token:
        raise Unauthenticated(
            "No token for the broker.",
            "Set JITCTL_BROKER_TOKEN to a bearer token the broker accepts.",
        )
    return token
