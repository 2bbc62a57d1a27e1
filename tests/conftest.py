"""Shared pytest fixtures for the whole authwatch test suite.

Keep this file an index of small, documented fixtures grouped in sections.
Add new sections below the existing ones rather than growing one fixture.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from shared.collect import MicrosoftEndpoints
from simulator import Simulator
from simulator.azurite import Azurite

# ---------------------------------------------------------------------------
# Storage: Azurite (default) or an external storage account
# ---------------------------------------------------------------------------
# Set AUTHWATCH_TEST_STORAGE_CONNECTION_STRING to run storage tests against a
# real account (or an Azurite you run yourself); then no Azurite is started
# unless a test explicitly asks for the `azurite` fixture (e.g. to stop it).
EXTERNAL_STORAGE_ENV = "AUTHWATCH_TEST_STORAGE_CONNECTION_STRING"


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One Azurite for the whole session on free ports; always stopped and wiped at the end.

    Tests may stop()/start() it (same endpoints and data after the restart);
    `storage_connection_string` restarts it if a test left it stopped.
    """
    with Azurite() as az:
        yield az


@pytest.fixture
def storage_connection_string(request: pytest.FixtureRequest) -> str:
    """Connection string of the storage account under test (external or Azurite)."""
    external = os.environ.get(EXTERNAL_STORAGE_ENV)
    if external:
        return external
    az: Azurite = request.getfixturevalue("azurite")  # started lazily, only if needed
    az.start()  # no-op when running; heals a previous test that stopped it
    return az.connection_string


# ---------------------------------------------------------------------------
# Microsoft: the simulator over real HTTPS
# ---------------------------------------------------------------------------


def endpoints_for(sim: Simulator) -> MicrosoftEndpoints:
    """Point every Microsoft endpoint at the simulator and trust its throw-away CA."""
    return MicrosoftEndpoints(authority=sim.url, graph=sim.graph_url, exchange=sim.url, ca_bundle=sim.ca_path)


@pytest.fixture
def simulator_for() -> Iterator:
    """Start a simulator for a given scenario; every one started is stopped at the end of the test."""
    started: list[Simulator] = []

    def start(scenario: dict) -> Simulator:
        sim = Simulator(scenario).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


# ---------------------------------------------------------------------------
# A fleet (registry, monitor, queues) over the test storage and the simulator
# ---------------------------------------------------------------------------


def fleet_for(connection: str, sim: Simulator, env: dict[str, str], evaluations: str | None = None) -> Any:
    """The worker path's fleet over `connection` and `sim`, with queues of its own (the alerts queue always, the
    evaluations queue unless `evaluations` names one), so a test sees only what it queued."""
    import uuid

    from shared.cycle.fleet import Fleet
    from shared.cycle.service import Monitor
    from shared.storage.queues import JsonQueue
    from shared.storage.tenant_store import TenantStore
    from shared.tenants.registry import TenantRegistry

    return Fleet(TenantRegistry.from_connection_string(connection),
                 Monitor(TenantStore.from_connection_string(connection),
                         JsonQueue.from_connection_string(connection, f"alerts{uuid.uuid4().hex[:8]}"),
                         endpoints_for(sim)),
                 JsonQueue.from_connection_string(connection, evaluations or f"evaluations{uuid.uuid4().hex[:8]}"),
                 env=env)
