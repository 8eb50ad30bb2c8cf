"""The broker's web pages in a real browser: Playwright driving Debian's chromium (no browser
download), against a real uvicorn on 127.0.0.1, with the emulator as Azure and as the
identity provider. Sign-in as the approver, see the request, approve, see it active after
the worker's round; the requester finds no approve button on their own request."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jitctl.app import App
from jitctl.broker.lifecycle import State
from jitctl.broker.worker import Worker, WorkerSettings
from jitctl.cli.commands import cli
from tests.brokerpages import ask, build

CHROMIUM = Path("/usr/lib/chromium/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no chromium at /usr/lib/chromium/chromium (apt-get install chromium; .ci/run does)",
)


@pytest.fixture
def served(tmp_path: Path, app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The API and pages on a real uvicorn, on a free port of 127.0.0.1."""
    import uvicorn

    asgi, store = build(tmp_path, app, monkeypatch)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(asgi, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", asgi, store
    finally:
        server.should_exit = True
        thread.join(10)
        store.engine.dispose()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(browser: Any, base: str, name: str) -> Any:
    """A new browser profile signs in through the emulator's picker (a button per user)."""
    page = browser.new_context(java_script_enabled=False).new_page()
    page.goto(f"{base}/pending")
    assert "jitctl emulator: sign in" in page.title()
    page.get_by_role("button", name=re.compile(name)).click()
    page.wait_for_url(f"{base}/pending")
    return page


def test_the_approver_signs_in_approves_and_sees_access_live(
    served: Any, browser: Any, app: App, tmp_path: Path
) -> None:
    base, _, store = served
    enabled = CliRunner().invoke(
        cli, ["enable", "vm-win01", "-g", "rg-jit-demo", "--port", "3389"], obj=app
    )
    assert enabled.exit_code == 0, enabled.output
    made = ask(base, app, reason="patch <b>now</b> <script>document.title='owned'</script>")

    bob = sign_in(browser, base, "Bob Lead")
    row = bob.locator(f"tr.request[data-id='{made['id']}']")
    assert row.locator("td.reason").inner_text() == (
        "patch <b>now</b> <script>document.title='owned'</script>"
    )
    assert bob.title() == "Pending requests · jitctl broker"  # the script did not run
    bob.screenshot(path=str(tmp_path / "pending.png"), full_page=True)
    row.get_by_role("textbox", name="approve comment").fill("ok, INC42")
    row.get_by_role("button", name="Approve").click()
    bob.wait_for_url(f"{base}/requests/{made['id']}")
    assert "Approve: the request is now approved." in bob.inner_text("p.flash")

    done = Worker(
        store, app.gateway(), app.clock, name="w1", settings=WorkerSettings(wait_timeout=30)
    ).run_once()
    assert [(o.request_id, o.state) for o in done.initiated] == [(made["id"], State.ACTIVE)]
    assert store.get(made["id"]).state is State.ACTIVE
    bob.reload()
    assert bob.inner_text(f"tr.request[data-id='{made['id']}'] td.state") == "active"
    trail = bob.locator("table.trail td:nth-child(5)").all_inner_texts()
    assert trail[:2] == ["request", "approve"] and "activate" in trail
    bob.screenshot(path=str(tmp_path / "request.png"), full_page=True)
    bob.goto(f"{base}/history")
    bob.screenshot(path=str(tmp_path / "history.png"), full_page=True)


def test_the_requester_finds_no_approve_button_and_a_forged_post_is_refused(
    served: Any, browser: Any, app: App, tmp_path: Path
) -> None:
    base, _, store = served
    made = ask(base, app)
    alice = sign_in(browser, base, "Alice Engineer")
    assert alice.locator(f"tr.request[data-id='{made['id']}']").count() == 0
    alice.goto(f"{base}/mine")
    alice.screenshot(path=str(tmp_path / "mine.png"), full_page=True)
    mine = alice.locator(f"tr.request[data-id='{made['id']}']")
    assert mine.get_by_role("button", name="Approve").count() == 0
    assert mine.get_by_role("button", name="Cancel").count() == 1
    # her own session and CSRF token, posted by hand: the broker still says no
    csrf = alice.locator("input[name=csrf]").first.get_attribute("value")
    answer = alice.request.post(
        f"{base}/requests/{made['id']}/approve", form={"csrf": csrf, "text": "self"}
    )
    assert answer.status == 403 and "(self_approval)" in answer.text()
    forged = alice.request.post(f"{base}/requests/{made['id']}/cancel", form={"text": "x"})
    assert forged.status == 403 and "anti-forgery" in forged.text()
    assert store.get(made["id"]).state is State.PENDING
