"""A slow alert receiver must not starve the others (issue 22, item 3): a webhook that drips its answer one byte at a
time (each read well inside the timeout, so httpx's per-read timeouts never fire) is cut off at the channel's
overall deadline, the healthy channel beside it is delivered at once and independently, only the slow channel is
recorded as failed, and a retry of the message sends nothing again to the channel that already got it.

Both receivers are real servers on 127.0.0.1 (an asyncio server in its own thread); the dripping one is bounded in
time (it finishes its answer after DRIP_SECONDS), so a regression fails the timing checks instead of hanging."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from shared.alerts import AlertDeliveryFailed, AlertService, failed_deliveries
from shared.alerts.store import AlertTables
from tests.integration.test_alert_lifecycle import run
from tests.integration.test_alert_receiver import alert_env, commit_cycle, register, smtp_failed

T1 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
TIMEOUT_S = 1.0  # AUTHWATCH_ALERT_TIMEOUT_SECONDS: the whole request, connect to the last byte of the answer
DRIP_INTERVAL_S = 0.25  # one byte this often: far inside the timeout, so no single read ever times out
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"
DRIP_SECONDS = len(ANSWER) * DRIP_INTERVAL_S  # ~20 s: how long the slow receiver holds one request at most


class LocalReceiver:
    """An HTTP/1.1 server on 127.0.0.1 in its own thread and event loop. `drip`: answer one byte every
    DRIP_INTERVAL_S; else answer at once. Records each request's arrival (time.monotonic) and body."""

    def __init__(self, *, drip: bool) -> None:
        self.drip = drip
        self.arrivals: list[tuple[float, bytes]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._closing = False

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            body = await reader.readexactly(length)
            self.arrivals.append((time.monotonic(), body))
            if not self.drip:
                writer.write(ANSWER)
                await writer.drain()
                return
            for index in range(len(ANSWER)):  # bounded: the answer completes after DRIP_SECONDS
                if self._closing:
                    return
                writer.write(ANSWER[index:index + 1])
                await writer.drain()
                await asyncio.sleep(DRIP_INTERVAL_S)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up: that is what a deadline does
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"

    def start(self) -> LocalReceiver:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._closing = True
            self._server.close()
            handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), 5)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def slow_and_healthy():
    slow, healthy = LocalReceiver(drip=True).start(), LocalReceiver(drip=False).start()
    yield slow, healthy
    slow.stop()
    healthy.stop()


def timed_delivery(env: dict[str, str], record: dict[str, Any], message_id: str,
                   dequeue_count: int) -> tuple[Any, float, float]:
    """(report or AlertDeliveryFailed, when the delivery started, how long it took), monotonic seconds. The queue
    retries a message under the same message id."""
    async def work(service: AlertService) -> Any:
        try:
            return await service.deliver(record, now=T1, message_id=message_id, dequeue_count=dequeue_count)
        except AlertDeliveryFailed as error:
            return error

    started = time.monotonic()
    outcome = run(env, work)
    return outcome, started, time.monotonic() - started


def test_a_dripping_receiver_is_cut_off_and_the_healthy_one_beside_it_gets_its_alert(slow_and_healthy,
                                                                                     storage_connection_string):
    slow, healthy = slow_and_healthy
    tenant = str(uuid.uuid4())
    suffix = uuid.uuid4().hex[:8]
    drip_channel, ok_channel = f"a-drip-{suffix}", f"b-ok-{suffix}"  # the slow one first, as routes list them
    env = alert_env(storage_connection_string,
                    {drip_channel: {"type": "webhook", "url": slow.url},
                     ok_channel: {"type": "webhook", "url": healthy.url}},
                    {"routes": [{"name": "both", "tenants": [tenant], "channels": [drip_channel, ok_channel]}]},
                    AUTHWATCH_ALERT_TIMEOUT_SECONDS=str(TIMEOUT_S), AUTHWATCH_ALERT_RETRIES="1",
                    AUTHWATCH_ALERT_OUTAGE_HOURS="0")
    asyncio.run(register(storage_connection_string, tenant, "Drip Co"))
    [record] = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))

    # First queue attempt: the healthy channel is delivered at once; the slow one times out (twice: one retry) and
    # the queue is asked to retry the message for it alone.
    message_id = uuid.uuid4().hex
    outcome, started, took = timed_delivery(env, record, message_id, dequeue_count=1)
    assert isinstance(outcome, AlertDeliveryFailed) and drip_channel in str(outcome) and ok_channel not in str(outcome)
    assert "timed out" in str(outcome)
    assert len(healthy.arrivals) == 1 and healthy.arrivals[0][0] - started < TIMEOUT_S + 1.5  # within its deadline
    assert took < 2 * TIMEOUT_S + 3, f"the attempt took {took:.1f} s: the slow receiver was not cut off"
    assert len(slow.arrivals) == 2  # the first try and its one retry, each cut off at the deadline

    async def rows() -> dict[str, dict[str, Any]]:
        async with AlertTables.from_connection_string(storage_connection_string) as tables:
            return {row["Channel"]: row for row in await tables.rows(tenant)}

    first = asyncio.run(rows())
    assert first[ok_channel]["Status"] == "delivered" and first[drip_channel]["Status"] == "sending"

    # The last queue attempt (no outage parking here): the slow channel is recorded failed, and only it; the healthy
    # channel is not sent again.
    outcome, _, took = timed_delivery(env, record, message_id, dequeue_count=5)
    assert not isinstance(outcome, Exception), outcome
    assert outcome.failed == [drip_channel] and outcome.skipped == [ok_channel] and outcome.sent == {}
    assert took < 2 * TIMEOUT_S + 3
    assert len(healthy.arrivals) == 1
    recorded = asyncio.run(failed_deliveries(storage_connection_string, tenant))
    assert [row["channel"] for row in recorded] == [drip_channel] and "timed out" in recorded[0]["error"]
    final = asyncio.run(rows())
    assert final[ok_channel]["Status"] == "delivered" and final[drip_channel]["Status"] == "failed"


def test_a_channel_that_raises_does_not_stop_the_others(slow_and_healthy, storage_connection_string, monkeypatch):
    """Channels are independent: an unexpected error in one (a bug, storage trouble) still lets the other deliver,
    and the message is retried for the broken one only."""
    from shared.alerts.channels.webhook import GenericWebhook

    _, healthy = slow_and_healthy
    tenant = str(uuid.uuid4())
    suffix = uuid.uuid4().hex[:8]
    broken_channel, ok_channel = f"a-broken-{suffix}", f"b-ok-{suffix}"
    env = alert_env(storage_connection_string,
                    {broken_channel: {"type": "webhook", "url": healthy.url + "?broken"},
                     ok_channel: {"type": "webhook", "url": healthy.url}},
                    {"routes": [{"name": "both", "tenants": [tenant], "channels": [broken_channel, ok_channel]}]})
    original = GenericWebhook.send_once

    async def send_once(self, payload, *, message_id, context):
        if self.name == broken_channel:
            raise RuntimeError("a bug in one channel")
        return await original(self, payload, message_id=message_id, context=context)

    monkeypatch.setattr(GenericWebhook, "send_once", send_once)
    asyncio.run(register(storage_connection_string, tenant, "Broken Co"))
    [record] = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))

    message_id = uuid.uuid4().hex  # the queue retries a message under the same id

    async def work(service: AlertService) -> Any:
        return await service.deliver(record, now=T1, message_id=message_id, dequeue_count=1)

    with pytest.raises(RuntimeError, match="a bug in one channel"):
        run(env, work)
    assert len(healthy.arrivals) == 1

    monkeypatch.setattr(GenericWebhook, "send_once", original)
    report = run(env, work)  # the queue's retry: the broken channel now works, the healthy one is not sent again
    assert report.sent == {broken_channel: 1} and report.skipped == [ok_channel]
    assert len(healthy.arrivals) == 2  # the once-broken channel's one request (same receiver)
