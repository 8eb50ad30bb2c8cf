"""EMULATOR.md says true things about the settings: each setting of jitctl.emulator.Settings has
a row in the settings table, and every name the document gives as a setting is one."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from jitctl.emulator.settings import Settings

DOC = (Path(__file__).resolve().parents[1] / "EMULATOR.md").read_text(encoding="utf-8")
NAMES = {f.name for f in dataclasses.fields(Settings)}


def section(title: str) -> str:
    start = DOC.index(f"## {title}")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end != -1 else len(DOC)]


def test_every_setting_has_a_row_in_the_table():
    rows = [line for line in section("Settings").splitlines() if line.startswith("| `")]
    named = {n for row in rows for n in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    assert NAMES - named == set()
    assert named - NAMES == set()


def test_the_departures_name_only_real_settings():
    text = section("Departures from Azure, and why")
    named = {n for n in re.findall(r"`([a-z]+(?:_[a-z]+)+)`", text)}
    assert named and named - NAMES == set()
    guessed = text.split("Modelled by a guess", 1)[1]
    for name in ("caller_address", "port_numbers_as_sent", "deny_priority_strategy"):
        assert f"`{name}`" in guessed
