"""The emulator shares no decision logic with the client it tests (moto's rule), and its own
reading of durations and sources behaves as the JIT service's."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest

from jitctl.emulator.checks import duration, source_covered

EMULATOR = Path(__file__).resolve().parents[1] / "jitctl" / "emulator"
# The client's decisions: what a source covers, what a duration means, how a policy merges.
FORBIDDEN = ("jitctl.nsgeval", "jitctl.parsing", "jitctl.policymerge")


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names]
    return found


def test_no_emulator_module_imports_the_clients_decision_logic():
    files = sorted(EMULATOR.glob("*.py"))
    assert len(files) > 5
    bad = [
        f"{f.name}: {name}"
        for f in files
        for name in _imports(f)
        if any(name == m or name.startswith(m + ".") for m in FORBIDDEN)
    ]
    assert bad == []


def test_the_import_check_sees_a_forbidden_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from jitctl import nsgeval\nfrom jitctl.parsing import wide_open\n")
    assert "jitctl.nsgeval" in _imports(probe)
    assert "jitctl.parsing" in _imports(probe)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT3H", timedelta(hours=3)),
        ("pt1h30m", timedelta(minutes=90)),
        ("P1D", timedelta(days=1)),
        ("PT90S", timedelta(seconds=90)),
        ("P1DT2H", timedelta(hours=26)),
    ],
)
def test_duration_reads_iso_8601(text, expected):
    assert duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "3h", "PT3", "P1DT", None, 3, "PT99999999999H"])
def test_duration_refuses_what_is_not_iso_8601(text):
    with pytest.raises(ValueError):
        duration(text)


@pytest.mark.parametrize(
    ("source", "allowed", "covered"),
    [
        ("203.0.113.7", ["*"], True),
        ("203.0.113.7", ["0.0.0.0/0"], True),
        ("203.0.113.7", ["203.0.113.0/24"], True),
        ("203.0.113.0/25", ["203.0.113.0/24"], True),
        ("203.0.112.0/23", ["203.0.113.0/24"], False),
        ("198.51.100.1", ["203.0.113.0/24", "198.51.100.0/24"], True),
        ("203.0.113.7", ["Internet"], True),
        ("10.1.2.3", ["Internet"], False),
        ("*", ["203.0.113.0/24"], False),
        ("*", ["Internet"], False),
        ("Internet", ["Internet"], True),
        ("not-an-ip", ["203.0.113.0/24"], False),
    ],
)
def test_source_covered_by_containment(source, allowed, covered):
    assert source_covered(source, allowed) is covered
