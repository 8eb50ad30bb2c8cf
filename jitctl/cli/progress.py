"""A spinner with elapsed time on a terminal (stderr); silent when stderr is not a terminal."""

from __future__ import annotations

import sys
from typing import Any, TextIO

FRAMES = "|/-\\"


class Spinner:
    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.active = self.stream.isatty()
        self.count = 0

    def update(self, elapsed: float, result: Any = None) -> None:
        if not self.active:
            return
        frame = FRAMES[self.count % len(FRAMES)]
        self.count += 1
        self.stream.write(f"\r{frame} {self.label}... {int(elapsed)}s ")
        self.stream.flush()

    def __enter__(self) -> Spinner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active and self.count:
            self.stream.write("\r" + " " * (len(self.label) + 16) + "\r")
            self.stream.flush()
