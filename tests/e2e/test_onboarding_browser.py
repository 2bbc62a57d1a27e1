"""The dashboard's Onboarding page in a real browser (issue 20, item 4): Playwright drives Debian's Chromium (headless,
/usr/bin/chromium) against `authwatch serve` over an Azurite of its own, so what this module saves (OnboardingRecords,
as `authwatch tenants discover/onboard` saves them) is all there is: first nothing, then a failed customer and a
ready one. The page is reached from the header's navigation, like a person would."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest

from tests.e2e.browser import CHROMIUM, collect_problems, require_chromium  # noqa: E402

sync_api = require_chromium()

from shared.cli.serve import DashboardServer  # noqa: E402
from shared.storage.account import account  # noqa: E402
from shared.tenants.onboarding_records import OnboardingRecord, OnboardingRecords  # noqa: E402
from simulator.azurite import Azurite  # noqa: E402
from tests.e2e.test_dashboard_browser import LAUNCH_ARGS, screenshot  # noqa: E402

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc)
FAILED, READY = "0b0a0d00-0000-4000-8000-000000000001", "0b0a0d00-0000-4000-8000-000000000002"
FIX = ("Make sure the account you sign in with is in your AdminAgents group and in the security group the "
       "relationship's roles are assigned to; then run the onboarding again.")


@pytest.fixture(scope="module")
def storage() -> Iterator[str]:
    with Azurite() as azurite:
        yield azurite.connection_string


@pytest.fixture(scope="module")
def server(storage: str) -> Iterator[DashboardServer]:
    with DashboardServer({"AUTHWATCH_STORAGE_CONNECTION_STRING": storage}, port=0,
                         source="onboarding (browser test)") as running:
        yield running


@pytest.fixture(scope="module")
def browser(server) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server) -> Iterator[Any]:
    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=server.url)
    tab = context.new_page()
    collect_problems(tab, problems)
    yield tab
    context.close()
    assert problems == []  # no script error, no CSP violation, no failed request


def save(storage: str, *records: OnboardingRecord) -> None:
    async def write() -> None:
        store = OnboardingRecords(account(storage).table_service())
        try:
            for record in records:
                await store.save(record)
        finally:
            await store.close()

    # Playwright's sync API runs an event loop in this thread: the write gets a thread (and a loop) of its own.
    with ThreadPoolExecutor(max_workers=1) as worker:
        worker.submit(asyncio.run, write()).result(timeout=60)


def test_the_onboarding_page_says_what_to_run_when_nothing_was_onboarded(page):
    page.goto("/dashboard")
    page.click('nav.pages a[data-nav="onboarding"]')
    empty = page.locator("#onboarding-empty")
    empty.wait_for()
    assert empty.inner_text() == "No GDAP onboarding yet: run `authwatch tenants discover`."
    assert page.url.endswith("#/onboarding")
    assert page.get_attribute('nav.pages a[data-nav="onboarding"]', "aria-current") == "page"


def test_the_onboarding_page_shows_a_failed_customers_fix_first_and_a_ready_one(page, storage):
    save(storage,
         OnboardingRecord(READY, "Alpine Ski House", "ready", steps={"consent": "created"}, updated_at=NOW),
         OnboardingRecord(FAILED, "Coho <Winery>", "failed", FIX, "consent failed: 403 Forbidden <b>x</b>",
                          {"consent": "failed"}, NOW))
    page.goto("/dashboard")
    page.locator("#matrix-body, .empty").first.wait_for()  # the fleet (no tenant registered here)
    page.click('nav.pages a[data-nav="onboarding"]')
    rows = page.locator("#onboarding-body tr[data-tenant-id]")
    rows.first.wait_for()
    assert rows.evaluate_all("rows => rows.map(row => row.dataset.tenantId)") == [FAILED, READY]  # a fix first

    failed = page.locator(f'tr[data-tenant-id="{FAILED}"]')
    assert failed.locator("[data-onboarding-state]").inner_text() == "Failed"
    assert failed.locator("td.fix").inner_text() == FIX
    assert "Coho <Winery>" in failed.locator("th.customer").inner_text()  # text, never markup
    assert failed.locator("td.why").inner_text() == "consent failed: 403 Forbidden <b>x</b>"
    assert failed.locator("td.why b").count() == 0

    ready = page.locator(f'tr[data-tenant-id="{READY}"]')
    assert ready.locator("[data-onboarding-state]").inner_text() == "Ready"
    assert ready.locator("td.fix").inner_text() == "Nothing to do: watched."
    assert ready.locator("th.customer a").get_attribute("href") == f"#/tenants/{READY}"  # watched: its tenant page

    counts = page.locator("#onboarding-totals")
    assert counts.locator('[data-state="failed"] b').inner_text() == "1"
    assert counts.locator('[data-state="ready"] b').inner_text() == "1"
    assert counts.locator('[data-state="lacks_role"] b').inner_text() == "0"
    assert "1 needing a fix" in page.inner_text("#onboarding-sub")
    screenshot(page, "onboarding.png")

    page.click('nav.pages a[data-nav="fleet"]')  # and back to the fleet from the same navigation
    page.locator("#onboarding").wait_for(state="detached")
    assert page.get_attribute('nav.pages a[data-nav="fleet"]', "aria-current") == "page"
