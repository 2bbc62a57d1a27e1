"""An incomplete read is never a complete one (issue 17, item 4): paging that stops at the page cap, or meets a
nextLink it already followed, is recorded as that source's error, so the verdict is not PASS on what was not read
and the sign-ins watermark does not move past unread data: a sign-in read cut at its page budget keeps the newest
pages and owes the rest to the next cycles (a page that fails mid-read holds the watermark:
test_fault_matrix_microsoft). Over real HTTPS against the simulator."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta, timezone

import pytest

from shared.collect import exchange, graph
from shared.controls.evaluate import evaluate
from shared.collect.snapshot import collect_tenant
from shared.state.compare import compare, unread_signins, watermark
from tests.builders import block_policy
from tests.integration.test_collect import APP, HEALTHY, NOW, access, collect, endpoints_for, tenant

pytestmark = pytest.mark.integration


def paged_scenario() -> dict:
    contoso = tenant(HEALTHY, "Contoso")
    # Five report-only copies and, last, the one enforced block: page 1 alone would not show it at all.
    others = [block_policy(f"{i}1111111-1111-1111-1111-111111111111", state="enabledForReportingButNotEnforced")
              for i in range(1, 6)]
    contoso["graph"]["conditionalAccessPolicies"] = [*others, copy.deepcopy(block_policy())]
    contoso["exchange"]["casMailboxes"] = [{"Identity": f"user{i}", "PrimarySmtpAddress": f"user{i}@contoso.com",
                                            "SmtpClientAuthenticationDisabled": None, "PopEnabled": False,
                                            "ImapEnabled": False} for i in range(6)]
    return {"app": dict(APP), "pageSize": {"graph": 2, "exchange": 2}, "tenants": [contoso]}


def test_the_page_cap_is_the_sources_error_not_a_short_answer(simulator_for, monkeypatch):
    monkeypatch.setattr(graph, "MAX_PAGES", 1)
    monkeypatch.setattr(exchange, "MAX_PAGES", 1)
    sim = simulator_for(paged_scenario())
    [snapshot] = collect(sim, access(HEALTHY))
    for source in ("graph.conditionalAccessPolicies", "exchange.casMailboxes"):
        assert snapshot.errors[source].code == "PageLimitReached", source
        assert "page cap (1 pages)" in snapshot.errors[source].message
        assert not snapshot.collected(source)
    verdicts = {r.control: r.status for r in evaluate(snapshot)}
    assert verdicts["entra_legacy_auth_blocked"] == "unknown"
    assert verdicts["exo_smtp_auth_mailbox_overrides"] == "unknown"


def test_within_the_cap_every_page_is_read(simulator_for):
    sim = simulator_for(paged_scenario())
    [snapshot] = collect(sim, access(HEALTHY))
    assert len(snapshot.get("graph.conditionalAccessPolicies")) == 6
    assert len(snapshot.get("exchange.casMailboxes")) == 6
    assert {r.control: r.status for r in evaluate(snapshot)}["entra_legacy_auth_blocked"] == "pass"


def signin(at: str, *, app: str = "Browser", status: int = 0) -> dict:
    return {"id": f"s-{at}-{app}", "createdDateTime": f"2026-11-{at}:00Z", "userPrincipalName": "scanner@contoso.com",
            "userId": "u-scanner", "clientAppUsed": app, "status": {"errorCode": status}}


HOURS = ["22T22:00", "22T23:00", *(f"23T{h:02d}:00" for h in range(8))]  # hourly, 22:00 the day before to 07:00


def busy_scenario(signins: list[dict]) -> dict:
    scenario = paged_scenario()
    scenario["tenants"][0]["graph"]["signIns"] = signins
    return scenario


def collect_from(sim, since, backlog=None, now=NOW):
    async def go():
        return await collect_tenant(access(HEALTHY), endpoints_for(sim), now=now, since=since, backlog=backlog)

    return asyncio.run(go())


SINCE = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)  # a first look: 48 hours back


def test_a_busy_tenant_is_read_newest_first_and_the_rest_next_cycle(simulator_for, monkeypatch):
    # Ten hourly sign-ins, two a page, three pages a cycle: the newest six are read, the four older ones are owed.
    monkeypatch.setattr(graph, "SIGNIN_PAGES_PER_CYCLE", 3)
    monkeypatch.setattr(graph, "SIGNIN_PAGE_SIZE", 2)
    signins = [signin(at) for at in HOURS]
    signins[1] = signin(HOURS[1], app="Authenticated SMTP")  # the scanner, long after the block: not read at first
    sim = simulator_for(busy_scenario(signins))
    first = collect_from(sim, SINCE)
    error = first.errors["graph.signIns"]
    assert (error.code, error.unread_from, error.unread_until) == (
        "PageLimitReached", "2026-11-21T08:00:00Z", "2026-11-23T02:00:00Z")
    assert "not read yet" in error.message and not first.collected("graph.signIns")
    verdict = {r.control: r for r in evaluate(first)}["entra_legacy_signins_blocked"]
    assert verdict.status == "unknown" and "2026-11-23T02:00:00Z" in verdict.summary  # never PASS on a part

    state = compare(None, None, first, now=NOW).state
    assert state["readThrough"] == "2026-11-23T08:00:00Z"  # the newest stretch was read in full ...
    assert state["unreadSignIns"] == {"from": "2026-11-21T08:00:00Z", "until": "2026-11-23T02:00:00Z"}  # ... and owed

    # Next cycle: the new stretch (05:00 on, the 3-hour overlap) takes two pages, the third goes to the owed one.
    later = NOW + timedelta(minutes=15)
    second = collect_from(sim, watermark(state), unread_signins(state), now=later)
    assert second.errors["graph.signIns"].unread_until == "2026-11-23T01:00:00Z"
    state = compare(state, None, second, now=later).state
    # What falls out of the 48-hour evidence window is no longer owed.
    assert unread_signins(state) == (later - timedelta(hours=48), datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc))

    monkeypatch.setattr(graph, "SIGNIN_PAGES_PER_CYCLE", 10)
    later += timedelta(minutes=15)
    third = collect_from(sim, watermark(state), unread_signins(state), now=later)
    assert "graph.signIns" not in third.errors  # caught up
    results = {r.control: r for r in evaluate(third)}
    assert results["entra_legacy_signins_blocked"].status == "fail"  # the scanner's SMTP AUTH success, at last
    assert compare(state, None, third, now=later).state.get("unreadSignIns") is None


def test_a_gap_in_what_was_read_is_reported_before_the_rest_is_read(simulator_for, monkeypatch):
    monkeypatch.setattr(graph, "SIGNIN_PAGES_PER_CYCLE", 1)
    monkeypatch.setattr(graph, "SIGNIN_PAGE_SIZE", 2)
    signins = [signin(at) for at in HOURS]
    signins[-1] = signin(HOURS[-1], app="Authenticated SMTP")
    sim = simulator_for(busy_scenario(signins))
    snapshot = collect_from(sim, SINCE)
    assert snapshot.errors["graph.signIns"].partial
    verdict = {r.control: r for r in evaluate(snapshot)}["entra_legacy_signins_blocked"]
    assert verdict.status == "fail" and "More may follow" in verdict.summary
    assert verdict.evidence["partialRead"]["unreadUntil"] == "2026-11-23T06:00:00Z"
