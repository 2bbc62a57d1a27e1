"""Fixtures for tests that talk to the simulator over real HTTPS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.collect import MicrosoftEndpoints
from simulator import Simulator


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
