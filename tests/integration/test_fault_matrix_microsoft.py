"""Fault matrix, Microsoft side: one tenant of a small fleet is faulted (throttling, 5xx, slow or malformed answers,
a page that fails halfway, token errors, 401/403) while the fleet runs through the real worker path (`run_cycle`
over real HTTPS to the simulator, real Azurite). Each row asserts what a user would notice:

(a) no alert lost: a neighbour that re-enables SMTP AUTH during the faulted cycle is alerted on in that cycle;
(b) none duplicated: the same cycle delivered again raises nothing, and no alert id is ever queued twice;
(c) every other tenant is evaluated (its state row updated, its verdicts as its configuration says);
(d) the faulted tenant's stored state says what went wrong (the source error, or unreachable), and once the fault
    clears the next cycle brings it back with no spurious drift or control alerts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from shared.collect import TenantAccess
from shared.collect.exchange import EXCHANGE_SOURCES
from shared.collect.graph import GRAPH_SOURCES
from shared.cycle.service import Monitor, TenantOutcome, run_cycle
from shared.model import SOURCES
from shared.storage.queues import JsonQueue
from shared.storage.tenant_store import TenantRecord, TenantStore
from simulator import Simulator, load_scenario
from tests.builders import block_policy
from tests.integration.conftest import endpoints_for

pytestmark = pytest.mark.integration

APP = {"clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "clientSecret": "fault-matrix-secret"}
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)  # baseline cycle
T1 = T0 + timedelta(minutes=15)  # the faulted cycle
T2 = T0 + timedelta(minutes=30)  # the fault has cleared
SMTP = "exo_smtp_auth_disabled"
BLOCK = "entra_legacy_auth_blocked"
SIGNINS = "entra_legacy_signins_blocked"
# Every endpoint key the collector reads, so a fault on all of them fails the whole tenant.
ALL_KEYS = [f"graph.{source.name}" for source in GRAPH_SOURCES] + \
           [f"exchange.{source.cmdlet}" for source in EXCHANGE_SOURCES]


StartSimulator = Callable[[dict[str, Any]], Simulator]  # the `simulator_for` fixture


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------------------------
# The fleet: three fresh tenants per test (the Azurite account is shared by the whole session)
# ---------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Fleet:
    faulted: str  # healthy configuration; Microsoft misbehaves for it
    smtp: str  # re-enables SMTP AUTH during the faulted cycle: its alerts must not be lost
    healthy: str  # nothing changes: it must simply be evaluated

    @classmethod
    def fresh(cls) -> Fleet:
        return cls(*(str(uuid.uuid4()) for _ in range(3)))

    @property
    def ids(self) -> tuple[str, str, str]:
        return self.faulted, self.smtp, self.healthy

    @property
    def others(self) -> tuple[str, str]:
        return self.smtp, self.healthy


def tenant(tenant_id: str, name: str) -> dict[str, Any]:
    """A well-protected tenant: a CA block of legacy clients, SMTP AUTH off, SharePoint legacy protocols off."""
    return {"tenantId": tenant_id, "displayName": name,
            "graph": {"conditionalAccessPolicies": [block_policy()],
                      "sharepointSettings": {"isLegacyAuthProtocolsEnabled": False}},
            "exchange": {"transportConfig": {"Identity": "Transport Settings",
                                             "SmtpClientAuthenticationDisabled": True}}}


def fleet_scenario(fleet: Fleet) -> dict[str, Any]:
    return {"app": dict(APP), "tenants": [tenant(fleet.faulted, "Faulted"), tenant(fleet.smtp, "Fabrikam"),
                                          tenant(fleet.healthy, "Contoso")]}


# ---------------------------------------------------------------------------------------------------------------
# One cycle of the fleet through the worker path, and what a user can see afterwards
# ---------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Cycle:
    at: datetime
    outcomes: dict[str, TenantOutcome]
    records: dict[str, TenantRecord]
    alerts: list[dict[str, Any]]  # what this cycle put on the alerts queue (this fleet's only)
    requests: list[dict[str, Any]]  # the simulator's log of this cycle
    seconds: float

    def statuses(self, tenant_id: str) -> dict[str, str]:
        return {stored.result.control: str(stored.result.status) for stored in self.records[tenant_id].results}

    def state(self, tenant_id: str) -> dict[str, Any]:
        state = self.records[tenant_id].state
        assert state is not None, f"tenant {tenant_id} has no state row"
        return state

    def raised(self, tenant_id: str) -> list[tuple[str, str | None]]:
        return sorted(((a["type"], a["control"]) for a in self.alerts if a["tenantId"] == tenant_id),
                      key=lambda pair: (pair[0], pair[1] or ""))

    def hits(self, tenant_id: str, endpoint: str) -> list[dict[str, Any]]:
        return [e for e in self.requests if e["tenant"] == tenant_id and e["endpoint"] == endpoint]


def run_fleet(sim: Simulator, connection: str, queue: str, fleet: Fleet, now: datetime,
              timeout_s: float = 30.0) -> Cycle:
    """One cycle as a worker process runs it: its own monitor (pools, request budget), the real run_cycle."""
    endpoints = dataclasses.replace(endpoints_for(sim), timeout_s=timeout_s)
    accesses = [TenantAccess(tid, APP["clientId"], APP["clientSecret"]) for tid in fleet.ids]
    sim.reset_stats()

    async def go() -> Cycle:
        monitor = Monitor(TenantStore.from_connection_string(connection),
                          JsonQueue.from_connection_string(connection, queue), endpoints)
        try:
            started = time.monotonic()
            outcomes = await run_cycle(accesses, monitor, now=now)
            seconds = time.monotonic() - started
            records = {tid: await monitor.store.load(tid) for tid in fleet.ids}
            alerts = [a for a in await monitor.alerts.receive_all() if a["tenantId"] in fleet.ids]
        finally:
            await monitor.close()
        return Cycle(now, {o.tenant_id: o for o in outcomes}, records, alerts, sim.requests_log, seconds)

    return asyncio.run(go())


@dataclasses.dataclass
class Row:
    fleet: Fleet
    baseline: Cycle
    faulted: Cycle
    redelivered: Cycle
    recovered: Cycle
    pending: dict[str, list[dict[str, Any]]]  # outbox rows still unsent at the end, per tenant

    @property
    def cycles(self) -> tuple[Cycle, ...]:
        return self.baseline, self.faulted, self.redelivered, self.recovered


def run_row(sim: Simulator, connection: str, fleet: Fleet, arm: Callable[[dict[str, Any]], Any], *,
            timeout_s: float = 30.0) -> Row:
    """Baseline cycle; fault the tenant (`arm` mutates its scenario) while the SMTP neighbour re-enables SMTP AUTH;
    the faulted cycle; the fault clears; the faulted cycle's messages delivered again; the next cycle."""
    queue = f"alerts{uuid.uuid4().hex[:12]}"  # this row's alerts only
    baseline = run_fleet(sim, connection, queue, fleet, T0, timeout_s)
    sim.update_tenant(fleet.faulted, arm)
    sim.update_tenant(fleet.smtp, lambda t: t["exchange"]["transportConfig"].update(
        SmtpClientAuthenticationDisabled=False))
    faulted = run_fleet(sim, connection, queue, fleet, T1, timeout_s)
    sim.update_tenant(fleet.faulted, lambda t: t.update(faults={}))
    redelivered = run_fleet(sim, connection, queue, fleet, T1, timeout_s)
    recovered = run_fleet(sim, connection, queue, fleet, T2, timeout_s)

    async def pending() -> dict[str, list[dict[str, Any]]]:
        async with TenantStore.from_connection_string(connection) as store:
            return {tid: await store.pending_events(tid) for tid in fleet.ids}

    return Row(fleet, baseline, faulted, redelivered, recovered, asyncio.run(pending()))


def faults(spec: dict[str, dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
    return lambda t: t["faults"].update(json.loads(json.dumps(spec)))


# ---------------------------------------------------------------------------------------------------------------
# What every row must show
# ---------------------------------------------------------------------------------------------------------------
def assert_neighbours_unharmed(row: Row) -> None:
    fleet, faulted = row.fleet, row.faulted
    # (a) no alert lost: the neighbour's SMTP AUTH re-enabling is alerted on in the very cycle of the fault.
    assert faulted.raised(fleet.smtp) == [("basic_auth.reenabled", SMTP), ("control.failed", SMTP)]
    assert faulted.raised(fleet.healthy) == []
    # (c) every other tenant evaluated, its verdicts as its configuration says.
    for tid in fleet.others:
        outcome, state = faulted.outcomes[tid], faulted.state(tid)
        assert outcome.failure is None and not outcome.unreachable, outcome
        assert (state["lastCollectedAt"], state["lastSuccessAt"]) == (stamp(T1), stamp(T1))
        assert state["unreachable"] is False and state["partialErrors"] == {}
        assert {r.evaluated_at for r in faulted.records[tid].results} == {T1}
    assert faulted.statuses(fleet.healthy)[SMTP] == "pass" and faulted.statuses(fleet.healthy)[BLOCK] == "pass"
    assert faulted.statuses(fleet.smtp)[SMTP] == "fail" and faulted.statuses(fleet.smtp)[BLOCK] == "pass"
    # (b) none duplicated: the redelivered cycle raises nothing; no alert id is ever queued twice; nothing is left
    # pending in the outbox.
    assert row.redelivered.alerts == []
    assert all(o.events == [] and o.failure is None for o in row.redelivered.outcomes.values())
    ids = Counter(a["id"] for cycle in row.cycles for a in cycle.alerts)
    assert ids and max(ids.values()) == 1, ids
    assert row.pending == {tid: [] for tid in fleet.ids}


def assert_collected(row: Row) -> None:
    """The fault was ridden out inside the cycle: nothing recorded, nothing alerted, verdicts unchanged."""
    f, faulted = row.fleet.faulted, row.faulted
    state = faulted.state(f)
    assert faulted.outcomes[f].snapshot is not None and faulted.outcomes[f].snapshot.errors == {}
    assert state["partialErrors"] == {} and state["unreachable"] is False
    assert state["lastSuccessAt"] == stamp(T1)
    assert faulted.statuses(f) == row.baseline.statuses(f)
    assert faulted.raised(f) == []


def assert_partial(row: Row, source: str, status: int | None, code: str, control: str) -> None:
    """One source failed: its error is recorded, the controls that need it say unknown (never pass or fail on
    missing data), and `control.unknown` is raised exactly for those."""
    f, faulted = row.fleet.faulted, row.faulted
    state = faulted.state(f)
    assert state["unreachable"] is False
    assert set(state["partialErrors"]) == {source}, state["partialErrors"]
    error = state["partialErrors"][source]
    assert (error["status"], error["code"]) == (status, code), error
    before, after = row.baseline.statuses(f), faulted.statuses(f)
    changed = {c for c in after if after[c] != before.get(c)}
    assert control in changed and {after[c] for c in changed} == {"unknown"}, (before, after)
    assert faulted.raised(f) == sorted(("control.unknown", c) for c in changed)


def assert_unreachable(row: Row, status: int | None, code: str) -> None:
    """Nothing could be read: the tenant is recorded unreachable once, its last verdicts stay on display."""
    f, faulted = row.fleet.faulted, row.faulted
    outcome, state = faulted.outcomes[f], faulted.state(f)
    assert outcome.failure is None and outcome.unreachable
    assert set(outcome.snapshot.errors) == set(SOURCES)  # every source says why it is missing
    assert state["unreachable"] is True and state["consecutiveFailures"] == 1
    assert (state["lastError"]["status"], state["lastError"]["code"]) == (status, code), state["lastError"]
    assert state["lastSuccessAt"] == stamp(T0)  # the watermark does not move past what was read
    assert faulted.statuses(f) == row.baseline.statuses(f)
    assert {r.evaluated_at for r in faulted.records[f].results} == {T0}
    assert faulted.raised(f) == [("tenant.unreachable", None)]


def assert_back_without_noise(row: Row, *, was_unreachable: bool) -> None:
    """(d) The fault cleared: the next cycle reads the tenant fully, its verdicts are the baseline's again, and
    nobody hears about drift or controls (only `tenant.recovered` after an unreachable spell)."""
    f, recovered = row.fleet.faulted, row.recovered
    state = recovered.state(f)
    assert recovered.outcomes[f].snapshot.errors == {}
    assert state["unreachable"] is False and state["partialErrors"] == {} and state["consecutiveFailures"] == 0
    assert state["lastSuccessAt"] == stamp(T2)
    assert recovered.statuses(f) == row.baseline.statuses(f)
    assert recovered.raised(f) == ([("tenant.recovered", None)] if was_unreachable else [])
    for tid in row.fleet.others:
        assert recovered.raised(tid) == []


# ---------------------------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------------------------
def test_429_storm_with_retry_after_is_waited_out_and_collected(simulator_for: StartSimulator,
                                                                storage_connection_string: str) -> None:
    fleet = Fleet.fresh()
    sim = simulator_for(fleet_scenario(fleet))
    keys = ("graph.signIns", "exchange.Get-TransportConfig")  # Graph through the SDK; Exchange's InvokeCommand
    row = run_row(sim, storage_connection_string, fleet,
                  faults({key: {"status": 429, "times": 2, "retryAfter": 1} for key in keys}))
    # Retried until answered, and never sooner than Microsoft asked (1 s after each of the two 429s).
    for key in keys:
        assert [e["status"] for e in row.faulted.hits(fleet.faulted, key)] == [429, 429, 200], key
    assert row.faulted.seconds >= 2.0
    assert_collected(row)
    assert_neighbours_unharmed(row)
    assert_back_without_noise(row, was_unreachable=False)


def test_conditional_access_429s_without_retry_after_back_off_and_stay_bounded(simulator_for: StartSimulator,
                                                                               storage_connection_string: str) -> None:
    # Conditional Access answers 429 WITHOUT Retry-After (platform-facts.md); here it never stops doing so.
    fleet = Fleet.fresh()
    sim = simulator_for(fleet_scenario(fleet))
    key = "graph.conditionalAccessPolicies"
    row = run_row(sim, storage_connection_string, fleet, faults({key: {"status": 429}}))
    hits = row.faulted.hits(fleet.faulted, key)
    # One $batch item, one direct read and the SDK's 3 retries at most: no retry loop stacked on another.
    assert 2 <= len(hits) <= 5 and {e["status"] for e in hits} == {429}
    # Backed off, not hammered: CA allows 1 request per second per tenant, so retrying faster only burns budget.
    assert row.faulted.seconds >= len(hits) - 1
    for tid in fleet.others:
        assert len(row.faulted.hits(tid, key)) == 1
    assert_partial(row, "graph.conditionalAccessPolicies", 429, "TooManyRequests", BLOCK)
    assert_neighbours_unharmed(row)
    assert_back_without_noise(row, was_unreachable=False)


def test_permanent_429_storm_gives_up_and_records_the_source(simulator_for: StartSimulator,
                                                             storage_connection_string: str) -> None:
    fleet = Fleet.fresh()
    sim = simulator_for(fleet_scenario(fleet))
    key = "exchange.Get-TransportConfig"
    row = run_row(sim, storage_connection_string, fleet, faults({key: {"status": 429, "retryAfter": 1}}))
    hits = row.faulted.hits(fleet.faulted, key)
    assert 2 <= len(hits) <= 4 and {e["status"] for e in hits} == {429}  # retried, then given up
    assert row.faulted.seconds >= len(hits) - 1  # each retry after the Retry-After second
    assert_partial(row, "exchange.transportConfig", 429, "TooManyRequests", SMTP)
    assert_neighbours_unharmed(row)
    assert_back_without_noise(row, was_unreachable=False)


def test_transient_503s_are_retried_and_collected(simulator_for: StartSimulator,
                                                  storage_connection_string: str) -> None:
    fleet = Fleet.fresh()
    sim = simulator_for(fleet_scenario(fleet))
    # One 503 on a $batch item (fetched again on its own) and one on Exchange (no Retry-After: retried after the
    # SDK's backoff).
    keys = ("graph.sharepointSettings", "exchange.Get-CASMailbox")
    row = run_row(sim, storage_connection_string, fleet, faults({key: {"status": 503, "times": 1} for key in keys}))
    for key in keys:
        assert [e["status"] for e in row.faulted.hits(fleet.faulted, key)] == [503, 200], key
    assert_collected(row)
    assert_neighbours_unharmed(row)
    assert_back_without_noise(row, was_unreachable=False)


def test_permanent_503_gives_up_and_records_the_source(simulator_for: StartSimulator,
                                                       storage_connection_string: str) -> None:
    fleet = Fleet.fresh()
    sim = simulator_for(fleet_scenario(fleet))
    key = "graph.sharepointSettings"
    row = run_row(sim, storage_connection_string, fleet, faults({key: {"status": 503, "retryAfter": 1}}))
    statuses = [e["status"] for e in row.faulted.hits(fleet.faulted, key)]
    # The $batch item, then a direct read with the SDK's retries (each after Retry-After), then given up.
    assert 2 <= len(statuses) <= 5 and set(statuses) == {503}
    assert row.faulted.seconds >= len(statuses) - 2
    assert_partial(row, "graph.sharepointSettings", 503, "serviceNotAvailable", "spo_legacy_auth_disabled")
    assert_neighbours_unharmed(row)
    assert_back_without_noise(row, was_unreachable=False)


def test_answer_slower_than_the_client_timeout(simulator_for: StartSimulator, storage_connection_string: str) -> None:
    fleet = Fleet.fresh()
    sim = simulator_for(fleet_scenario(fleet))
    timeout_s = 1.5  # every request of the fleet lives under it; only the faulted one is slower
    row = run_row(sim, storage_connection_string, fleet,
                  faults({"graph.signIns": {"delay": timeout_s + 0.5, "times": 1}}), timeout_s=timeout_s)
    assert_partial(row, "graph.signIns", None, "ReadTimeout", SIGNINS)  # given up on, not waited for
    assert_neighbours_unharmed(row)
    assert_back_without_noise(row, was_unreachable=False)


TRUNCATED = '{"value": [{"id": "'


@pytest.mark.parametrize("key, source, control", [
    ("graph.signIns", "graph.signIns", SIGNINS),
    ("exchange.Get-TransportConfig", "exchange.transportConfig", SMTP),
])
def test_malformed_json_answer(simulator_for: StartSimulator, storage_connection_string: str, key: str, source: str,
                               control: str) -> None:
    fleet = Fleet.fresh()
    sim = simulator_for(fleet_scenario(fleet))
    row = run_row(sim, storage_connection_string, fleet, faults({key: {"status": 200, "rawBody": TRUNCATED}}))
    assert_partial(row, source, None, "JSONDecodeError", control)
    assert_neighbours_unharmed(row)
    assert_back_without_noise(row, was_unreachable=False)


def test_signins_page_that_fails_halfway_is_neither_committed_nor_skipped(simulator_for: StartSimulator,
                                                                          storage_connection_string: str) -> None:
    """Sign-ins come newest first, 1000 a page. The second page fails: the first page must not pass for the whole
    answer, and the next cycle must read that stretch again (the watermark stays where reading last completed), so
    the successful IMAP sign-in on the lost page still raises its enforcement gap."""
    fleet = Fleet.fresh()
    sim = simulator_for(fleet_scenario(fleet))
    legacy = {"id": "legacy-imap", "createdDateTime": "2026-11-23T08:01:00Z", "userPrincipalName": "ann@faulted.com",
              "userId": "u-ann", "clientAppUsed": "IMAP4", "status": {"errorCode": 0}}
    browsers = [{"id": f"browser-{i}", "createdDateTime": "2026-11-23T08:05:00Z", "userPrincipalName": "bob@x.com",
                 "userId": "u-bob", "clientAppUsed": "Browser", "status": {"errorCode": 0}} for i in range(1000)]

    def arm(t: dict[str, Any]) -> None:
        t["graph"]["signIns"] = [*browsers, legacy]
        t["faults"]["graph.signIns"] = {"status": 500, "skip": 1, "times": 1}  # page 1 served, page 2 fails

    row = run_row(sim, storage_connection_string, fleet, arm)
    f = fleet.faulted
    assert [e["status"] for e in row.faulted.hits(f, "graph.signIns")] == [200, 500]
    # Not committed as if complete: the verdict is unknown (page 1 alone, all browsers, would have said pass).
    assert_partial(row, "graph.signIns", 500, "InternalServerError", SIGNINS)
    assert row.faulted.state(f)["recentLegacySignIns"] == []
    assert_neighbours_unharmed(row)
    # Not skipped: the next read starts where the last complete one did (T0, minus the 3-hour overlap) ...
    first_page = unquote(row.recovered.hits(f, "graph.signIns")[0]["query"])
    assert "createdDateTime ge 2026-11-23T05:00:00Z" in first_page, first_page
    # ... so the legacy sign-in on the lost page is found, and alerted on once.
    assert row.recovered.raised(f) == [("enforcement.gap", SIGNINS)]
    assert row.recovered.statuses(f)[SIGNINS] == "fail"
    assert [s["id"] for s in row.recovered.state(f)["recentLegacySignIns"]] == ["legacy-imap"]
    assert row.recovered.state(f)["partialErrors"] == {}


INVALID_CLIENT = {"error": "invalid_client",
                  "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent "
                                       "in the request is the client secret value, not the client secret ID. "
                                       "Trace ID: 0 Correlation ID: 0 Timestamp: 2026-11-23 08:15:00Z",
                  "error_codes": [7000215]}


@pytest.mark.parametrize("fault, code", [
    ({"status": 401, "body": INVALID_CLIENT}, "AADSTS7000215"),
    ({"status": 500}, "AADSTS90033"),  # Entra keeps failing: azure-identity's own retries run out
], ids=["invalid_client", "500"])
def test_token_endpoint_errors_for_one_tenant(simulator_for: StartSimulator, storage_connection_string: str,
                                              fault: dict[str, Any], code: str) -> None:
    fleet = Fleet.fresh()
    sim = simulator_for(fleet_scenario(fleet))
    row = run_row(sim, storage_connection_string, fleet, faults({"token": fault}))
    token_statuses = [e["status"] for e in row.faulted.hits(fleet.faulted, "token")]
    assert token_statuses and set(token_statuses) == {fault["status"]}
    assert len(token_statuses) <= 8  # two scopes, each retried a bounded number of times at most
    assert_unreachable(row, fault["status"], code)
    assert APP["clientSecret"] not in json.dumps([[c.alerts, c.state(fleet.faulted)] for c in row.cycles])
    assert_neighbours_unharmed(row)
    assert_back_without_noise(row, was_unreachable=True)


@pytest.mark.parametrize("status, code", [(401, "InvalidAuthenticationToken"), (403, "Authorization_RequestDenied")])
def test_401_or_403_everywhere_for_one_tenant(simulator_for: StartSimulator, storage_connection_string: str,
                                              status: int, code: str) -> None:
    fleet = Fleet.fresh()
    sim = simulator_for(fleet_scenario(fleet))
    # Graph says why in its error body; Exchange's 401/403 are bare (platform-facts.md).
    spec = {key: {"status": status} if key.startswith("graph.") else {"status": status, "body": None}
            for key in ALL_KEYS}
    row = run_row(sim, storage_connection_string, fleet, faults(spec))
    errors = row.faulted.outcomes[fleet.faulted].snapshot.errors
    assert {e.status for e in errors.values()} == {status}
    assert {e.code for source, e in errors.items() if source.startswith("graph.")} == {code}
    assert_unreachable(row, status, code)  # the state names Graph's telling code, not Exchange's bare status
    assert_neighbours_unharmed(row)
    assert_back_without_noise(row, was_unreachable=True)


# ---------------------------------------------------------------------------------------------------------------
# The simulator extensions these rows rely on: `skip` and `rawBody` faults
# ---------------------------------------------------------------------------------------------------------------
def test_simulator_skip_fault_fails_only_later_pages_and_raw_body_is_sent_verbatim(
        simulator_for: StartSimulator) -> None:
    tid = str(uuid.uuid4())
    sim = simulator_for({"app": dict(APP), "pageSize": {"graph": 2}, "tenants": [{
        "tenantId": tid,
        "graph": {"conditionalAccessPolicies": [block_policy(f"{i:08d}-0000-4000-8000-000000000000")
                                                for i in range(5)]},
        "faults": {"graph.conditionalAccessPolicies": {"status": 500, "skip": 1, "times": 1},
                   "graph.organization": {"status": 200, "rawBody": TRUNCATED, "times": 2},
                   "exchange.Get-TransportConfig": {"status": 502, "rawBody": "<html>Bad gateway</html>"},
                   "token": {"status": 500, "rawBody": "oops", "times": 1}}}]})
    with httpx.Client(verify=sim.ssl_context(), timeout=10) as http:
        def token(scope: str) -> dict[str, str]:
            r = http.post(f"{sim.url}/{tid}/oauth2/v2.0/token", data={
                "client_id": APP["clientId"], "client_secret": APP["clientSecret"], "grant_type": "client_credentials",
                "scope": scope})
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        first = http.post(f"{sim.url}/{tid}/oauth2/v2.0/token", data={"client_id": APP["clientId"]})
        assert (first.status_code, first.content) == (500, b"oops")
        graph = token("https://graph.microsoft.com/.default")
        page1 = http.get(f"{sim.graph_url}/identity/conditionalAccess/policies", headers=graph)
        assert page1.status_code == 200 and len(page1.json()["value"]) == 2
        next_link = page1.json()["@odata.nextLink"]
        assert http.get(next_link, headers=graph).status_code == 500  # the second page fails ...
        assert http.get(next_link, headers=graph).status_code == 200  # ... once (times), then is served
        raw = http.get(f"{sim.graph_url}/organization", headers=graph)
        assert (raw.status_code, raw.content) == (200, TRUNCATED.encode())
        batch = http.post(f"{sim.graph_url}/$batch", headers=graph,
                          json={"requests": [{"id": "1", "method": "GET", "url": "/organization"}]})
        assert batch.json()["responses"][0]["body"] == TRUNCATED  # a batch carries the text as a JSON string
        exchange = http.post(f"{sim.url}/adminapi/beta/{tid}/InvokeCommand", headers=token(
            "https://outlook.office365.com/.default"),
            json={"CmdletInput": {"CmdletName": "Get-TransportConfig", "Parameters": {}}})
        assert (exchange.status_code, exchange.content) == (502, b"<html>Bad gateway</html>")
    assert set(sim.scenario["tenants"][0]["faults"]) == {"exchange.Get-TransportConfig"}  # the others ran out


@pytest.mark.parametrize("fault, field", [
    ({"status": 500, "skip": 0}, "skip"),
    ({"status": 500, "rawBody": 7}, "rawBody"),
    ({"status": 500, "rawBody": "x", "body": {}}, "rawBody"),
    ({"rawBody": "x"}, "status"),
])
def test_simulator_rejects_bad_skip_and_raw_body(fault: dict[str, Any], field: str) -> None:
    scenario = {"app": dict(APP), "tenants": [{"tenantId": str(uuid.uuid4()), "faults": {"graph.signIns": fault}}]}
    with pytest.raises(ValueError, match=rf"tenants\[0\]\.faults\.graph\.signIns\.{field}"):
        load_scenario(scenario)
