"""Issue 22, the collect layer's items, over real HTTPS against the simulator (real azure-identity, msgraph-sdk):

5. throttling without a deadline: one deadline per tenant collection; no Retry-After sleep, budget wait or token
   request runs past it, what did not fit is that source's DeadlineExceeded and the other sources keep their reads;
7. tokens to a foreign host: an Exchange nextLink off the endpoint's own https origin is not followed (the token never
   leaves), it is the source's ForeignNextLink;
8. one odd `$batch` item (a status that is no integer, a body that is no object, an item without id, a duplicate id)
   is that source's MalformedBatchItem, never a crash of the tenant's whole collection;
10. the token request is bounded by the client timeout (TokenTimeout) and by the deadline.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.collect import TenantAccess, collect_tenant
from shared.collect.exchange import EXCHANGE_SOURCES
from shared.collect.graph import BATCHED, GRAPH_SOURCES
from shared.model import TenantSnapshot
from simulator import Simulator
from tests.builders import block_policy
from tests.integration.conftest import endpoints_for

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
APP = {"clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "clientSecret": "hardening-secret"}
TENANT = "0b000000-0000-4000-8000-000000000022"
ALL_SOURCES = {f"graph.{s.name}" for s in GRAPH_SOURCES} | {f"exchange.{s.name}" for s in EXCHANGE_SOURCES}
SLACK_S = 2.5  # what a collection may take past its deadline: cancelling, closing the credential, a loaded machine
StartSimulator = Callable[[dict[str, Any]], Simulator]


def scenario(faults: dict[str, Any] | None = None, tenant_id: str = TENANT) -> dict[str, Any]:
    return {"app": dict(APP), "tenants": [{
        "tenantId": tenant_id, "displayName": "Contoso",
        "graph": {"conditionalAccessPolicies": [block_policy()],
                  "sharepointSettings": {"isLegacyAuthProtocolsEnabled": False}},
        "exchange": {"transportConfig": {"Identity": "Transport Settings", "SmtpClientAuthenticationDisabled": True}},
        "faults": copy.deepcopy(faults or {})}]}


def access() -> TenantAccess:
    return TenantAccess(TENANT, APP["clientId"], APP["clientSecret"])


def collect(sim: Simulator, *, timeout_s: float = 30.0, guard_s: float = 60.0,
            **kwargs: Any) -> tuple[TenantSnapshot, float]:
    """One collection and how long it took; `guard_s` ends the test (as a failure) instead of waiting minutes."""
    endpoints = dataclasses.replace(endpoints_for(sim), timeout_s=timeout_s)

    async def go() -> tuple[TenantSnapshot, float]:
        started = time.monotonic()
        snapshot = await asyncio.wait_for(collect_tenant(access(), endpoints, now=NOW, **kwargs), guard_s)
        return snapshot, time.monotonic() - started

    return asyncio.run(go())


def assert_collected(snapshot: TenantSnapshot, sources: set[str]) -> None:
    for source in sources:
        assert source not in snapshot.errors, (source, snapshot.errors.get(source))
        assert snapshot.collected(source), source


# ---------------------------------------------------------------------------------------------------------------
# 5. One deadline per tenant collection
# ---------------------------------------------------------------------------------------------------------------
PERSISTENT_179 = {"graph.conditionalAccessPolicies": {"status": 429, "retryAfter": 179},
                  "exchange.Get-CASMailbox": {"status": 429, "retryAfter": 179}}
THROTTLED = {"graph.conditionalAccessPolicies", "exchange.casMailboxes"}


def test_a_retry_after_past_the_deadline_is_not_waited_for(simulator_for: StartSimulator) -> None:
    from shared.collect.deadline import Deadline

    sim = simulator_for(scenario(PERSISTENT_179))
    snapshot, seconds = collect(sim, deadline=Deadline.after(6))
    assert seconds < 6 + SLACK_S
    for source in THROTTLED:
        error = snapshot.errors[source]
        assert error.code == "DeadlineExceeded" and error.status == 429, error
        assert "Retry-After 179" in error.message, error.message  # the wait that did not fit is named
    assert_collected(snapshot, ALL_SOURCES - THROTTLED)
    assert set(snapshot.errors) == THROTTLED


def test_short_retry_afters_are_honoured_until_the_next_would_end_past_the_deadline(
        simulator_for: StartSimulator) -> None:
    from shared.collect.deadline import Deadline

    sim = simulator_for(scenario({"exchange.Get-TransportConfig": {"status": 429, "retryAfter": 2}}))
    snapshot, seconds = collect(sim, deadline=Deadline.after(5))
    assert seconds < 5 + SLACK_S
    # Waited twice (at 0 s and 2 s), then the third 2-second wait would have ended past 5 s: not attempted.
    assert sim.request_counts["exchange.Get-TransportConfig"] == 3
    error = snapshot.errors["exchange.transportConfig"]
    assert error.code == "DeadlineExceeded" and "Retry-After 2" in error.message
    assert set(snapshot.errors) == {"exchange.transportConfig"}


def test_an_answer_still_outstanding_at_the_deadline_is_given_up(simulator_for: StartSimulator) -> None:
    from shared.collect.deadline import Deadline

    # Slower than the deadline but inside the HTTP timeout: only the deadline can end the wait.
    sim = simulator_for(scenario({"graph.signIns": {"delay": 30}, "exchange.Get-User": {"delay": 30}}))
    snapshot, seconds = collect(sim, deadline=Deadline.after(3), timeout_s=60)
    assert seconds < 3 + SLACK_S
    assert {source: error.code for source, error in snapshot.errors.items()} == {
        "graph.signIns": "DeadlineExceeded", "exchange.users": "DeadlineExceeded"}
    assert not snapshot.collected("graph.signIns") and not snapshot.collected("exchange.users")
    assert_collected(snapshot, ALL_SOURCES - {"graph.signIns", "exchange.users"})


def test_a_slow_token_endpoint_is_bounded_by_the_deadline(simulator_for: StartSimulator) -> None:
    from shared.collect.deadline import Deadline

    sim = simulator_for(scenario({"token": {"delay": 30}}))
    snapshot, seconds = collect(sim, deadline=Deadline.after(2), timeout_s=60)
    assert seconds < 2 + SLACK_S
    assert set(snapshot.errors) == ALL_SOURCES
    assert {error.code for error in snapshot.errors.values()} == {"DeadlineExceeded"}


def test_sign_ins_cut_by_the_deadline_keep_what_was_read_and_owe_the_rest(simulator_for: StartSimulator,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget wait past the deadline is not waited; a sign-in read it cuts short is kept and the stretch it did
    not reach is owed (unreadFrom/unreadUntil), as for the page budget: a busy, throttled tenant still progresses."""
    from shared.collect import graph
    from shared.collect.budget import RequestBudget
    from shared.collect.deadline import Deadline
    from shared.collect.snapshot import CollectionHints

    monkeypatch.setattr(graph, "SIGNIN_PAGE_SIZE", 2)
    signins = [{"id": f"s{hour}", "createdDateTime": f"2026-11-23T0{hour}:00:00Z", "userId": "u-scanner",
                "userPrincipalName": "scanner@contoso.com", "clientAppUsed": "IMAP4", "status": {"errorCode": 50126}}
               for hour in range(6)]
    sc = scenario()
    sc["tenants"][0]["graph"]["signIns"] = signins
    sim = simulator_for(sc)
    budget = RequestBudget(reports_per_tenant=(1, 10.0))  # the second page's slot is ~10 s away
    hints = CollectionHints(known_block_policy_ids=frozenset({block_policy()["id"]}), security_defaults=False)
    snapshot, seconds = collect(sim, deadline=Deadline.after(4), budget=budget, hints=hints)
    assert seconds < 2  # refused at once, not slept until the deadline
    error = snapshot.errors["graph.signIns"]
    assert error.code == "DeadlineExceeded" and error.partial, error
    assert (error.unread_from, error.unread_until) == ("2026-11-21T08:00:00Z", "2026-11-23T04:00:00Z")
    assert [item["id"] for item in snapshot.graph["signIns"]] == ["s5", "s4"]  # the newest page, kept
    assert sim.request_counts["graph.signIns"] == 1
    assert set(snapshot.errors) == {"graph.signIns"}


def test_the_deadline_setting_bounds_a_tenants_evaluation(simulator_for: StartSimulator,
                                                           storage_connection_string: str) -> None:
    """AUTHWATCH_TENANT_DEADLINE_SECONDS, through the settings and the bootstrap, into the worker's path: the
    throttled sources are recorded in the stored state (not PASS), the rest is evaluated, well inside the function
    timeout instead of ~18 minutes of 179-second waits."""
    from shared.bootstrap import build_monitor
    from shared.cycle.service import evaluate_tenant
    from shared.settings import Settings
    from shared.storage.queues import JsonQueue

    tenant = TenantAccess(str(uuid.uuid4()), APP["clientId"], APP["clientSecret"])  # a fresh state row
    sim = simulator_for(scenario(PERSISTENT_179, tenant.tenant_id))
    deadline_s = 5
    settings = Settings.from_env({
        "AUTHWATCH_STORAGE_CONNECTION_STRING": storage_connection_string, "AUTHWATCH_AUTHORITY_HOST": sim.url,
        "AUTHWATCH_GRAPH_URL": sim.graph_url, "AUTHWATCH_EXCHANGE_URL": sim.url, "AUTHWATCH_CA_BUNDLE": sim.ca_path,
        "AUTHWATCH_TENANT_DEADLINE_SECONDS": str(deadline_s)})

    async def go() -> tuple[Any, dict[str, Any] | None, list[str], float]:
        monitor = build_monitor(settings)
        monitor.alerts = JsonQueue.from_connection_string(storage_connection_string, f"alerts{uuid.uuid4().hex[:12]}")
        try:
            await monitor.create()
            started = time.monotonic()
            outcome = await asyncio.wait_for(evaluate_tenant(tenant, monitor, now=NOW), deadline_s + 30)
            seconds = time.monotonic() - started
            record = await monitor.store.load(tenant.tenant_id)
            return outcome, record.state, [r.result.control for r in record.results], seconds
        finally:
            await monitor.close()

    outcome, state, controls, seconds = asyncio.run(go())
    assert seconds < deadline_s + 10  # the deadline plus storage round trips, nowhere near functionTimeout
    assert outcome.failure is None and not outcome.unreachable
    assert state is not None
    assert {source: error["code"] for source, error in state["partialErrors"].items()} == {
        source: "DeadlineExceeded" for source in THROTTLED}
    assert controls  # evaluated: the sources that were read count


# ---------------------------------------------------------------------------------------------------------------
# 7. An Exchange nextLink off the endpoint's own origin is never followed
# ---------------------------------------------------------------------------------------------------------------
class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]]

    def _record(self) -> None:
        self.seen.append({key.lower(): value for key, value in self.headers.items()})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"value": [{"Identity": "Transport Settings", "SmtpClientAuthenticationDisabled": true}]}')

    do_GET = do_POST = _record

    def log_message(self, *_: Any) -> None:
        return None


@pytest.fixture
def plain_http_listener() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A plain-http server on another port that records the headers of whatever reaches it."""
    seen: list[dict[str, str]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def first_page_linking_to(link: str) -> dict[str, Any]:
    return {"exchange.Get-TransportConfig": {"status": 200, "times": 1, "body": {
        "value": [{"Identity": "Transport Settings", "SmtpClientAuthenticationDisabled": True}],
        "@odata.nextLink": link}}}


def test_a_plain_http_next_link_to_another_host_gets_no_token(simulator_for: StartSimulator,
                                                               plain_http_listener: Any) -> None:
    base, seen = plain_http_listener
    sim = simulator_for(scenario(first_page_linking_to(
        f"{base}/adminapi/beta/{TENANT}/InvokeCommand?$skiptoken=2")))
    snapshot, _ = collect(sim)
    assert seen == []  # nothing at all went there, the bearer token least of all
    error = snapshot.errors["exchange.transportConfig"]
    assert error.code == "ForeignNextLink" and base in error.message, error
    assert not snapshot.collected("exchange.transportConfig")
    assert set(snapshot.errors) == {"exchange.transportConfig"}  # every other source read


@pytest.mark.parametrize("origin", [
    lambda sim: sim.url.replace("127.0.0.1", "localhost"),  # another host name (the simulator's cert covers it)
    lambda sim: sim.url.replace("https://", "http://"),  # a downgrade to plain http on the same host and port
])
def test_a_next_link_off_the_endpoints_origin_is_not_followed(simulator_for: StartSimulator,
                                                              origin: Callable[[Simulator], str]) -> None:
    sim = simulator_for(scenario())
    link = f"{origin(sim)}/adminapi/beta/{TENANT}/InvokeCommand?$skiptoken=2"
    sim.update_tenant(TENANT, lambda t: t["faults"].update(first_page_linking_to(link)))
    snapshot, _ = collect(sim)
    assert sim.request_counts["exchange.Get-TransportConfig"] == 1  # the first page only
    assert snapshot.errors["exchange.transportConfig"].code == "ForeignNextLink"
    assert set(snapshot.errors) == {"exchange.transportConfig"}


# ---------------------------------------------------------------------------------------------------------------
# 8. A malformed $batch item is that source's error
# ---------------------------------------------------------------------------------------------------------------
def batch_answer(first: Any, *, extra: list[Any] | None = None) -> str:
    """A $batch answer whose item "0" (organization) is `first`; the other items are well formed."""
    good = {"1": {"id": "00000000-0000-0000-0000-000000000005", "isEnabled": False},
            "2": {"value": [block_policy()]},
            "3": {"isLegacyAuthProtocolsEnabled": False}}
    items = [{"id": rid, "status": 200, "headers": {"Content-Type": "application/json"}, "body": body}
             for rid, body in good.items()]
    return json.dumps({"responses": [first, *items, *(extra or [])]})


ORG = {"value": [{"id": TENANT, "displayName": "Contoso", "verifiedDomains": []}]}
MALFORMED = {
    "status 'OK'": batch_answer({"id": "0", "status": "OK", "body": ORG}),
    "status [200]": batch_answer({"id": "0", "status": [200], "body": ORG}),
    "status null": batch_answer({"id": "0", "status": None, "body": ORG}),
    "status true": batch_answer({"id": "0", "status": True, "body": ORG}),
    "body not an object": batch_answer({"id": "0", "status": 200, "body": "{\"value\": ["}),
    "value not a list": batch_answer({"id": "0", "status": 200, "body": {"value": "Contoso"}}),
    "item not an object": batch_answer("garbage"),
    "item without id": batch_answer({"status": 200, "body": ORG}),
    "duplicate id": batch_answer({"id": "0", "status": 200, "body": ORG},
                                 extra=[{"id": "0", "status": 200, "body": {"value": []}}]),
}


@pytest.mark.parametrize("answer", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_batch_item_is_its_sources_error(simulator_for: StartSimulator, answer: str) -> None:
    assert BATCHED[0].name == "organization"  # item "0" of the batch
    sim = simulator_for(scenario({"graph.batch": {"status": 200, "rawBody": answer}}))
    snapshot, _ = collect(sim)
    error = snapshot.errors.get("graph.organization")
    assert error is not None and error.code in {"MalformedBatchItem", "MalformedAnswer"}, snapshot.errors
    assert not snapshot.collected("graph.organization")
    assert set(snapshot.errors) == {"graph.organization"}  # the rest of the collection went on
    assert snapshot.graph["conditionalAccessPolicies"] == [block_policy()]
    assert snapshot.exchange["transportConfig"]["SmtpClientAuthenticationDisabled"] is True


def test_a_side_that_raises_costs_only_its_own_sources(simulator_for: StartSimulator,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the Graph side meets that no code path expected, the Exchange side's reads are kept and every Graph
    source not read is an error (never missing, so never PASS), instead of the whole collection raising."""
    from shared.collect import graph

    async def broken(*_: Any, **__: Any) -> Any:
        raise ValueError("invalid literal for int() with base 10: 'OK'")

    monkeypatch.setattr(graph, "read_batch", broken)
    sim = simulator_for(scenario())
    snapshot, _ = collect(sim)
    graph_sources = {f"graph.{s.name}" for s in GRAPH_SOURCES}
    assert set(snapshot.errors) == graph_sources
    assert {error.code for error in snapshot.errors.values()} == {"ValueError"}
    assert_collected(snapshot, ALL_SOURCES - graph_sources)


# ---------------------------------------------------------------------------------------------------------------
# 10. The token request is bounded by the client timeout
# ---------------------------------------------------------------------------------------------------------------
def test_a_slow_token_endpoint_is_the_tokens_error_within_the_client_timeout(simulator_for: StartSimulator) -> None:
    sim = simulator_for(scenario({"token": {"delay": 8}}))
    snapshot, seconds = collect(sim, timeout_s=1)
    assert seconds < 1 + SLACK_S  # not the 8 s the token endpoint takes
    assert set(snapshot.errors) == ALL_SOURCES
    assert {error.code for error in snapshot.errors.values()} == {"TokenTimeout"}
    assert "1 s" in snapshot.errors["graph.organization"].message


def test_a_token_endpoint_within_the_timeout_is_waited_for(simulator_for: StartSimulator) -> None:
    sim = simulator_for(scenario({"token": {"delay": 0.5}}))
    snapshot, _ = collect(sim, timeout_s=3)
    assert snapshot.errors == {}
