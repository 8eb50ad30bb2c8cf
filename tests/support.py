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
