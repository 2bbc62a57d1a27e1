"""The dashboard in a real browser: Playwright drives Debian's Chromium (headless, /usr/bin/chromium; no browser is
downloaded) against `authwatch serve` over the demo fleet (its own Azurite + the simulator, two cycles).

Each page's screenshot is written to artifacts/screenshots/ (gitignored) for a person to look at."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.e2e.browser import CHROMIUM, collect_problems, require_chromium  # noqa: E402

sync_api = require_chromium()

from shared.cli.demo_data import running_demo  # noqa: E402
from shared.cli.serve import DashboardServer  # noqa: E402

pytestmark = pytest.mark.integration

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--no-first-run", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CONTOSO, FABRIKAM, TAILSPIN, LITWARE, WOODGROVE = (f"8c1d0f4e-1a2b-4c3d-8e9f-00000000000{i}" for i in (1, 2, 4, 6, 5))
# The status colours of shared/views/web/app.css, as the browser computes them.
COLOURS = {"pass": "rgb(31, 136, 61)", "fail": "rgb(207, 34, 46)", "pending": "rgb(227, 179, 65)",
           "unknown": "rgb(130, 80, 223)", "not_applicable": "rgb(216, 222, 228)"}


@pytest.fixture(scope="module")
def server() -> Iterator[DashboardServer]:
    with running_demo(say=lambda message: None, storage_from_env=False) as demo:
        with DashboardServer(demo.env, port=0, clock=demo.clock, source="demo fleet (browser test)") as running:
            yield running


@pytest.fixture(scope="module")
def browser(server) -> Iterator[Any]:  # after the server: seeding the demo runs its own event loop
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def problems() -> list[str]:
    """What the browser console reported as errors (a test expecting some clears it)."""
    return []


@pytest.fixture
def page(browser, server, problems) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    tab = context.new_page()
    collect_problems(tab, problems)
    yield tab
    context.close()
    assert problems == []  # no script error, no CSP violation, no failed request


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def cell(page, tenant_id: str, control: str):
    return page.locator(f'tr[data-tenant-id="{tenant_id}"] td[data-control="{control}"]')


def background(locator) -> str:
    return locator.evaluate("node => getComputedStyle(node).backgroundColor")


def test_fleet_page_shows_every_tenant_in_the_right_colours(page):
    page.goto("/dashboard")
    rows = page.locator("#matrix-body tr[data-tenant-id]")
    rows.first.wait_for()
    assert rows.count() == 8

    blocked = cell(page, FABRIKAM, "entra_legacy_auth_blocked")
    assert blocked.get_attribute("data-status") == "fail" and blocked.inner_text() == "FAIL"
    assert background(blocked) == COLOURS["fail"]
    contoso = page.locator(f'tr[data-tenant-id="{CONTOSO}"] td[data-control]')
    assert contoso.count() == 9
    assert {background(contoso.nth(i)) for i in range(9)} == {COLOURS["pass"]}
    assert background(cell(page, TAILSPIN, "entra_legacy_signins_blocked")) == COLOURS["pending"]
    assert background(cell(page, LITWARE, "entra_legacy_signins_blocked")) == COLOURS["not_applicable"]
    unreachable = page.locator(f'tr[data-tenant-id="{WOODGROVE}"] td.cell.unreachable')  # one cell saying why
    assert unreachable.count() == 1 and "Cannot read this tenant" in unreachable.inner_text()
    for status, colour in COLOURS.items():  # the legend uses the same colours
        assert background(page.locator(f'[data-legend="{status}"]')) == colour

    alerts = [int(rows.nth(i).get_attribute("data-open-alerts")) for i in range(8)]
    assert alerts == sorted(alerts, reverse=True) and alerts[0] > 0 and alerts[-1] == 0  # open alerts first
    screenshot(page, "fleet.png")


def test_fleet_page_sorts_and_filters(page):
    page.goto("/dashboard")
    page.locator("#matrix-body tr[data-tenant-id]").first.wait_for()
    names = lambda: page.locator("#matrix-body tr[data-tenant-id]").evaluate_all(  # noqa: E731
        "rows => rows.map(row => row.dataset.tenantName)")
    page.click('th[data-sort="name"]')
    assert names() == sorted(names(), key=str.lower)
    page.click('th[data-sort="name"]')
    assert names() == sorted(names(), key=str.lower, reverse=True)
    page.click('th[data-sort="entra_legacy_auth_blocked"]')
    assert names()[:2] == ["Fabrikam", "Adatum"] or names()[:2] == ["Adatum", "Fabrikam"]  # failing first

    page.fill("#filter-text", "tail")
    assert names() == ["Tailspin Toys"]
    page.fill("#filter-text", "")
    page.select_option("#filter-control", "exo_smtp_auth_disabled")
    page.select_option("#filter-cell", "fail")
    assert names() == ["Northwind Traders"]
    page.select_option("#filter-control", "")
    page.select_option("#filter-cell", "any")
    page.select_option("#filter-tenant", "healthy")
    assert names() == ["Contoso"]
    assert page.inner_text("#matrix-count") == "1 of 8 tenants"


def test_tenant_page_counts_down_an_open_enforcement_window(page):
    page.goto("/dashboard")
    page.click(f'tr[data-tenant-id="{TAILSPIN}"] .tenant a')
    page.wait_for_selector("#countdown")
    assert page.url.endswith(f"#/tenants/{TAILSPIN}")
    assert page.inner_text("#tenant-name").startswith("Tailspin Toys")
    countdown = page.locator("#countdown")
    assert re.fullmatch(r"1?\d+h \d\dm \d\ds left", countdown.inner_text())
    assert 0 < int(countdown.get_attribute("data-seconds-left")) <= 11 * 3600
    assert page.get_attribute("#window", "data-window-open") == "true"
    first = countdown.inner_text()
    page.wait_for_function("first => document.getElementById('countdown').textContent !== first", arg=first,
                           timeout=5000)  # it ticks
    labels = page.locator("#timeline text.signin").evaluate_all("nodes => nodes.map(node => node.textContent)")
    assert any("sales@tailspin.example" in label and "Authenticated SMTP" in label for label in labels)
    assert page.locator('#control-entra_legacy_signins_blocked[data-status="pending"]').count() == 1
    screenshot(page, "tenant-tailspin.png")


def test_tenant_page_shows_drift_before_and_after_with_who_and_when(page):
    page.goto(f"/dashboard#/tenants/{FABRIKAM}")
    drift = page.locator('#drift .drift[data-event-type="drift.weakened"]')
    drift.wait_for()
    change = drift.locator('.change[data-field="state"]')
    assert change.locator(".before").inner_text() == "enabled"
    assert change.locator(".after").inner_text() == "enabledForReportingButNotEnforced"
    assert "→" in change.inner_text()
    assert drift.locator(".who").inner_text() == "admin@fabrikam.example"
    assert "23 Nov 2026, 08:20 UTC" in drift.inner_text()
    assert "Block legacy authentication" in drift.inner_text()

    alerts = page.locator("#open-alerts li[data-event-type]")
    assert "drift.weakened" in alerts.evaluate_all("items => items.map(item => item.dataset.eventType)")
    shown_twice = set(alerts.evaluate_all("items => items.map(item => item.dataset.eventId)")) & set(
        page.locator("#history li[data-event-id]").evaluate_all("items => items.map(item => item.dataset.eventId)"))
    assert shown_twice == set()  # open alerts are listed once, above the rest of the history

    control = page.locator('#control-entra_legacy_auth_blocked[data-status="fail"]')
    command = control.locator("pre.remediation").inner_text()
    assert "Conditional Access" in command
    control.locator("button.copy").click()
    page.wait_for_function("() => document.querySelector('#control-entra_legacy_auth_blocked button.copy')"
                           ".textContent === 'Copied'", timeout=5000)
    assert page.evaluate("navigator.clipboard.readText()") == command
    screenshot(page, "tenant-fabrikam.png")


def test_tenant_page_shows_the_timeline_with_the_drift_and_the_platform_dates(page):
    """Issue 18, item 2: the tenant's timeline, newest first, from GET …/timeline; every value as text."""
    page.goto(f"/dashboard#/tenants/{FABRIKAM}")
    timeline = page.locator("#protection-timeline")
    change = timeline.locator('li[data-kind="change"]').first
    change.wait_for()
    assert change.locator(".who").inner_text() == "admin@fabrikam.example"
    assert change.get_attribute("data-at") == "2026-11-23T08:20:00Z" and "23 Nov 2026, 08:20 UTC" in change.inner_text()
    field = change.locator('.change[data-field="state"]')
    assert field.locator(".before").inner_text() == "enabled"
    assert field.locator(".after").inner_text() == "enabledForReportingButNotEnforced"
    assert "In force: at once" in change.inner_text()
    smtp = timeline.locator('li[data-kind="platform"]', has_text="MC786329")
    assert smtp.get_attribute("data-at") == "2026-12-31T00:00:00Z" and smtp.get_attribute("data-status") == "upcoming"
    assert "SMTP AUTH Basic authentication off by default" in smtp.inner_text() and "31 Dec 2026" in smtp.inner_text()
    assert "https://techcommunity.microsoft.com/" in smtp.inner_text()
    assert timeline.locator('li[data-kind="platform"]', has_text="MC1184649").get_attribute("data-status") == "past"
    times = timeline.locator("li[data-kind]").evaluate_all("items => items.map(i => i.dataset.at)")
    assert times == sorted(times, reverse=True) and times.index("2026-12-31T00:00:00Z") < times.index(
        "2026-11-23T08:20:00Z")  # newest first: the coming switch-off above the drift
    assert timeline.locator("a").count() == 0  # sources are text, never links made from data

    page.goto(f"/dashboard#/tenants/{TAILSPIN}")
    window = page.locator('#protection-timeline li[data-kind="in_force"][data-status="open"]')
    window.wait_for()
    assert "in force by" in window.inner_text().lower()
    page.goto(f"/dashboard#/tenants/{FABRIKAM}")
    timeline.locator('li[data-kind="change"]').first.wait_for()
    timeline.scroll_into_view_if_needed()
    screenshot(page, "tenant-timeline.png")


def test_unknown_tenant_shows_an_error_with_a_way_back(page, problems):
    page.goto("/dashboard#/tenants/8c1d0f4e-1a2b-4c3d-8e9f-0000000000ff")
    error = page.locator(".error")
    error.wait_for()
    assert "no tenant" in error.inner_text() and "fleet" in error.inner_text()
    assert page.locator('a[href="#/"]').count() >= 1
    assert all("404" in problem for problem in problems)  # the browser logs the 404 itself
    problems.clear()


def test_the_page_sends_the_run_token_and_a_same_origin_action_passes(page, server, problems):
    """`authwatch serve` hands the page its run's token: the page's own API calls carry it, and an action sent from
    the page (JSON, the token, Chromium's own Origin and Sec-Fetch-Site) passes, while the same call without the token
    or as text/plain is refused (issue 22, item 2)."""
    sent: list[dict[str, str]] = []
    page.on("request", lambda request: sent.append(request.headers) if "/api/tenants" in request.url else None)
    page.goto(f"/dashboard#/tenants/{FABRIKAM}")
    page.locator("#open-alerts li[data-event-type]").first.wait_for()
    token = page.evaluate("JSON.parse(document.getElementById('authwatch-config').textContent).token")
    assert token == server.token and sent and all(h.get("x-authwatch-token") == token for h in sent)

    alert_id = page.evaluate(f"fetch('/api/tenants/{FABRIKAM}').then(r => r.json()).then(d => d.openAlerts[0].id)")
    post = """([path, headers, body]) => fetch(path, {method: "POST", headers, body, credentials: "same-origin"})
                 .then(r => r.status)"""
    path = f"/api/tenants/{FABRIKAM}/alerts/{alert_id}/ack"
    body = '{"by": "browser@msp.example"}'
    json_type = {"Content-Type": "application/json"}
    assert page.evaluate(post, [path, json_type, body]) == 403  # no token
    assert page.evaluate(post, [path, {"Content-Type": "text/plain", "X-Authwatch-Token": token}, body]) == 415
    assert page.evaluate(post, [path, {**json_type, "X-Authwatch-Token": token}, body]) == 200
    assert len(problems) == 2 and all(("403" in p or "415" in p) for p in problems)  # the browser logs the refusals
    problems.clear()
