"""Reports budgets are per app registration (platform-facts.md): sharding tenants across apps multiplies them."""

from __future__ import annotations

import asyncio

import pytest

from shared.collect.budget import RequestBudget


async def _granted_at_once(budget: RequestBudget, tenant: str, app: str) -> bool:
    try:
        await asyncio.wait_for(budget.reports(tenant, app), timeout=0.2)
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
