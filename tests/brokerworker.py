"""Fixtures of the worker's tests (test_broker_worker*.py, test_broker_revoke_activating.py):
a migrated SQLite store on the test's clock, and vm-win01 under a JIT policy for 3389."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jitctl.broker.store import Store, open_engine
from jitctl.emulator import FakeClock
from tests.support import RG


@pytest.fixture
def store(tmp_path: Any, clock: FakeClock) -> Iterator[Store]:
    s = Store(open_engine(f"sqlite:///{tmp_path / 'broker.sqlite'}"), clock)
    s.migrate()
    yield s
    s.engine.dispose()


@pytest.fixture
def enabled(run: Callable[..., Any]) -> None:
    assert run("enable", "vm-win01", "-g", RG, "--port", "3389").exit_code == 0
