from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result

from jitctl.app import App
from jitctl.cli.commands import cli
from jitctl.emulator import Backend, FakeClock, Settings
from jitctl.emulator.worlds import WORLDS

# the worker's fixtures (a store on the test's clock, vm-win01 enabled); a test module's own
# fixture of the same name wins
pytest_plugins = ["tests.brokerworker"]


@pytest.fixture(autouse=True)
def no_az_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The caller's settings stay out of tests: jitctl's own (JITCTL_*, and its config file),
    Azure's and az's (AZURE_*: credentials, output format, default group, az config), a
    managed identity's (IDENTITY_*, MSI_*) and the terminal's (COLUMNS, NO_COLOR)."""
    import os

    prefixes = ("JITCTL_", "AZURE_", "IDENTITY_", "MSI_")
    for name in [n for n in os.environ if n.startswith(prefixes)] + ["COLUMNS", "NO_COLOR"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path / "azure-config"))
    # nor the user's jitctl config file (~/.config/jitctl/config.toml): an empty one instead
    empty = tmp_path / "jitctl-config.toml"
    empty.write_text("")
    monkeypatch.setenv("JITCTL_CONFIG", str(empty))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world() -> str:
    return "demo"


@pytest.fixture
def backend(clock: FakeClock, world: str) -> Backend:
    b = Backend(settings=Settings(propagation_delay=0), clock=clock)
    WORLDS[world](b)
    return b


@pytest.fixture
def app(backend: Backend) -> App:
    return App.for_backend(backend)


@pytest.fixture
def gw(app: App) -> Any:
    return app.gateway()


@pytest.fixture
def run(app: App) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)

    return invoke


@pytest.fixture
def calls(backend: Backend) -> Callable[[], list[str]]:
    """ARM calls made since the last call of this function: 'METHOD path-tail'."""
    seen = {"n": len(backend.log)}

    def since() -> list[str]:
        new = backend.log[seen["n"] :]
        seen["n"] = len(backend.log)
        return [f"{e.method} {e.path.rsplit('/providers/', 1)[-1]}" for e in new]

    return since


@pytest.fixture(scope="session")
def postgres_server() -> Any:
    """A throwaway PostgreSQL for the whole session (tests/pgserver.py), or a skip that says
    what is missing."""
    from tests.pgserver import pg_bin, throwaway_postgres

    if pg_bin() is None:
        pytest.skip("PostgreSQL binaries missing: apt-get install postgresql (.ci/run does)")
    with throwaway_postgres() as url:
        yield url
