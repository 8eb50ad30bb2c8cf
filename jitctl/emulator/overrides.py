"""`--set NAME=VALUE` for `emulator serve` and `emulator reset`: change one emulator setting
(jitctl.emulator.Settings) from the command line, checked against the setting's type and, for
the settings that name a behaviour, its choices."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from typing import Any

from jitctl.emulator.settings import Settings

CHOICES: dict[str, tuple[str, ...]] = {
    "deny_priority_strategy": ("below-free", "above-allow"),
    "allow_priority_strategy": ("next-free", "scatter"),
    "defender_plan": ("P2", "P1", "off"),
    "initiate_fate": ("apply", "never", "fail"),
    "source_match": ("containment", "verbatim"),
}
TRUE, FALSE = ("on", "true", "yes", "1"), ("off", "false", "no", "0")
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}  # of the settings in seconds (the float ones)


class BadSetting(ValueError):
    """A --set that names no setting or gives a value it cannot take (the message says which)."""


def _fields() -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(Settings)}


def _caller_address(text: str) -> str:
    """An IPv4 address ARM could see a caller at, or "peer" (the TCP client's address)."""
    if text.lower() == "peer":
        return "peer"
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise BadSetting(f"caller_address is an IPv4 address or peer, not {text!r}") from None


def seconds(text: str, name: str = "latency") -> float:
    """Seconds from 0.1, 100ms, 2s or 1m; BadSetting naming `name` otherwise (or negative)."""
    raw = text.strip().lower()
    unit = next((u for u in ("ms", "s", "m") if raw.endswith(u)), "")
    try:
        value = float(raw[: len(raw) - len(unit)] if unit else raw) * UNITS.get(unit, 1.0)
    except ValueError:
        raise BadSetting(f"{name} is seconds (0.1, 100ms, 2s or 1m), not {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise BadSetting(f"{name} is seconds, not negative, not {text!r}")
    return value


def _value(name: str, kind: str, text: str) -> Any:
    if name == "caller_address":
        return _caller_address(text)
    if name in CHOICES:
        for choice in CHOICES[name]:
            if text.lower() == choice.lower():
                return choice
        raise BadSetting(f"{name} is one of {', '.join(CHOICES[name])}, not {text!r}")
    if kind == "bool":
        if text.lower() in TRUE + FALSE:
            return text.lower() in TRUE
        raise BadSetting(f"{name} is on or off, not {text!r}")
    if kind.startswith("list"):
        return [item.strip() for item in text.split(",") if item.strip()]
    if kind == "float":
        return seconds(text, name)
    if kind != "int":
        return text
    try:
        value = int(text)
    except ValueError:
        raise BadSetting(f"{name} is a number, not {text!r}") from None
    if value < 0:
        raise BadSetting(f"{name} is not negative, not {text!r}")
    return value


def parse(pairs: Sequence[str]) -> dict[str, Any]:
    """{setting: value} from NAME=VALUE texts (lists comma-separated; on/off for switches)."""
    known = _fields()
    out: dict[str, Any] = {}
    for pair in pairs:
        name, eq, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not eq:
            raise BadSetting(f"{pair!r} is not NAME=VALUE")
        if name not in known:
            raise BadSetting(f"no emulator setting is named {name!r}; settings: {', '.join(known)}")
        out[name] = _value(name, str(known[name].type), text.strip())
    return out
