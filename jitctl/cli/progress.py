"""A spinner on stderr while jitctl waits: what it waits for and the elapsed time.

It redraws from a background thread at least 4 times a second, whatever the poll interval (the
service may sleep 5 s between polls), and only on a terminal: nothing at all when stderr is a
pipe or a file. Waiting text that comes from Azure (rule and NSG names) is shown escaped.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from jitctl.textsafe import printable

FRAMES = "|/-\\"
INTERVAL = 0.2  # seconds between redraws: 5 a second


class Spinner:
    """`with Spinner("waiting for access to vm1") as spin: service(..., progress=spin.update)`."""

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        interval: float = INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
        width: int | None = None,
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.active = _isatty(self.stream)
        self.interval = interval
        self.monotonic = monotonic
        self.width = width
        self.detail = ""
        self.count = 0  # redraws so far
        self._start = monotonic()
        self._shown = 0  # length of the line on screen
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self, elapsed: float = 0.0, result: Any = None) -> None:
        """Called by the service after each poll: note what is still missing, redraw now."""
        problem = getattr(result, "problem", None)
        if callable(problem) and not getattr(result, "ok", False):
            self.detail = f"still: {problem()}"
        self.tick()

    def tick(self) -> None:
        if not self.active:
            return
        with self._lock:
            frame = FRAMES[self.count % len(FRAMES)]
            self.count += 1
            seconds = int(self.monotonic() - self._start)
            line = f"{frame} {self.label} ({seconds}s)"
            if self.detail:
                line += f": {printable(self.detail)}"
            width = self.width or shutil.get_terminal_size((80, 24)).columns
            room = max(10, width - 1)  # one line: a wrapped line cannot be redrawn
            if len(line) > room:
                line = line[: room - 1] + "…"
            self.stream.write("\r" + line + " " * max(0, self._shown - len(line)))
            self.stream.flush()
            self._shown = len(line)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def __enter__(self) -> Spinner:
        if self.active:
            self.tick()
            self._thread = threading.Thread(target=self._run, name="jitctl-spinner", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.active and self.count:
            with self._lock:
                self.stream.write("\r" + " " * self._shown + "\r")
                self.stream.flush()


@contextmanager
def spinning(label: str) -> Iterator[Callable[[float, Any], None]]:
    """A spinner as a context that yields its update function (the demo's progress hook)."""
    with Spinner(label) as spin:
        yield spin.update


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False
