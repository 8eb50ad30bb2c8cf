"""The CA file jitctl's outbound HTTPS trusts, one rule for every client it makes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl


def ca_bundle(environ: Mapping[str, str] | None = None) -> str | None:
    """As azure-core's requests does: REQUESTS_CA_BUNDLE, else SSL_CERT_FILE, else None (the
    system's, certifi's, store). httpx reads SSL_CERT_FILE alone, so its clients are given
    this explicitly; the broker's webhooks and SMTP use it too."""
    environ = os.environ if environ is None else environ
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def httpx_verify() -> ssl.SSLContext | bool:
    """httpx's `verify` for that CA file (a context: httpx deprecates a path), else True."""
    path = ca_bundle()
    if path is None:
        return True
    import ssl

    return ssl.create_default_context(cafile=path)
