"""A spinner on stderr while jitctl waits: what it waits for and the elapsed time.

Drawn by rich's `Live` display, which redraws from its own thread at least 4 times a second
whatever the poll interval (the service may sleep 5 s between polls), hides the cursor meanwhile
and erases the line at the end. Only on a terminal: nothing at all when stderr is a pipe or a
file (rich is not even imported then). Waiting text that comes from Azure (rule and NSG names) is
shown escaped, as plain `Text`, never read as markup.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timezone
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
        intro: str = "",
    ) -> None:
        self.label = label
        self.intro = intro  # a line said before the spinner starts (terminal only, as it)
        self.stream = stream or sys.stderr
        self.active = _isatty(self.stream)
        self.interval = interval
        self.monotonic = monotonic
        self.width = width
        self.detail = ""
        self.count = 0  # frames drawn so far
        self._start = monotonic()
        self._live: Any = None  # rich.live.Live while it runs

    def update(self, elapsed: float = 0.0, result: Any = None) -> None:
        """Called by the service after each poll: note what is still missing, redraw now."""
        problem = getattr(result, "problem", None)
        if callable(problem) and not getattr(result, "ok", False):
            self.detail = f"still: {problem()}"
        if self._live is not None:
            self._live.refresh()

    def say(self, message: str, style: str = "") -> None:
        """A line (already escaped) printed above the spinner's line, which goes on below it."""
        if self._live is not None:
            from rich.text import Text

            self._live.console.print(Text(message, style=style), soft_wrap=True)

    def line(self) -> str:
        """The next frame's text (escaped); rich cuts it to one line of the terminal."""
        frame = FRAMES[self.count % len(FRAMES)]
        self.count += 1
        seconds = int(self.monotonic() - self._start)
        text = f"{frame} {self.label} ({seconds}s)"
        return text + (f": {printable(self.detail)}" if self.detail else "")

    def _frame(self) -> Any:
        from rich.text import Text

        return Text(self.line(), no_wrap=True, overflow="ellipsis")

    def __enter__(self) -> Spinner:
        if self.active:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            console = Console(
                file=self.stream,
                width=self.width,
                force_terminal=True,
                highlight=False,  # colors for say()'s warnings only; rich honors NO_COLOR
            )
            self._live = Live(
                get_renderable=self._frame,
                console=console,
                refresh_per_second=1 / self.interval,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            if self.intro:
                console.print(Text(printable(self.intro)), soft_wrap=True)
            self._live.start(refresh=True)
            _SHOWING.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            _SHOWING.remove(self)
            self._live.stop()
            self._live = None


def requested_line(granted: Any) -> str:
    """What `request --wait` asked Azure for, said before it waits (a RequestResult)."""
    numbers = ", ".join(str(p.number) for p in granted.ports)
    sources = ", ".join(dict.fromkeys(p.source for p in granted.ports))
    until = max(p.end_time for p in granted.ports).astimezone(timezone.utc)
    return (
        f"Requested port{'s' if len(granted.ports) > 1 else ''} {numbers} on {granted.vm_name} "
        f"for {sources} until {until:%H:%M} UTC; waiting for the allow rule..."
    )


_SHOWING: list[Spinner] = []  # the spinner on screen now, if any


def showing() -> Spinner | None:
    """The spinner on the terminal now: warnings go above its line rather than into it."""
    return _SHOWING[-1] if _SHOWING else None


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
