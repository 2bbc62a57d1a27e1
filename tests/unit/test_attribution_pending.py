"""What authwatch remembers to attribute later, and when it asks the audit log (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from shared.state import events as ev
from shared.state.attribution_pending import (
    FIRST_TRY,
    MAX_PENDING,
    NOT_YET_KNOWN,
    QUERY_EVERY,
    due,
    expired,
    merged,
    observed,
    pending_from,
)
from shared.state.bounded_set import as_bounded

T = datetime(2026, 12, 6, 8, 0, tzinfo=timezone.utc)


def drift(section: str, item: str, changes: list[dict], kind: str = ev.BASIC_AUTH_REENABLED, **details) -> ev.Event:
    return ev.Event(at=T, tenant_id="t", type=kind, control="c", severity="high", summary="s",
                    details={"section": section, "item": item, "changes": changes, **details}, subject=item)


def test_an_exchange_reenable_without_an_actor_is_marked_and_remembered() -> None:
    event = drift("transport", "transport.SmtpClientAuthenticationDisabled",
                  [{"field": "transport.SmtpClientAuthenticationDisabled", "before": True, "after": False}])
    [entry] = pending_from([event], since=T - timedelta(minutes=15))
    assert event.details["actor"] == NOT_YET_KNOWN and event.details["changedBy"] is None
    assert entry["eventId"] == event.id and entry["kind"] == "transportSmtpAuth" and entry["value"] is False
    change = observed(entry)
    assert change.settings == {"SmtpClientAuthenticationDisabled": False}
    assert change.since == T - timedelta(minutes=15) and change.seen_at == T


def test_mailboxes_added_to_the_override_set_are_the_objects_looked_for() -> None:
    before, after = as_bounded(["a@contoso.com"]), as_bounded(["a@contoso.com", "printer@contoso.com"])
    event = drift("mailboxOverrides", "smtpAuthEnabledMailboxes",
                  [{"field": "smtpAuthEnabledMailboxes", "before": before, "after": after}])
    [entry] = pending_from([event], since=None)
    assert entry["kind"] == "mailboxSmtpAuth" and entry["objects"] == ["printer@contoso.com"]


def test_policies_and_assignments_map_to_their_cmdlets() -> None:
    kinds = [entry["kind"] for entry in pending_from([
        drift("authenticationPolicies", "authPolicy:Legacy printers", [], kind=ev.DRIFT_WEAKENED),
        drift("authenticationPolicies", "defaultPolicy", [], kind=ev.DRIFT_WEAKENED),
        drift("sharepoint", "sharepoint.isLegacyAuthProtocolsEnabled", [])], since=None)]
    assert kinds == ["authenticationPolicy", "defaultAuthenticationPolicy", "sharepointLegacyAuth"]


def test_conditional_access_and_known_actors_and_other_events_are_left_alone() -> None:
    events = [drift("conditionalAccess", "ca:1", [], kind=ev.DRIFT_WEAKENED),
              drift("transport", "transport.SmtpClientAuthenticationDisabled", [], changedBy="jane@contoso.com"),
              drift("transport", "transport.SmtpClientAuthenticationDisabled", [], kind=ev.DRIFT_STRENGTHENED)]
    assert pending_from(events, since=None) == []
    assert "actor" not in events[0].details


def test_a_query_waits_an_hour_after_the_change_and_half_an_hour_between_queries() -> None:
    pending = [{"seenAt": "2026-12-06T08:00:00Z"}]
    assert not due(pending, None, T + FIRST_TRY - timedelta(minutes=1))
    assert due(pending, None, T + FIRST_TRY)
    assert not due(pending, T + FIRST_TRY, T + FIRST_TRY + QUERY_EVERY - timedelta(minutes=1))
    assert due(pending, T + FIRST_TRY, T + FIRST_TRY + QUERY_EVERY)
    assert not expired(pending[0], T + timedelta(hours=23)) and expired(pending[0], T + timedelta(hours=24))


def test_the_pending_list_is_bounded_oldest_out() -> None:
    entries = [{"eventId": str(n)} for n in range(MAX_PENDING + 3)]
    kept, dropped = merged(entries[:10], entries[10:])
    assert len(kept) == MAX_PENDING and [e["eventId"] for e in dropped] == ["0", "1", "2"]
