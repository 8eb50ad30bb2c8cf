"""Shared test data: the official examples and the demo world's names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jitctl.emulator.worlds import DEMO_GROUP, DEMO_SUBSCRIPTION
from jitctl.ids import VmRef

SPECS = Path(__file__).resolve().parents[1].parent / "shared" / "azure-specs"
SUB = DEMO_SUBSCRIPTION
RG = DEMO_GROUP


def spec(path: str) -> dict[str, Any]:
    return json.loads((SPECS / path).read_text(encoding="utf-8"))


def vm_ref(name: str) -> VmRef:
    return VmRef(SUB, RG, name)
