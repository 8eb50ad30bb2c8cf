from __future__ import annotations

import io
import itertools
import re
import threading
import time

from jitctl.cli.progress import FRAMES, INTERVAL, Spinner


class Tty(io.StringIO):
    """A fake terminal: records what was written, from any thread."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.writes: list[tuple[float, str]] = []

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        with self.lock:
            self.writes.append((time.monotonic(), s))
            return super().write(s)


class Waiting:
    ok = False

    def problem(self) -> str:
        return "port 3389 from 203.0.113.7 is denied by rule Deny\x1b[2J (priority 4096)"


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def frames(out: Tty) -> list[str]:
    """The lines the spinner drew, without rich's cursor codes (each redraw erases the line)."""
    parts = out.getvalue().split("\r\x1b[2K")
    return [s for s in (ANSI.sub("", p).strip("\r\n") for p in parts) if s]


def test_spinner_shows_label_elapsed_and_what_is_missing_then_clears():
    now = [100.0]
    out = Tty()
    with Spinner(
        "waiting for access to vm1", out, interval=60, monotonic=lambda: now[0], width=200
    ) as spin:
        now[0] = 112.7
        spin.update(12.7, Waiting())
    shown = frames(out)
    assert shown[0][2:] == "waiting for access to vm1 (0s)"
    assert shown[-1][2:] == (
        "waiting for access to vm1 (12s): still: port 3389 from 203.0.113.7 is denied "
        "by rule Deny\\x1b[2J (priority 4096)"
    )
    assert all(f[0] in FRAMES for f in shown) and len({f[0] for f in shown}) > 1  # it turns
    assert out.getvalue().startswith("\x1b[?25l")  # cursor hidden while it spins
    assert out.getvalue().endswith("\x1b[?25h\r\x1b[1A\x1b[2K")  # shown again, line erased
    assert "\x1b[2J" not in out.getvalue()  # Azure's text is escaped


def test_spinner_redraws_at_least_four_times_a_second_while_the_service_sleeps():
    assert INTERVAL <= 0.25
    out = Tty()
    with Spinner("waiting", out, interval=INTERVAL):
        time.sleep(1.2)  # one long poll interval: nobody calls update()
    times = [t for t, s in out.writes if "waiting" in s]
    assert len(times) >= 5
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < 0.25 + 0.1  # rich's own refresh thread, at 1/INTERVAL a second


def test_spinner_keeps_to_one_line_of_the_terminal():
    out = Tty()
    with Spinner("waiting for access to a-vm-with-a-long-name", out, interval=60, width=30) as s:
        s.update(1, Waiting())
    shown = frames(out)
    assert all(len(f) <= 30 for f in shown)
    assert shown[-1].endswith("…")


def test_warnings_while_it_spins_are_printed_above_the_line():
    out = Tty()
    with Spinner("waiting", out, interval=60, width=80) as spin:
        spin.say("Requested port 3389 for 203.0.113.7 until 12:00 UTC.")
    text = ANSI.sub("", out.getvalue())
    assert "Requested port 3389 for 203.0.113.7 until 12:00 UTC.\n" in text
    assert "(0s)Requested" not in text


def test_spinner_silent_off_a_terminal():
    out = io.StringIO()
    with Spinner("x", out, interval=0.01) as spin:
        spin.update(3, Waiting())
        spin.say("note")
        time.sleep(0.05)
    assert out.getvalue() == ""  # say() is for the terminal; warn() writes it otherwise
    assert spin._live is None


def test_the_demo_shows_progress_while_it_waits():
    from contextlib import contextmanager

    from jitctl.app import App
    from jitctl.demo import run_demo
    from jitctl.emulator import Backend, FakeClock, Settings
    from jitctl.emulator.worlds import demo

    backend = Backend(settings=Settings(propagation_delay=3), clock=FakeClock())
    demo(backend)
    seen: list[tuple[str, float, bool]] = []

    @contextmanager
    def progress(label: str):
        yield lambda elapsed, result: seen.append((label, elapsed, result.ok))

    steps = list(run_demo(App.for_backend(backend), "203.0.113.7", "", progress=progress))
    assert steps[-2].result.ok
    labels = [label for label, _, _ in seen]
    assert labels[0] == "waiting for vm-win01 to let 203.0.113.7 in on 3389"
    assert labels[-1] == "waiting for vm-lnx01 to let 203.0.113.7 in on 22"
    first = [(e, ok) for label, e, ok in seen if label == labels[0]]
    assert first[0] == (0.0, False) and first[-1][1] is True and first[-1][0] >= 3


def test_a_spinner_says_its_intro_first_and_only_on_a_terminal():
    out = Tty()
    with Spinner("waiting", out, interval=60, width=80, intro="Requested port 3389 on vm1"):
        pass
    assert ANSI.sub("", out.getvalue()).startswith("Requested port 3389 on vm1\n")
    off = io.StringIO()
    with Spinner("waiting", off, intro="Requested port 3389 on vm1"):
        pass
    assert off.getvalue() == ""


def test_request_wait_on_a_terminal_says_what_was_requested_before_it_waits(
    run, backend, monkeypatch
):
    import jitctl.cli.progress

    backend.settings.propagation_delay = 30
    run("enable", "vm-win01", "-g", "rg-jit-demo", "--port", "3389", "--port", "22")
    monkeypatch.setattr(jitctl.cli.progress, "_isatty", lambda stream: True)  # stderr a terminal
    args = ["request", "vm-win01", "-g", "rg-jit-demo", "--source-ip", "203.0.113.7", "--wait"]
    r = run(*args, "--port", "3389", "--port", "22", "--duration", "1h")
    assert r.exit_code == 0, r.stderr
    assert ANSI.sub("", r.stderr).startswith(
        "Requested ports 3389, 22 on vm-win01 for 203.0.113.7 until 10:00 UTC; "
        "waiting for the allow rule...\n"
    )
    r = run("-o", "json", *args)  # the document says it
    assert r.exit_code == 0 and "Requested" not in r.stderr
    r = run("--only-show-errors", *args)
    assert r.exit_code == 0 and "Requested" not in r.stderr
