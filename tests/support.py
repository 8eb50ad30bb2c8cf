"""Shared test data: the official examples and the demo world's names."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jitctl.emulator.seeder import DEMO_GROUP, DEMO_SUBSCRIPTION
from jitctl.ids import VmRef

SPECS = Path(__file__).resolve().parent / "azure-specs"
SUB = DEMO_SUBSCRIPTION
RG = DEMO_GROUP


def spec(path: str) -> dict[str, Any]:
    return json.loads((SPECS / path).read_text(encoding="utf-8"))


def vm_ref(name: str) -> VmRef:
    return VmRef(SUB, RG, name)


@dataclass
class RecordingRunner:
    """A jitctl.launch.Runner that finds every program and only records what it would run."""

    platform: str = "linux"
    ran: list[list[str]] = field(default_factory=list)

    def which(self, name: str) -> str:
        return f"/usr/bin/{name}"

    def start(self, args: list[str]) -> None:
        self.ran.append(args)

    def run(self, args: list[str]) -> int:
        self.ran.append(args)
        return 0


def error_parts(stderr: str) -> tuple[str, str]:
    """jitctl's error on stderr, checked for its shape: `jitctl: error: MESSAGE`, then, when
    there is one, `Hint: HINT` on a line of its own; nothing else. Returns (MESSAGE, HINT)."""
    lines = stderr.splitlines()
    assert stderr.endswith("\n") and 1 <= len(lines) <= 2, stderr
    assert lines[0].startswith("jitctl: error: "), stderr
    assert len(lines) == 1 or lines[1].startswith("Hint: "), stderr
    hint = lines[1].removeprefix("Hint: ") if len(lines) == 2 else ""
    return lines[0].removeprefix("jitctl: error: "), hint


def one_error(stderr: str) -> bool:
    """One error, as error_parts reads it (its message line, then its hint line)."""
    error_parts(stderr)
    return True
