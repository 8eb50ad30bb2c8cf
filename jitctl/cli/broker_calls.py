"""The broker's API as the CLI calls it: a client with the URL and token the options give,
and --wait's polling until access is live."""

from __future__ import annotations

import os
from typing import Any

from jitctl.app import App

STEPS = (1.0, 2.0, 3.0, 5.0)  # seconds between looks while --wait waits


def client(app: App, url: str | None) -> Any:
    from jitctl.broker.client import BrokerClient
    from jitctl.broker.client_auth import broker_token
    from jitctl.errors import BadInput

    if not url:
        raise BadInput(
            "No broker given.", "Pass --broker URL or set JITCTL_BROKER_URL to the broker's URL."
        )
    audience = os.environ.get("JITCTL_BROKER_AUDIENCE", "")
    return BrokerClient(url, lambda: broker_token(app, audience), app.broker_http)


def wait_active(app: App, api: Any, doc: dict[str, Any], limit: float) -> dict[str, Any]:
    """Until the broker says active (Azure took the initiate and verify found access live),
    or a state that will never get there."""
    from jitctl.cli.output import warn
    from jitctl.errors import NotEffective, Refused, TimedOut

    waited, step = 0.0, 0
    said = False
    while doc["state"] in ("pending", "approved", "activating"):
        if doc["state"] == "pending" and not said:
            warn(app, f"jitctl: waiting for approval of request {doc['id']}")
            said = True
        if waited >= limit:
            raise TimedOut(
                f"Request {doc['id']} is still {doc['state']}.",
                f"See where it is with: jitctl broker show {doc['id']}",
            )
        pause = STEPS[min(step, len(STEPS) - 1)]
        app.clock.sleep(pause)
        waited, step = waited + pause, step + 1
        doc = api.call("GET", f"/requests/{doc['id']}")
    if doc["state"] == "active":
        return doc
    if doc["state"] == "failed":
        raise NotEffective(
            f"Request {doc['id']} failed: Azure refused the initiate or access never went live.",
            f"The log has Azure's answer: jitctl broker show {doc['id']}",
        )
    raise Refused(f"Request {doc['id']} is {doc['state']}.", "Ask again, or ask an approver why.")
