"""Issue 22 (collect layer), the pure parts: the `$batch` answer parser (#8), the nextLink origin rule (#7), the
deadline-aware retry, budget and token waits (#5, #10) and the setting that sets the deadline (#5). The behaviour
over real HTTP is in tests/integration/test_hardening_collect.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from shared.collect.batch import MALFORMED, batch_items
from shared.collect.budget import SlidingWindowLimiter
from shared.collect.deadline import (DEFAULT_TENANT_DEADLINE_S, BoundedCredential, Deadline, DeadlineRetryHandler,
                                     applied)
from shared.collect.errors import DeadlineExceeded, TokenTimeout, same_origin, token_error
from shared.model import SourceError
from shared.settings import Settings, SettingsError

IDS = ["0", "1"]


def answer(*items: Any) -> dict[str, Any]:
    return {"responses": list(items)}


# ---------------------------------------------------------------------------------------------------------------
# 8. The $batch answer, item by item
# ---------------------------------------------------------------------------------------------------------------
def test_well_formed_items_are_read_in_any_order() -> None:
    parsed = batch_items(answer({"id": "1", "status": 429, "body": None}, {"id": "0", "status": 200, "body": {}}), IDS)
    assert parsed == {"0": (200, {}), "1": (429, None)}


@pytest.mark.parametrize("item", [
    {"id": "0", "status": "OK", "body": {}}, {"id": "0", "status": [200], "body": {}},
    {"id": "0", "status": None, "body": {}}, {"id": "0", "status": True, "body": {}},
    {"id": "0", "status": 2000, "body": {}}, {"id": "0", "status": 200.0, "body": {}},
    {"id": "0", "status": 200, "body": "eyJ2YWx1ZSI6IFtdfQ=="}, {"id": "0", "status": 200, "body": [1]},
    {"id": "0", "status": 200},
])
def test_an_unreadable_item_is_that_requests_error_only(item: dict[str, Any]) -> None:
    parsed = batch_items(answer(item, {"id": "1", "status": 200, "body": {"isEnabled": False}}), IDS)
    assert isinstance(parsed["0"], SourceError) and parsed["0"].code == MALFORMED
    assert parsed["1"] == (200, {"isEnabled": False})


@pytest.mark.parametrize("stray", ["garbage", None, 7, {"status": 200, "body": {}}, {"id": "", "status": 200}])
def test_an_item_that_names_no_request_makes_the_unanswered_ones_errors(stray: Any) -> None:
    parsed = batch_items(answer(stray, {"id": "1", "status": 200, "body": {}}), IDS)
    assert isinstance(parsed["0"], SourceError) and "no id" in parsed["0"].message
    assert parsed["1"] == (200, {})


def test_two_answers_for_one_id_are_that_requests_error() -> None:
    parsed = batch_items(answer({"id": "0", "status": 200, "body": {}}, {"id": "0", "status": 200, "body": {"x": 1}},
                                {"id": "1", "status": 200, "body": {}}), IDS)
    assert isinstance(parsed["0"], SourceError) and "2 answers" in parsed["0"].message
    assert parsed["1"] == (200, {})


def test_an_answer_graph_did_not_send_is_read_again_on_its_own() -> None:
    assert batch_items(answer({"id": 1, "status": 200, "body": {}}), IDS) == {"0": None, "1": (200, {})}


@pytest.mark.parametrize("payload", [None, [], "x", {}, {"responses": {"0": {}}}])
def test_no_batch_answer_at_all_reads_every_source_on_its_own(payload: Any) -> None:
    with pytest.raises(ValueError):
        batch_items(payload, IDS)


# ---------------------------------------------------------------------------------------------------------------
# 7. Only the endpoint's own https origin
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("link", "followed"), [
    ("https://outlook.office365.com/adminapi/beta/t/InvokeCommand?$skiptoken=1", True),
    ("https://OUTLOOK.office365.com:443/adminapi/beta/t/InvokeCommand", True),
    ("http://outlook.office365.com/adminapi/beta/t/InvokeCommand", False),
    ("https://outlook.office365.com:8443/adminapi/beta/t/InvokeCommand", False),
    ("https://outlook.office365.com.evil.example/adminapi", False),
    ("https://evil.example/adminapi", False),
    ("https://user@outlook.office365.com/adminapi", False),
    ("/adminapi/beta/t/InvokeCommand?$skiptoken=1", False),
    ("https://[::1", False),
])
def test_a_next_link_is_followed_only_on_the_endpoints_own_origin(link: str, followed: bool) -> None:
    assert same_origin(link, "https://outlook.office365.com") is followed


# ---------------------------------------------------------------------------------------------------------------
# 5. The deadline bounds the SDK's retry and the budget's waits
# ---------------------------------------------------------------------------------------------------------------
def retrying(statuses: list[tuple[int, dict[str, str]]]) -> tuple[httpx.AsyncClient, list[float]]:
    """A client whose only middleware is the deadline-aware retry, over canned answers; returns the send times."""
    from kiota_http.kiota_client_factory import KiotaClientFactory

    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        status, headers = statuses[min(len(sent), len(statuses)) - 1]
        return httpx.Response(status, headers=headers, json={})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return KiotaClientFactory.create_with_custom_middleware([DeadlineRetryHandler()], client=client), sent


def test_a_retry_after_past_the_deadline_is_refused_at_once() -> None:
    async def go() -> None:
        client, sent = retrying([(429, {"Retry-After": "179"})])
        with applied(Deadline.after(5)):
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded, match="Retry-After 179") as refused:
                await client.get("https://graph.example/v1.0/organization")
        assert time.monotonic() - started < 1 and len(sent) == 1 and refused.value.status == 429

    asyncio.run(go())


def test_a_retry_after_inside_the_deadline_is_honoured() -> None:
    async def go() -> None:
        client, sent = retrying([(503, {"Retry-After": "1"}), (200, {})])
        with applied(Deadline.after(5)):
            response = await client.get("https://graph.example/v1.0/organization")
        assert response.status_code == 200 and len(sent) == 2 and sent[1] - sent[0] >= 1

    asyncio.run(go())


def test_the_sdks_own_limit_still_holds_without_a_deadline() -> None:
    async def go() -> None:
        client, sent = retrying([(429, {"Retry-After": "180"})])  # at RetryHandlerOption.MAX_DELAY: not retried
        response = await client.get("https://graph.example/v1.0/organization")
        assert response.status_code == 429 and len(sent) == 1

    asyncio.run(go())


def test_a_budget_slot_past_the_deadline_is_not_waited_for() -> None:
    async def go() -> None:
        limiter = SlidingWindowLimiter(1, 10.0)
        await limiter.acquire(Deadline.after(3))
        limiter.release()  # answered: the slot is free again 10 s (+ margin) from now, past the deadline
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="throttling budget"):
            await limiter.acquire(Deadline.after(3))
        assert time.monotonic() - started < 0.5

    asyncio.run(go())


def test_waiting_behind_other_waiters_ends_at_the_deadline() -> None:
    async def go() -> None:
        limiter = SlidingWindowLimiter(1, 0.6)
        await limiter.acquire()
        limiter.release()  # answered: free again in 0.6 s (+ margin)
        ahead = asyncio.ensure_future(limiter.acquire())  # holds the queue while it waits for its slot
        await asyncio.sleep(0)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await limiter.acquire(Deadline.after(0.3))
        assert time.monotonic() - started < 0.5
        await ahead

    asyncio.run(go())


# ---------------------------------------------------------------------------------------------------------------
# 10. The token request ends within the client timeout (and the deadline)
# ---------------------------------------------------------------------------------------------------------------
class SlowCredential:
    def __init__(self, seconds: float) -> None:
        self.seconds, self.closed = seconds, False

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        await asyncio.sleep(self.seconds)
        return "token"

    async def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(("timeout_s", "deadline_s", "error", "code"), [
    (0.2, 30, TokenTimeout, "TokenTimeout"), (30, 0.2, DeadlineExceeded, "DeadlineExceeded")])
def test_a_slow_token_request_is_abandoned_at_the_tighter_bound(timeout_s: float, deadline_s: float,
                                                                error: type[Exception], code: str) -> None:
    async def go() -> None:
        inner = SlowCredential(5)
        credential = BoundedCredential(inner, timeout_s, Deadline.after(deadline_s))
        started = time.monotonic()
        with pytest.raises(error) as raised:
            await credential.get_token("https://graph.microsoft.com/.default")
        assert time.monotonic() - started < 1
        assert token_error(raised.value).code == code
        await credential.close()
        assert inner.closed

    asyncio.run(go())


def test_a_token_in_time_is_returned() -> None:
    async def go() -> None:
        credential = BoundedCredential(SlowCredential(0.01), 1, Deadline.after(5))
        assert await credential.get_token("scope") == "token"

    asyncio.run(go())


# ---------------------------------------------------------------------------------------------------------------
# 5. AUTHWATCH_TENANT_DEADLINE_SECONDS
# ---------------------------------------------------------------------------------------------------------------
def test_the_deadline_defaults_inside_the_function_timeout_and_reaches_the_monitor() -> None:
    from shared.bootstrap import build_monitor

    assert Settings.from_env({"AUTHWATCH_STORAGE_CONNECTION_STRING": "x"}).tenant_deadline_seconds == 420
    assert DEFAULT_TENANT_DEADLINE_S == 420
    settings = Settings.from_env({"AUTHWATCH_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
                                  "AUTHWATCH_TENANT_DEADLINE_SECONDS": "90"})
    assert build_monitor(settings).tenant_deadline_s == 90


@pytest.mark.parametrize("value", ["0", "4", "541", "600", "7m", "-5", ""])
def test_a_deadline_outside_the_function_timeout_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="AUTHWATCH_TENANT_DEADLINE_SECONDS"):
        Settings.from_env({"AUTHWATCH_STORAGE_CONNECTION_STRING": "x", "AUTHWATCH_TENANT_DEADLINE_SECONDS": value})
