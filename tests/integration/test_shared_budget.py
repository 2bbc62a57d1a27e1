"""Issue 19: one request budget for the whole deployment, over real Azurite (the ledger) and the simulator.

The deployment never sends more than an app's budget in any window, whatever the number of instances; a crashed
instance's share comes back; every attempt, the SDK's retries included, is counted as it leaves; a throttled $batch
item is read again only after its Retry-After.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from shared.collect import budget_share
from shared.collect.budget import RequestBudget
from shared.collect.budget_share import SharedShare
from shared.collect.deadline import Deadline
from shared.storage.budget_ledger import BudgetLedger
from tests.integration.test_hardening_collect import StartSimulator, access, collect, scenario

pytestmark = pytest.mark.integration

TOTAL, WINDOW = 6, 1.0  # a small budget and window so the test sees many windows in a few seconds


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger's timings scaled down with the window (the rules are the same)."""
    for name, value in {"HEARTBEAT_S": 0.2, "LEASE_S": 1.5, "RENEW_BEFORE_S": 0.9, "STOP_BEFORE_S": 0.2,
                        "IDLE_S": 0.6, "CLOCK_SKEW_S": 0.1}.items():
        monkeypatch.setattr(budget_share, name, value)


def most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


async def spend(share: SharedShare, until: float, sent: list[float]) -> None:
    """Send as fast as the share allows (each request answered at once), recording when each was sent."""
    while time.monotonic() < until:
        async with share.slot():
            sent.append(time.monotonic())


def test_instances_sharing_one_ledger_never_send_more_than_the_budget_in_any_window(
        storage_connection_string: str, quick: None) -> None:
    pool = f"reports.test-{uuid.uuid4().hex[:8]}"

    async def go() -> tuple[dict[str, list[float]], int]:
        ledgers = [BudgetLedger.from_connection_string(storage_connection_string) for _ in range(3)]
        await ledgers[0].create()
        shares = {name: SharedShare(ledger, pool, (TOTAL, WINDOW), instance=name)
                  for name, ledger in zip("abc", ledgers)}
        sent: dict[str, list[float]] = {name: [] for name in shares}
        start = time.monotonic()
        # a alone first, then b joins, then c; c leaves early (closed), a and b go on
        tasks = [asyncio.ensure_future(spend(shares["a"], start + 6, sent["a"]))]
        await asyncio.sleep(1.5)
        tasks.append(asyncio.ensure_future(spend(shares["b"], start + 6, sent["b"])))
        await asyncio.sleep(1.5)
        tasks.append(asyncio.ensure_future(spend(shares["c"], start + 4.5, sent["c"])))
        await asyncio.gather(*tasks)
        for share in shares.values():
            await share.aclose()
        transactions = sum(ledger.transactions for ledger in ledgers)
        document, _ = await ledgers[0].read(pool)
        for ledger in ledgers:
            await ledger.close()
        assert document["holders"] == {}  # every instance left
        return sent, transactions

    sent, transactions = asyncio.run(go())
    everything = [at for times in sent.values() for at in times]
    # Microsoft's window (unpadded): never more than the budget, across all three instances
    assert most_in_any_window(everything, WINDOW) <= TOTAL
    assert all(sent[name] for name in "abc"), {name: len(times) for name, times in sent.items()}  # each got a share
    # the budget was used, not starved: ~6 s at 6 per (1 s + margin) is ~30; at least half of it
    assert len(everything) >= 15, len(everything)
    # The ledger costs at most a read and a write per heartbeat of each instance with work (12 instance-seconds
    # here, plus joining and leaving), never a round trip per request.
    beats = 12 / budget_share.HEARTBEAT_S + 2 * len(sent)
    assert transactions <= 2 * beats + 1, transactions


def test_a_crashed_instance_s_share_comes_back_after_its_lease_and_a_window(
        storage_connection_string: str, quick: None) -> None:
    pool = f"reports.test-{uuid.uuid4().hex[:8]}"

    async def go() -> tuple[float, float, int]:
        ledger = BudgetLedger.from_connection_string(storage_connection_string)
        await ledger.create()
        crashed = SharedShare(ledger, pool, (TOTAL, WINDOW), instance="crashed")
        async with crashed.slot():
            pass
        lease_end = crashed._until  # wall clock
        # A crash: the heartbeat stops without leaving (the process is gone), its slots still in the ledger.
        crashed.limiter.set_limit(0)
        assert crashed._task is not None
        crashed._task.cancel()
        await asyncio.gather(crashed._task, return_exceptions=True)
        survivor = SharedShare(ledger, pool, (TOTAL, WINDOW), instance="survivor")
        async with survivor.slot(Deadline.after(30)):
            first = time.time()
        await asyncio.sleep(budget_share.HEARTBEAT_S * 3)
        grown = survivor.limiter.limit
        await survivor.aclose()
        await ledger.close()
        return lease_end, first, grown

    lease_end, first, grown = asyncio.run(go())
    # nothing while the crashed lease ran or its requests could still be counted; everything soon after
    assert first >= lease_end + WINDOW
    assert grown == TOTAL


def test_an_sdk_retry_waits_for_a_budget_slot_like_any_request(simulator_for: StartSimulator) -> None:
    """A 503 on the sign-ins with Retry-After 1: the SDK retries, and that retry is a request the reports service
    counts. With one slot per tenant per 10 s, the retry's slot is 10 s away: past a 4 s deadline, so it is not sent
    (the request counted once), instead of sent behind the budget's back."""
    sim = simulator_for(scenario({"graph.signIns": {"status": 503, "times": 1, "retryAfter": 1}}))
    budget = RequestBudget(reports_per_tenant=(1, 10.0))
    snapshot, _ = collect(sim, deadline=Deadline.after(4), budget=budget)
    assert sim.request_counts["graph.signIns"] == 1
    assert snapshot.errors["graph.signIns"].code == "DeadlineExceeded"


def test_a_throttled_batch_item_is_read_again_only_after_its_retry_after(simulator_for: StartSimulator) -> None:
    sim = simulator_for(scenario({"graph.conditionalAccessPolicies": {"status": 429, "times": 1, "retryAfter": 2}}))
    snapshot, seconds = collect(sim, deadline=Deadline.after(20))
    assert "graph.conditionalAccessPolicies" not in snapshot.errors
    assert sim.request_counts["graph.conditionalAccessPolicies"] == 2
    assert seconds >= 2  # Microsoft's Retry-After was waited (a lower bound: a slow machine only adds to it)


def test_a_batch_item_retry_after_past_the_deadline_is_not_read_again(simulator_for: StartSimulator) -> None:
    sim = simulator_for(scenario({"graph.conditionalAccessPolicies": {"status": 429, "retryAfter": 179}}))
    snapshot, _ = collect(sim, deadline=Deadline.after(5))
    error = snapshot.errors["graph.conditionalAccessPolicies"]
    assert error.code == "DeadlineExceeded" and "Retry-After 179" in error.message
    assert sim.request_counts["graph.conditionalAccessPolicies"] == 1  # the batch item only


def test_the_deployment_s_budget_is_built_from_the_settings(storage_connection_string: str) -> None:
    """The Functions app and the CLI draw on the ledger in the deployment's storage account, not on a budget of
    their own: two monitors built from the same settings share one app budget."""
    from shared.bootstrap import build_monitor
    from shared.settings import Settings

    settings = Settings.from_env({"AUTHWATCH_STORAGE_CONNECTION_STRING": storage_connection_string})

    async def go() -> list[Any]:
        first, second = build_monitor(settings), build_monitor(settings)
        await first.create()
        app = f"app-{uuid.uuid4().hex[:8]}"
        shares = [monitor.budget.reports_limiters("tenant", app)[1] for monitor in (first, second)]
        async with shares[0].slot():
            pass
        document, _ = await first.ledger.read(f"reports.{app}")
        await first.close()
        await second.close()
        return [type(share).__name__ for share in shares] + [sorted(document["holders"])]

    kinds = asyncio.run(go())
    assert kinds[:2] == ["SharedShare", "SharedShare"]
    assert len(kinds[2]) == 1
