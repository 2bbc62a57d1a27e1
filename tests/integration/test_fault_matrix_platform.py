"""Fault matrix, platform rows: what a user notices when the platform under authwatch misbehaves.

Every row drives the real code (the simulator over HTTPS plays Microsoft, Azurite plays storage, local HTTP receivers
play the alert targets) and checks the same four things:
  1. no alert is lost (every event the tenants' history holds reaches the alerts queue / the receiver);
  2. none is duplicated (the same event id is never queued or delivered twice, except where the product's contract
     says a copy may be queued and delivery drops it);
  3. every other tenant of the fleet is evaluated;
  4. the stored state is consistent afterwards (nothing left pending in the outbox, registry outcomes right).

Rows: storage stopped mid-cycle and restarted · a worker process killed between persist and enqueue · a queue message
delivered twice · two overlapping timer runs · an alert receiver down for an hour.

Retry timing comes from host.json (what the Functions host does with a failed invocation), and the clock is passed
in wherever the product takes one, so a simulated hour costs no wall time. The session's Azurite is shared with
other tests: fresh tenant ids everywhere, and assertions only ever look at this file's tenants. Rows that stop
storage or count a whole registry start their own Azurite.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import AzureError
from azure.data.tables.aio import TableServiceClient
from azure.functions.timer import TimerRequest
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from shared.alerts import AlertDeliveryFailed, AlertService, failed_deliveries
from shared.alerts.content import INFORMATIONAL
from shared.collect.credentials import CredentialSpec
from shared.model import format_time
from shared.cycle.fleet import (
    EVALUATIONS_QUEUE,
    EvaluationFailed,
    Fleet,
    evaluate_registered,
    evaluation_message,
    fan_out,
)
from shared.cycle.service import Monitor, TenantOutcome
from shared.state.events import EVENT_TYPES
from shared.storage.queues import ALERTS_QUEUE, JsonQueue
from shared.storage.tenant_store import TenantStore
from shared.tenants.config import TenantConfig
from shared.tenants.registry import TenantRegistry
from simulator.azurite import Azurite
from tests.builders import block_policy
from tests.conftest import EXTERNAL_STORAGE_ENV, endpoints_for

ROOT = Path(__file__).resolve().parents[2]
APP = {"clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "clientSecret": "fault-matrix-secret"}
SECRET_SETTING = "AUTHWATCH_SECRET_FAULT_MATRIX"
T1 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
CYCLE = timedelta(minutes=15)  # the fleet's default interval: the next timer cycle


def _host_queues() -> tuple[timedelta, int]:
    """What the Functions host does with a failed queue invocation (host.json): retry after visibilityTimeout, at
    most maxDequeueCount attempts. The rows take their retry timing from here rather than guessing it."""
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    hours, minutes, seconds = (int(part) for part in queues["visibilityTimeout"].split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds), int(queues["maxDequeueCount"])


RETRY_DELAY, MAX_DEQUEUE = _host_queues()


# --- tenants, registry, fleet ---------------------------------------------------------------------------------------

def tenant_doc(tenant_id: str, name: str, *, smtp_on: bool = False) -> dict[str, Any]:
    """A simulator tenant with a legacy-auth block. smtp_on: SMTP AUTH enabled, so the first look raises
    control.failed (an alert); otherwise the tenant is healthy and its first look raises nothing."""
    return {"tenantId": tenant_id, "displayName": name,
            "graph": {"conditionalAccessPolicies": [block_policy(modifiedDateTime="2025-01-01T00:00:00Z")],
                      "sharepointSettings": {"isLegacyAuthProtocolsEnabled": False}},
            "exchange": {"transportConfig": {"Identity": "Transport Settings",
                                             "SmtpClientAuthenticationDisabled": not smtp_on}}}


def fleet_scenario(tenants: dict[str, bool]) -> dict[str, Any]:
    """tenants: id → smtp_on."""
    return {"app": dict(APP), "tenants": [tenant_doc(tenant_id, f"Tenant {index}", smtp_on=smtp_on)
                                          for index, (tenant_id, smtp_on) in enumerate(tenants.items())]}


def new_ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


CREDENTIAL = CredentialSpec(mode="secret", client_id=APP["clientId"], secret_setting=SECRET_SETTING)


async def register(registry: TenantRegistry, tenant_ids: list[str], *, disabled: tuple[str, ...] = ()
                   ) -> dict[str, TenantConfig]:
    await registry.create()
    return {tenant_id: await registry.add(TenantConfig(tenant_id=tenant_id, display_name=f"Tenant {tenant_id[:8]}",
                                                       credential=CREDENTIAL, enabled=tenant_id not in disabled))
            for tenant_id in tenant_ids}


def fleet_for(connection: str, sim, *, alerts_queue: str, evaluations_queue: str = EVALUATIONS_QUEUE,
              patient: bool = True) -> Fleet:
    """The fleet a queue worker builds. patient=False gives the storage SDKs one quick retry instead of their
    defaults (tables ~5 s, queues ~90 s per call against a dead endpoint), so a storage outage costs seconds here;
    the product code path is the same."""
    def tables() -> TableServiceClient:
        if patient:
            return TableServiceClient.from_connection_string(connection)
        return TableServiceClient.from_connection_string(connection, retry_total=2, retry_backoff_factor=0.05)

    def queue(name: str) -> JsonQueue:
        if patient:
            return JsonQueue.from_connection_string(connection, name)
        return JsonQueue(QueueClient.from_connection_string(
            connection, name, retry_total=2, initial_backoff=0, increment_base=0.05, random_jitter_range=0,
            message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy()))

    monitor = Monitor(TenantStore(tables()), queue(alerts_queue), endpoints_for(sim))
    return Fleet(registry=TenantRegistry(tables()), monitor=monitor, evaluations=queue(evaluations_queue),
                 env={SECRET_SETTING: APP["clientSecret"]})


async def tenant_view(store: TenantStore, tenant_ids: list[str]) -> dict[str, dict[str, Any]]:
    """What the API shows about each tenant: stored state, current results, the event history (with its
    still-pending flags)."""
    view = {}
    for tenant_id in tenant_ids:
        record = await store.load(tenant_id)
        view[tenant_id] = {"state": record.state, "results": record.results,
                           "history": await store.history(tenant_id, limit=500),
                           "pending": await store.pending_events(tenant_id)}
    return view


def alert_ids(history: list[dict[str, Any]]) -> Counter:
    """The alerts a tenant's history stands for (notes such as config.changed are history only)."""
    return Counter(event["id"] for event in history if event["type"] in EVENT_TYPES)


def assert_each_alert_queued_once(queued: list[dict[str, Any]], view: dict[str, dict[str, Any]]) -> None:
    for tenant_id, seen in view.items():
        mine = Counter(alert["id"] for alert in queued if alert["tenantId"] == tenant_id)
        assert mine == alert_ids(seen["history"]), tenant_id  # nothing lost, nothing extra
        assert set(mine.values()) <= {1}, f"{tenant_id}: an alert was queued twice: {mine}"


def assert_consistent(view: dict[str, dict[str, Any]], *, smtp_on: set[str], at: datetime) -> None:
    """Every tenant evaluated at `at`, its outbox empty, each event stored once, the SMTP tenants failing."""
    for tenant_id, seen in view.items():
        state = seen["state"]
        assert state is not None, f"{tenant_id} was never evaluated"
        assert state["lastCollectedAt"] == at.strftime("%Y-%m-%dT%H:%M:%SZ"), tenant_id
        assert seen["pending"] == [] and not state.get("outboxPending"), f"{tenant_id}: the outbox still owes alerts"
        assert set(Counter(event["id"] for event in seen["history"]).values()) <= {1}, tenant_id
        verdict = {stored.result.control: str(stored.result.status) for stored in seen["results"]}
        assert verdict["exo_smtp_auth_disabled"] == ("fail" if tenant_id in smtp_on else "pass"), tenant_id
        raised = {(event["type"], event["control"]) for event in seen["history"]}
        if tenant_id in smtp_on:
            assert ("control.failed", "exo_smtp_auth_disabled") in raised, tenant_id
        else:
            assert alert_ids(seen["history"]) == Counter(), f"healthy {tenant_id} raised {raised}"


@pytest.fixture
def own_azurite() -> Iterator[Azurite]:
    """An Azurite of this test's own: it may be stopped, and its registry holds only this test's tenants."""
    if os.environ.get(EXTERNAL_STORAGE_ENV):
        pytest.skip(f"needs a local Azurite it may stop; {EXTERNAL_STORAGE_ENV} is set")
    azurite = Azurite()
    try:
        yield azurite.start()
    finally:
        azurite.close()


# --- alert receivers --------------------------------------------------------------------------------------------------

class Receiver:
    """A webhook receiver on a fixed loopback port that can be unplugged (connections refused) and plugged back in,
    answering `status`. Records every request (tests/integration/test_alert_receiver.py has the simpler one)."""

    def __init__(self, status: int = 200) -> None:
        with socket.socket() as probe:  # a free port that stays ours across restarts (SO_REUSEADDR)
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.status = status
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self, status: int | None = None) -> Receiver:
        if status is not None:
            self.status = status
        if self._server is None:
            receiver = self

            class Handler(BaseHTTPRequestHandler):
                def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    with receiver._lock:
                        receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                        status = receiver.status
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

                def log_message(self, *args: Any) -> None:
                    pass

            self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
            threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def alerts(self) -> list[dict[str, Any]]:
        return [body for _, body in self.requests if body.get("type") != "authwatch.digest"]

    def event_ids(self) -> Counter:
        """Every event id that reached the receiver in an alert (a grouped message lists its events)."""
        return Counter(event["id"] for body in self.alerts() for event in body.get("events", [body]))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.down()


def alert_settings(connection: str, hook: Receiver, tenant_ids: list[str], channel: str) -> dict[str, str]:
    """App settings for delivery: one webhook channel, routed for this test's tenants only (the registry and the
    deliveries table are the session's)."""
    return {"AUTHWATCH_STORAGE_CONNECTION_STRING": connection, "AUTHWATCH_ALLOW_LOOPBACK_WEBHOOKS": "1",
            "AUTHWATCH_ALERT_CHANNELS": json.dumps({channel: {"type": "webhook", "url": hook.url}}),
            "AUTHWATCH_ALERT_ROUTES": json.dumps({"routes": [{"name": "matrix", "tenants": tenant_ids,
                                                              "channels": [channel]}]})}


def routed(history: list[dict[str, Any]]) -> Counter:
    """The alerts the default-style routing sends (informational events need a route that asks for them)."""
    return Counter(event["id"] for event in history if event["type"] in EVENT_TYPES
                   and event["type"] not in INFORMATIONAL)


async def deliver_all(env: dict[str, str], documents: list[dict[str, Any]], *, now: datetime) -> None:
    """The `alerts` queue worker over every queued message, one message each, as the host runs it."""
    async with AlertService.from_env(env) as service:
        await service.create()
        for document in documents:
            await service.deliver(document, now=now, message_id=uuid.uuid4().hex, dequeue_count=1)


# ======================================================================================================================
# Row 1: storage (Azurite) stopped mid-cycle, then restarted
# ======================================================================================================================

def test_row1_storage_lost_mid_cycle_then_restarted(own_azurite: Azurite, simulator_for) -> None:
    done_a, done_b, lost_c, down_d, down_e = tenants = new_ids(5)
    smtp_on = {done_a, lost_c, down_d}
    sim = simulator_for(fleet_scenario({tenant_id: tenant_id in smtp_on for tenant_id in tenants}))

    async def run() -> None:
        fleet = fleet_for(own_azurite.connection_string, sim, alerts_queue=ALERTS_QUEUE, patient=False)
        queued: list[dict[str, Any]] = []
        try:
            await fleet.create()
            await register(fleet.registry, tenants)
            assert sorted((await fan_out(fleet, now=T1)).queued) == sorted(tenants)
            messages = {m["tenantId"]: m for m in await fleet.evaluations.receive_all()}

            async def work(tenant_id: str, now: datetime) -> TenantOutcome | None:
                return await evaluate_registered(fleet, tenant_id, now=now)

            # Storage goes away inside C's cycle: its state and events are committed and its outbox rows claimed,
            # then Azurite stops before the first alert reaches the queue.
            store = fleet.monitor.store
            claim = store.claim_pending

            async def claim_then_lose_storage(tenant_id: str, **kwargs: Any) -> list[dict[str, Any]]:
                claimed = await claim(tenant_id, **kwargs)
                if tenant_id == lost_c and claimed:
                    store.claim_pending = claim  # type: ignore[method-assign]  # once
                    own_azurite.stop()
                return claimed

            store.claim_pending = claim_then_lose_storage  # type: ignore[method-assign]
            for tenant_id in (done_a, done_b):
                assert (await work(tenant_id, T1)).failure is None
            queued += await fleet.monitor.alerts.receive_all()
            # The failing invocations raise, so the host retries their messages (storage is down: the failure
            # cannot be booked in the registry either, and the storage error is what surfaces).
            for tenant_id in (lost_c, down_d, down_e):
                with pytest.raises((EvaluationFailed, AzureError)):
                    await work(tenant_id, T1)
            assert not own_azurite.running

            own_azurite.start()  # same endpoints, same data
            view = await tenant_view(store, [lost_c, down_d])
            assert view[lost_c]["pending"] and {e["id"] for e in view[lost_c]["pending"]} == \
                set(alert_ids(view[lost_c]["history"]))  # committed, not yet queued: owed, not lost
            assert view[down_d]["state"] is None  # never got as far as a commit

            # The host retries the three failed messages after host.json's visibilityTimeout.
            retry = T1 + RETRY_DELAY
            for tenant_id in (lost_c, down_d, down_e):
                assert (await work(tenant_id, retry)).failure is None
            queued += await fleet.monitor.alerts.receive_all()

            # The next timer cycle: every tenant is due and queued once, and evaluated.
            later = T1 + CYCLE
            again = await fan_out(fleet, now=later)
            assert sorted(again.queued) == sorted(tenants) and again.in_flight == 0
            messages = {m["tenantId"]: m for m in await fleet.evaluations.receive_all()}
            for tenant_id in tenants:
                assert (await work(tenant_id, later)).failure is None
            queued += await fleet.monitor.alerts.receive_all()

            view = await tenant_view(store, tenants)
            assert_each_alert_queued_once(queued, view)
            assert_consistent(view, smtp_on=smtp_on, at=later)
            for config in [await fleet.registry.get(tenant_id) for tenant_id in tenants]:
                assert config.consecutive_failures == 0 and config.last_error is None, config.tenant_id
        finally:
            await fleet.close()

    asyncio.run(run())


# ======================================================================================================================
# Row 2: a worker process killed between persist and alert enqueue, inside a fleet
# ======================================================================================================================

def run_worker_child(connection: str, sim, tenant_id: str, now: datetime, crash_at: str | None
                     ) -> subprocess.CompletedProcess:
    """tests/integration/worker_child.py: a real worker process that SIGKILLs itself at `crash_at`."""
    config = {"connection": connection, "url": sim.url, "graph": sim.graph_url, "ca": sim.ca_path,
              "tenant": tenant_id, "clientId": APP["clientId"], "secret": APP["clientSecret"],
              "now": now.isoformat(), "crashAt": crash_at}
    return subprocess.run([sys.executable, "-m", "tests.integration.worker_child", json.dumps(config)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_row2_worker_killed_between_persist_and_enqueue_in_a_fleet(simulator_for, storage_connection_string,
                                                                   receiver: Receiver) -> None:
    calm_a, killed_b, calm_c, killed_d = tenants = new_ids(4)
    smtp_on = {calm_a, killed_b, killed_d}
    sim = simulator_for(fleet_scenario({tenant_id: tenant_id in smtp_on for tenant_id in tenants}))
    connection = storage_connection_string

    async def in_process(tenant_ids: list[str], now: datetime) -> dict[str, dict[str, Any]]:
        """Other workers of the fleet (and later the retries) on the same `alerts` queue the child uses."""
        fleet = fleet_for(connection, sim, alerts_queue=ALERTS_QUEUE)
        try:
            await fleet.create()
            for tenant_id in tenant_ids:
                assert (await evaluate_registered(fleet, tenant_id, now=now)).failure is None
            return await tenant_view(fleet.monitor.store, tenants)
        finally:
            await fleet.close()

    async def setup() -> None:
        async with TenantRegistry.from_connection_string(connection) as registry:
            await register(registry, tenants)

    async def drain() -> list[dict[str, Any]]:
        async with JsonQueue.from_connection_string(connection, ALERTS_QUEUE) as alerts:
            return [a for a in await alerts.receive_all() if a.get("tenantId") in tenants]

    asyncio.run(setup())
    asyncio.run(in_process([calm_a], T1))
    # B's worker dies after its commit, at the first alert send (its outbox rows are claimed by then); D's dies
    # after queuing its alerts, before marking them sent. C is evaluated in between, unaffected.
    crashed = run_worker_child(connection, sim, killed_b, T1, "enqueue")
    assert crashed.returncode == -9, crashed.stderr  # SIGKILL: no cleanup ran
    asyncio.run(in_process([calm_c], T1))
    crashed = run_worker_child(connection, sim, killed_d, T1, "mark_sent")
    assert crashed.returncode == -9, crashed.stderr
    queued = asyncio.run(drain())
    assert not [a for a in queued if a["tenantId"] == killed_b]  # B persisted but queued nothing

    # The host sees the invocations fail with their worker and retries both messages after visibilityTimeout.
    retry = asyncio.run(in_process([killed_b, killed_d], T1 + RETRY_DELAY))
    queued += asyncio.run(drain())
    # The retry comes while the dead worker's outbox claim still holds (a claim outlives host.json's retry delay),
    # so B's alerts may not go out yet; they must still be owed, not dropped.
    sent_b = {a["id"] for a in queued if a["tenantId"] == killed_b}
    assert sent_b | {e["id"] for e in retry[killed_b]["pending"]} == set(alert_ids(retry[killed_b]["history"]))

    # The next cycle evaluates the whole fleet.
    later = T1 + CYCLE
    view = asyncio.run(in_process(tenants, later))
    queued += asyncio.run(drain())
    assert_consistent(view, smtp_on=smtp_on, at=later)
    # Exactly once on the queue for A, B, C. D's worker died between queuing and marking sent: its alerts may be
    # queued again (the contract), always with the same ids.
    assert_each_alert_queued_once(queued, {t: view[t] for t in (calm_a, killed_b, calm_c)})
    assert set(a["id"] for a in queued if a["tenantId"] == killed_d) == set(alert_ids(view[killed_d]["history"]))

    # What the receiver sees: every alert of every tenant exactly once, D's copy dropped by its id.
    receiver.up()
    env = alert_settings(connection, receiver, tenants, f"siem-{uuid.uuid4().hex[:6]}")
    asyncio.run(deliver_all(env, queued, now=later + timedelta(minutes=1)))
    expected = sum((routed(view[t]["history"]) for t in tenants), Counter())
    assert expected and receiver.event_ids() == expected


# ======================================================================================================================
# Row 3: a queue message delivered twice (the evaluation message and the alert message), through the Functions
# ======================================================================================================================

@pytest.fixture(scope="module")
def fns() -> dict[str, Any]:
    """The app's functions as the host indexes them (get_functions() refuses a second run: reset its guard, as
    tests/e2e/test_alert_function_app.py does)."""
    import function_app

    function_app.app.functions_bindings = None
    try:
        return {f.get_function_name(): f for f in function_app.app.get_functions()}
    finally:
        function_app.app.functions_bindings = None


def queue_message(document: dict[str, Any], *, message_id: str, dequeue_count: int) -> func.QueueMessage:
    from azure.functions.queue import QueueMessage  # the host's class: it carries dequeue_count

    return QueueMessage(id=message_id, body=json.dumps(document).encode(), dequeue_count=dequeue_count)


def app_settings(monkeypatch: pytest.MonkeyPatch, connection: str, sim, **extra: str) -> None:
    """The Function App's settings, pointing at `connection` and the simulator."""
    endpoints = endpoints_for(sim)
    for name, value in {"AUTHWATCH_STORAGE_CONNECTION_STRING": connection,
                        "AUTHWATCH_AUTHORITY_HOST": endpoints.authority, "AUTHWATCH_GRAPH_URL": endpoints.graph,
                        "AUTHWATCH_EXCHANGE_URL": endpoints.exchange, "AUTHWATCH_CA_BUNDLE": sim.ca_path,
                        SECRET_SETTING: APP["clientSecret"], **extra}.items():
        monkeypatch.setenv(name, value)


def test_row3_queue_messages_delivered_twice(fns, monkeypatch, simulator_for, storage_connection_string,
                                             receiver: Receiver) -> None:
    twice, other = tenants = new_ids(2)
    sim = simulator_for(fleet_scenario({twice: True, other: False}))
    connection = storage_connection_string
    channel = f"siem-{uuid.uuid4().hex[:6]}"
    app_settings(monkeypatch, connection, sim, **alert_settings(connection, receiver.up(), tenants, channel))

    async def setup() -> dict[str, TenantConfig]:
        async with TenantRegistry.from_connection_string(connection) as registry:
            return await register(registry, tenants)

    configs = asyncio.run(setup())
    now = datetime.now(timezone.utc)  # the functions read the real clock
    evaluations = {t: evaluation_message(configs[t], now, "schedule") for t in tenants}
    evaluate = fns["evaluate_tenant"].get_user_function()
    deliver = fns["deliver_alert"].get_user_function()

    async def evaluate_twice() -> None:
        # The same evaluation message: delivered, redelivered after its visibility lapsed, then handed to two
        # instances at once.
        message_id = uuid.uuid4().hex
        await evaluate(queue_message(evaluations[twice], message_id=message_id, dequeue_count=1))
        await evaluate(queue_message(evaluations[twice], message_id=message_id, dequeue_count=2))
        await asyncio.gather(*(evaluate(queue_message(evaluations[twice], message_id=message_id, dequeue_count=3))
                               for _ in range(2)))
        await evaluate(queue_message(evaluations[other], message_id=uuid.uuid4().hex, dequeue_count=1))

    asyncio.run(evaluate_twice())

    async def read() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        async with JsonQueue.from_connection_string(connection, ALERTS_QUEUE) as alerts, \
                TenantStore.from_connection_string(connection) as store:
            return [a for a in await alerts.receive_all() if a.get("tenantId") in tenants], \
                await tenant_view(store, tenants)

    queued, view = asyncio.run(read())
    assert_each_alert_queued_once(queued, view)  # one event row and one queue message per event
    for tenant_id, seen in view.items():
        assert seen["pending"] == [] and seen["state"]["lastSuccessAt"], tenant_id
    assert routed(view[twice]["history"]) and alert_ids(view[other]["history"]) == Counter()

    async def deliver_twice() -> None:
        # Every alert message: delivered, redelivered (same message, next dequeue), then a copy delivered to two
        # instances at once.
        for document in queued:
            message_id = uuid.uuid4().hex
            await deliver(queue_message(document, message_id=message_id, dequeue_count=1))
            await deliver(queue_message(document, message_id=message_id, dequeue_count=2))
            await asyncio.gather(*(deliver(queue_message(document, message_id=uuid.uuid4().hex, dequeue_count=1))
                                   for _ in range(2)))

    asyncio.run(deliver_twice())
    assert len(receiver.alerts()) == 1  # one cycle of one tenant: one message, once
    assert receiver.event_ids() == routed(view[twice]["history"])
    [(headers, body)] = [(h, b) for h, b in receiver.requests]
    assert headers["x-authwatch-id"] == body["id"] and body["id"] in alert_ids(view[twice]["history"])

    async def delivery_rows() -> list[dict[str, Any]]:
        from shared.alerts.store import AlertTables

        async with AlertTables.from_connection_string(connection) as tables:
            return await tables.rows(twice)

    rows = asyncio.run(delivery_rows())
    assert Counter(row["EventId"] for row in rows) == routed(view[twice]["history"])  # one row per event
    assert {row["Status"] for row in rows} == {"delivered"}


# ======================================================================================================================
# Row 4: two timer runs overlapping
# ======================================================================================================================

def test_row4_overlapping_timer_runs_queue_each_tenant_once(fns, monkeypatch, own_azurite: Azurite,
                                                            simulator_for) -> None:
    tenants = new_ids(6)
    paused = str(uuid.uuid4())
    smtp_on = set(tenants[:2])
    sim = simulator_for(fleet_scenario({tenant_id: tenant_id in smtp_on for tenant_id in tenants}))
    connection = own_azurite.connection_string  # a registry holding only this test's tenants: exact counts
    app_settings(monkeypatch, connection, sim)

    async def setup() -> None:
        async with TenantRegistry.from_connection_string(connection) as registry:
            await register(registry, [*tenants, paused], disabled=(paused,))

    asyncio.run(setup())

    async def drain() -> list[dict[str, Any]]:
        async with JsonQueue.from_connection_string(connection, EVALUATIONS_QUEUE) as evaluations:
            return await evaluations.receive_all()

    # Two instances fire the timer function at the same moment (each thread runs its own event loop, as two
    # workers would).
    timer = fns["fan_out"].get_user_function()
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def fire() -> None:
        try:
            start.wait()
            asyncio.run(timer(TimerRequest()))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=fire) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    first = asyncio.run(drain())
    assert Counter(m["tenantId"] for m in first) == Counter(tenants)  # each once; the paused one never

    # The next tick, raced by two fan-outs on separate Fleet objects (clock passed in: one interval later).
    tick = datetime.now(timezone.utc) + CYCLE

    async def race() -> list:
        fleets = [fleet_for(connection, sim, alerts_queue=ALERTS_QUEUE) for _ in range(2)]
        try:
            for fleet in fleets:
                await fleet.create()
            return await asyncio.gather(*(fan_out(fleet, now=tick) for fleet in fleets))
        finally:
            for fleet in fleets:
                await fleet.close()

    one, two = asyncio.run(race())
    assert sorted(one.queued + two.queued) == sorted(tenants) and one.in_flight + two.in_flight == len(tenants)
    assert Counter(m["tenantId"] for m in asyncio.run(drain())) == Counter(tenants)

    # The first tick's messages reach the workers: every tenant evaluated once, state and registry consistent.
    evaluate = fns["evaluate_tenant"].get_user_function()

    async def work() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], list[TenantConfig]]:
        for document in first:
            await evaluate(queue_message(document, message_id=uuid.uuid4().hex, dequeue_count=1))
        async with JsonQueue.from_connection_string(connection, ALERTS_QUEUE) as alerts, \
                TenantStore.from_connection_string(connection) as store, \
                TenantRegistry.from_connection_string(connection) as registry:
            return await alerts.receive_all(), await tenant_view(store, tenants), await registry.list()

    queued, view, registry = asyncio.run(work())
    assert_each_alert_queued_once(queued, view)
    for tenant_id, seen in view.items():
        assert seen["state"] is not None and seen["pending"] == [], tenant_id
        assert bool(alert_ids(seen["history"])) == (tenant_id in smtp_on), tenant_id
    by_id = {config.tenant_id: config for config in registry}
    assert all(by_id[t].consecutive_failures == 0 and by_id[t].last_error is None for t in tenants)
    assert by_id[paused].last_attempt_at is None  # never queued, never attempted


# ======================================================================================================================
# Row 5: an alert receiver down for an hour
# ======================================================================================================================

def evaluated_alert(connection: str, sim, tenant_id: str) -> dict[str, Any]:
    """The alert a real evaluation queues for an SMTP-on tenant at T1 (on a queue of this test's own)."""
    queue_name = f"alerts{uuid.uuid4().hex[:12]}"

    async def run() -> list[dict[str, Any]]:
        fleet = fleet_for(connection, sim, alerts_queue=queue_name)
        try:
            await fleet.create()
            await register(fleet.registry, [tenant_id])
            assert (await evaluate_registered(fleet, tenant_id, now=T1)).failure is None
            return await fleet.monitor.alerts.receive_all()
        finally:
            await fleet.close()

    [alert] = asyncio.run(run())
    assert (alert["type"], alert["control"]) == ("control.failed", "exo_smtp_auth_disabled")
    return alert


def alert_case(simulator_for, connection: str) -> tuple[str, dict[str, Any], str]:
    """A fresh SMTP-on tenant, the alert its evaluation raised, and a channel name of this test's own."""
    tenant_id = str(uuid.uuid4())
    sim = simulator_for(fleet_scenario({tenant_id: True}))
    return tenant_id, evaluated_alert(connection, sim, tenant_id), f"siem-{uuid.uuid4().hex[:6]}"


class Waits:
    """AlertService's sleep: records the backoff instead of waiting it out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Parking:
    """The `alerts` queue a long outage parks messages on (a queue of the test's own, in Azurite), noting each
    delay: a parked message stays invisible for minutes, so the test hands it back as the host would then."""

    def __init__(self, connection: str) -> None:
        self.connection, self.name = connection, f"alerts{uuid.uuid4().hex[:12]}"
        self.parked: list[tuple[dict[str, Any], timedelta | None]] = []

    def queue(self) -> JsonQueue:
        """A client for one AlertService (which closes it)."""
        parking = self

        class Recording(JsonQueue):
            async def send(self, document: dict[str, Any], *, delay: timedelta | None = None) -> None:
                await super().send(document, delay=delay)
                parking.parked.append((document, delay))

        return Recording(JsonQueue.from_connection_string(self.connection, self.name)._client)

    async def waiting(self) -> int:
        """Messages on the queue, invisible ones included."""
        async with self.queue() as queue:
            return (await queue._client.get_queue_properties()).approximate_message_count


def attempt(env: dict[str, str], alert: dict[str, Any], *, now: datetime, message_id: str, dequeue_count: int,
            waits: Waits, parking: Parking | None = None) -> Any:
    """One queue attempt of the `alerts` worker (AlertService.deliver, the clock passed in); returns its report or
    the AlertDeliveryFailed that makes the host retry."""
    async def run() -> Any:
        extra = {"parking": parking.queue()} if parking else {}
        async with AlertService.from_env(env, sleep=waits, **extra) as service:
            await service.create()
            try:
                return await service.deliver(alert, now=now, message_id=message_id, dequeue_count=dequeue_count)
            except AlertDeliveryFailed as error:
                return error

    return asyncio.run(run())


def test_row5_receiver_down_for_an_hour_gets_the_alert_once_when_back(
        simulator_for, storage_connection_string, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    tenant_id, alert, channel = alert_case(simulator_for, storage_connection_string)
    connection = storage_connection_string
    env = alert_settings(connection, receiver, [tenant_id], channel)
    waits, parking = Waits(), Parking(connection)
    caplog.set_level(logging.INFO, logger="authwatch")
    receiver.up(503)
    back = T1 + timedelta(hours=1)

    # The host runs each message up to maxDequeueCount times, visibilityTimeout apart; the last failed attempt parks
    # it (queued again, invisible for a while), and the host picks the parked copy up once it is visible.
    document, now, parks = alert, T1, 0
    while True:
        message_id = uuid.uuid4().hex
        for dequeue_count in range(1, MAX_DEQUEUE + 1):
            receiver.status = 200 if now >= back else 503
            outcome = attempt(env, document, now=now, message_id=message_id, dequeue_count=dequeue_count,
                              waits=waits, parking=parking)
            if not isinstance(outcome, AlertDeliveryFailed):
                break
            now += RETRY_DELAY
        if outcome.sent:
            break
        assert outcome.parked == [channel] and not outcome.failed, outcome
        assert asyncio.run(parking.waiting()) == parks + 1  # on the queue, not lost
        document, delay = parking.parked[-1]
        parks += 1
        assert document == alert and delay is not None and delay >= timedelta(minutes=11)  # past the old claim
        now += delay
        assert parks < 10, "still parked long after the receiver came back"

    assert outcome.sent == {channel: 1} and back <= now < back + timedelta(hours=1)
    delays = [delay for _, delay in parking.parked]
    assert delays == sorted(delays) and delays[-1] > delays[0]  # the wait grows with the outage
    # Delivered exactly once, with the alert's original id; every failed try carried it too.
    delivered = [(h, b) for h, b in receiver.requests if b.get("type") != "authwatch.digest"]
    assert {(h["x-authwatch-id"], b["id"]) for h, b in delivered} == {(alert["id"], alert["id"])}
    assert receiver.event_ids() == Counter({alert["id"]: len(delivered)})
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("authwatch")]
    assert asyncio.run(failed_deliveries(connection, tenant_id)) == []
    # A late copy (the host redelivering a parked message that was already handled) sends nothing more.
    before = len(receiver.requests)
    late = attempt(env, alert, now=now + timedelta(minutes=30), message_id=uuid.uuid4().hex, dequeue_count=1,
                   waits=waits, parking=parking)
    assert late.skipped == [channel] and len(receiver.requests) == before


def test_row5_receiver_down_past_the_outage_allowance_is_recorded_and_reminded(
        simulator_for, storage_connection_string, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    tenant_id, alert, channel = alert_case(simulator_for, storage_connection_string)
    connection = storage_connection_string
    # No outage allowance left (AUTHWATCH_ALERT_OUTAGE_HOURS=0, as for an alert a day old): the last queue attempt
    # records the failure instead of parking the message.
    env = {**alert_settings(connection, receiver, [tenant_id], channel), "AUTHWATCH_ALERT_OUTAGE_HOURS": "0"}
    waits = Waits()
    caplog.set_level(logging.INFO, logger="authwatch")

    # The hour: the receiver refuses connections, then answers 503. The host retries the message after
    # visibilityTimeout, up to maxDequeueCount attempts (host.json); each attempt retries with backoff inside.
    message_id = uuid.uuid4().hex
    outcomes = []
    for dequeue_count in range(1, MAX_DEQUEUE + 1):
        if dequeue_count == 3:
            receiver.up(503)
        now = T1 + (dequeue_count - 1) * RETRY_DELAY
        outcomes.append(attempt(env, alert, now=now, message_id=message_id, dequeue_count=dequeue_count,
                                waits=waits))
        assert now < T1 + timedelta(hours=1)  # the whole retry budget is spent inside the outage
    *retried, last = outcomes
    assert all(isinstance(outcome, AlertDeliveryFailed) for outcome in retried)  # raised: the host retries
    assert "connection failed" in str(retried[0]) and "HTTP 503" in str(retried[-1])
    assert waits.delays == [0.5, 1.0, 2.0] * MAX_DEQUEUE  # backoff doubling inside every attempt (the defaults)
    # Every try the receiver saw carried the alert's own id.
    assert {(h["x-authwatch-id"], b["id"]) for h, b in receiver.requests} == {(alert["id"], alert["id"])}
    assert len(receiver.requests) == 4 * (MAX_DEQUEUE - 2)  # 4 tries per attempt once it was listening

    # Past the allowance the last attempt records a failed delivery and logs one ERROR, instead of raising the
    # message into the poison queue.
    assert last.failed == [channel] and last.sent == {}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("authwatch")]
    assert [(r.getMessage(), r.event_id) for r in errors] == [("alert delivery failed", alert["id"])]
    [failure] = asyncio.run(failed_deliveries(connection, tenant_id))
    assert (failure["eventId"], failure["channel"], failure["attempts"], failure["error"]) == \
        (alert["id"], channel, MAX_DEQUEUE, "HTTP 503")

    # The receiver is back an hour later. A late copy of the message (or the poison handler) sends nothing more:
    # the failure is recorded, not forgotten, and not retried into a duplicate.
    receiver.up(200)
    back = T1 + timedelta(hours=1)
    before = len(receiver.requests)
    late = attempt(env, alert, now=back, message_id=uuid.uuid4().hex, dequeue_count=1, waits=waits)
    assert late.skipped == [channel] and len(receiver.requests) == before

    async def poison() -> list[str]:
        async with AlertService.from_env(env) as service:
            await service.create()
            return await service.record_poison(alert, now=back)

    assert asyncio.run(poison()) == [] and len(asyncio.run(failed_deliveries(connection, tenant_id))) == 1

    # Not lost: the alert is still open, and the next reminder digest (08:00 UTC the next day) carries it, with
    # its original id, once.
    async def digest(now: datetime):
        async with AlertService.from_env(env) as service:
            await service.create()
            return await service.digest(now=now)

    next_digest = T1 + timedelta(days=1)
    assert asyncio.run(digest(next_digest)).sent == {channel: 1}
    assert asyncio.run(digest(next_digest + timedelta(minutes=5))).sent == {}  # the same hour: not again
    digests = [body for _, body in receiver.requests if body.get("type") == "authwatch.digest"]
    assert len(digests) == 1
    reminded = [a["id"] for t in digests[0]["tenants"] if t["tenantId"] == tenant_id for a in t["alerts"]]
    assert reminded == [alert["id"]]


def test_row5_receiver_back_within_the_retry_budget_gets_the_alert_once(simulator_for, storage_connection_string,
                                                                        receiver: Receiver) -> None:
    tenant_id, alert, channel = alert_case(simulator_for, storage_connection_string)
    connection = storage_connection_string
    env = alert_settings(connection, receiver, [tenant_id], channel)
    waits = Waits()

    # Connections refused for two attempts (a minute of host retries), then the receiver is back.
    message_id = uuid.uuid4().hex
    for dequeue_count in (1, 2):
        outcome = attempt(env, alert, now=T1 + (dequeue_count - 1) * RETRY_DELAY, message_id=message_id,
                          dequeue_count=dequeue_count, waits=waits)
        assert isinstance(outcome, AlertDeliveryFailed) and "connection failed" in str(outcome)
    receiver.up(200)
    report = attempt(env, alert, now=T1 + 2 * RETRY_DELAY, message_id=message_id, dequeue_count=3, waits=waits)
    assert report.sent == {channel: 1}
    # Copies arriving later (another instance, a redelivery) send nothing.
    for dequeue_count in (1, 4):
        copy = attempt(env, alert, now=T1 + timedelta(hours=1), message_id=uuid.uuid4().hex,
                       dequeue_count=dequeue_count, waits=waits)
        assert copy.skipped == [channel]
    [(headers, body)] = receiver.requests
    assert body["id"] == headers["x-authwatch-id"] == alert["id"]  # its original id
    assert waits.delays == [0.5, 1.0, 2.0] * 2


def test_row_a_message_queued_before_the_tenant_changed_obeys_the_registry_as_it_is_now(
        fns, monkeypatch, simulator_for, storage_connection_string) -> None:
    """Issue 22 #11: a message waits in the queue (a backlog, retries) while the operator disables one tenant and
    fixes another's credential. The worker must act on the registry's row as it is when it runs, never on the copy
    of the row a message carried (messages written before this change carried one): the disabled tenant is not
    evaluated, the fixed one is reachable."""
    disabled, fixed = tenants = new_ids(2)
    sim = simulator_for(fleet_scenario({disabled: False, fixed: False}))
    connection = storage_connection_string
    app_settings(monkeypatch, connection, sim, AUTHWATCH_SECRET_STALE="a-secret-rotated-away")
    stale = CredentialSpec(mode="secret", client_id=APP["clientId"], secret_setting="AUTHWATCH_SECRET_STALE")
    now = datetime.now(timezone.utc)  # the functions read the real clock

    async def queue_then_change() -> list[dict[str, Any]]:
        async with TenantRegistry.from_connection_string(connection) as registry:
            await register(registry, [disabled])
            configs = [await registry.get(disabled),
                       await registry.add(TenantConfig(tenant_id=fixed, display_name="Fixed", credential=stale))]
            # What a message queued by the previous version held: the row, as it was then.
            queued = [{"tenantId": c.tenant_id, "requestedAt": format_time(now), "reason": "schedule",
                       "config": {k: v for k, v in c.to_json().items() if k != "routing"}} for c in configs]
            await registry.disable(disabled)
            await registry.update(fixed, {"credential": CREDENTIAL.to_json()})
            return queued

    queued = asyncio.run(queue_then_change())
    evaluate = fns["evaluate_tenant"].get_user_function()
    for document in queued:
        asyncio.run(evaluate(queue_message(document, message_id=uuid.uuid4().hex, dequeue_count=1)))

    async def read() -> dict[str, Any]:
        async with TenantStore.from_connection_string(connection) as store:
            return {tenant_id: (await store.load(tenant_id)).state for tenant_id in tenants}

    states = asyncio.run(read())
    assert states[disabled] is None  # skipped: never collected, nothing written
    assert states[fixed] is not None and states[fixed]["unreachable"] is False
    # New messages carry the worker's view with the registry version it was read at (issue 19 #5), used only while
    # the tenant's change marker shows no change since (tests/integration/test_worker_message.py); never routing.
    message = evaluation_message(TenantConfig(tenant_id=fixed, display_name="x", credential=CREDENTIAL,
                                              config_version=3), now, "schedule")
    assert "evaluate_tenant" in fns and message.keys() == {"tenantId", "requestedAt", "reason", "config"}
    assert message["config"]["configVersion"] == 3 and "routing" not in message["config"]
