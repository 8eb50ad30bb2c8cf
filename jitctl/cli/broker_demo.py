"""`jitctl demo --broker`: the approval flow's steps painted as they complete, and its verdict."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from jitctl.app import App


def step_text(step: Any, now: datetime) -> str:
    """A step's result in the broker commands' own shapes (a request as `broker show`, the
    log as `broker log`), else as the demo shows it."""
    from jitctl.cli.broker_tables import events_table, log_check, request_text
    from jitctl.cli.render import emit_step
    from jitctl.cli.shapes import table

    body = step.result
    if isinstance(body, dict) and "head_hash" in body:
        text = log_check(body)
    elif isinstance(body, dict) and "state" in body:
        text = request_text(body, now)
    elif isinstance(body, list) and body and "action" in body[0]:
        text = events_table(body)
    elif isinstance(body, list) and body and "detail" in body[0]:
        text = table(
            [[d["id"][:8], d["state"], d["detail"]] for d in body], ["ID", "STATE", "WHAT"]
        )
    elif isinstance(body, str):
        text = body.rstrip()
    else:
        return emit_step(step, now)
    head = f"== {step.title}  [{step.arm_calls} ARM calls, {step.seconds:.1f}s]"
    note = f"   {step.note}\n" if step.note else ""
    return f"{head}\n{note}{text}\n"


def verified(steps: list[Any]) -> bool:
    """Exit 0's condition: the broker says active, verify lets the source in and no one
    else, and the audit log's chain is intact."""

    def result(start: str) -> Any:
        return next(s.result for s in steps if s.title.startswith(start))

    shown = next(s.result for s in steps if s.title.endswith("sees it active"))
    allowed = result("Verify from the request's source")
    denied = result("Verify from another address")
    chain = result("The audit log's hash chain")
    return bool(shown["state"] == "active" and allowed.ok and not denied.effective and chain["ok"])


def run(app: App, source: str, fast: bool) -> None:
    """The demo on a fresh world; exit 0 only when access went live and was verified."""
    from jitctl.brokerdemo import run_broker_demo
    from jitctl.cli.output import emit
    from jitctl.cli.progress import spinning
    from jitctl.emulator.backend import Backend
    from jitctl.emulator.settings import Settings
    from jitctl.emulator.worlds import demo as seed
    from jitctl.errors import NotEffective

    backend = Backend(settings=Settings(propagation_delay=0.0 if fast else 3.0), clock=app.clock)
    seed(backend)
    demo_app = App.for_backend(backend)
    streaming = app.output == "table" and not app.query
    steps = []
    for step in run_broker_demo(demo_app, source, progress=spinning):
        steps.append(step)
        if streaming:
            emit(app, step, functools.partial(step_text, step, demo_app.clock.now()))
    ok = verified(steps)
    shown = next(s.result for s in steps if s.title.endswith("sees it active"))
    chain = steps[-1].result
    if not streaming:
        emit(app, {"steps": steps, "arm_calls": demo_app.arm_calls(), "ok": ok})
    else:
        verdict = (
            f"Verdict: {shown['requester']} asked, {shown['approved_by'][0]} approved, the "
            f"broker initiated; {source} reaches vm-win01:3389 and 198.51.100.99 does not; "
            f"the audit log's {chain['events']} events are intact."
            if ok
            else "Verdict: the broker demo did not reach the expected state."
        )
        emit(app, None, lambda: verdict)
    if not ok:
        raise NotEffective(
            "The broker demo's final verification failed.", "Run with --debug and report it."
        )
