"""Reports budgets are per app registration (platform-facts.md): sharding tenants across apps multiplies them."""

from __future__ import annotations

import asyncio

import pytest

from shared.collect.budget import RequestBudget, SlidingWindowLimiter


async def _granted_at_once(budget: RequestBudget, tenant: str, app: str) -> bool:
    try:
        for limiter in budget.reports_limiters(tenant, app):  # the tenant's, then the app's (kept: not released)
            await asyncio.wait_for(limiter.acquire(), timeout=0.2)  # type: ignore[attr-defined]
        return True
    except asyncio.TimeoutError:
        return False


@pytest.mark.parametrize("second_app, granted", [("app-a", False), ("APP-A", False), ("app-b", True)])
def test_a_full_app_budget_holds_back_its_own_tenants_only(second_app: str, granted: bool) -> None:
    async def scenario() -> bool:
        budget = RequestBudget(reports_per_app=(2, 10.0))
        assert await _granted_at_once(budget, "tenant-1", "app-a")
        assert await _granted_at_once(budget, "tenant-2", "app-a")
        return await _granted_at_once(budget, "tenant-3", second_app)

    assert asyncio.run(scenario()) is granted


@pytest.mark.parametrize("second_app, granted", [("app-a", False), ("app-b", True)])
def test_a_tenants_own_budget_is_per_app_too(second_app: str, granted: bool) -> None:
    async def scenario() -> bool:
        budget = RequestBudget(reports_per_tenant=(1, 10.0))
        assert await _granted_at_once(budget, "tenant-1", "app-a")
        return await _granted_at_once(budget, "tenant-1", second_app)

    assert asyncio.run(scenario()) is granted


def test_a_slot_counts_while_in_flight_and_for_a_window_after_its_answer() -> None:
    """Microsoft counts a request when it arrives, somewhere between leaving and answering: a request still in
    flight holds its slot however long it waits in the connection pool, and the window starts at its answer."""
    clock = [100.0]
    limiter = SlidingWindowLimiter(2, 10.0, clock=lambda: clock[0])

    async def scenario() -> list[int]:
        seen = []
        await limiter.acquire()
        await limiter.acquire()
        clock[0] += 60  # a minute in flight (a pool queue): both still count
        seen.append(limiter.used())
        limiter.release()  # the first answer: it counts for the window from now
        clock[0] += 10.4
        seen.append(limiter.used())
        clock[0] += 0.2  # past the padded window (10 s + 5 %): gone; the second is still in flight
        seen.append(limiter.used())
        return seen

    assert asyncio.run(scenario()) == [2, 2, 1]


def test_a_smaller_share_holds_back_and_a_bigger_one_wakes_the_waiters() -> None:
    async def scenario() -> tuple[bool, bool]:
        limiter = SlidingWindowLimiter(1, 10.0)
        await limiter.acquire()
        limiter.release()
        waiting = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0.05)
        held_back = not waiting.done()
        limiter.set_limit(2)  # the instance's share of the app budget grew
        await asyncio.wait_for(waiting, timeout=2)
        return held_back, waiting.done()

    assert asyncio.run(scenario()) == (True, True)


def test_a_429_halves_the_limit_for_a_window() -> None:
    clock = [0.0]
    limiter = SlidingWindowLimiter(10, 10.0, clock=lambda: clock[0])
    limiter.throttled()
    assert limiter.effective_limit() == 5
    clock[0] += 10.6
    assert limiter.effective_limit() == 10
