"""An incomplete read is never a complete one (issue 17, item 4): paging that stops at the page cap, or meets a
nextLink it already followed, is recorded as that source's error, so the verdict is not PASS on what was not read
and the sign-ins watermark does not move past unread data. Over real HTTPS against the simulator."""

from __future__ import annotations

import copy

import pytest

from shared.collect import exchange, graph
from shared.controls.evaluate import evaluate
from shared.state.compare import compare, watermark
from tests.builders import block_policy
from tests.integration.test_collect import APP, HEALTHY, NOW, access, collect, tenant

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


def test_a_sign_in_read_cut_at_the_cap_does_not_move_the_watermark(simulator_for, monkeypatch):
    scenario = paged_scenario()
    # Sign-ins are read 1,000 a page ($top, the documented maximum), so 1,001 need a second page; allow none.
    scenario["tenants"][0]["graph"]["signIns"] = [
        {"id": f"s{i}", "createdDateTime": f"2026-11-23T07:{i % 60:02d}:00Z", "userPrincipalName": "bob@contoso.com",
         "userId": "u-bob", "clientAppUsed": "Browser", "status": {"errorCode": 0}} for i in range(1001)]
    monkeypatch.setattr(graph, "MAX_PAGES", 0)
    sim = simulator_for(scenario)
    [snapshot] = collect(sim, access(HEALTHY))
    assert snapshot.errors["graph.signIns"].code == "PageLimitReached"
    before = {"lastCollectedAt": "2026-11-23T07:45:00Z", "lastSuccessAt": "2026-11-23T07:45:00Z",
              "readThrough": "2026-11-23T07:45:00Z"}
    state = compare(before, None, snapshot, now=NOW).state
    assert watermark(state) == watermark(before)  # the unread stretch is read again next cycle
