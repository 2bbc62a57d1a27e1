"""The enforcement window arithmetic (controls.md §2): [E, E + H), and E derived offline from the policies."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from shared.controls.conditional_access import legacy_block
from shared.controls.enforcement_window import EnforcementWindow, describe_duration, offline_block_start
from tests.builders import block_policy, snapshot

E = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
SECOND = timedelta(seconds=1)


def test_closes_hours_after_the_start():
    assert EnforcementWindow(E, 24).closes_at == E + timedelta(hours=24)
    assert EnforcementWindow(E, 0.5).closes_at == E + timedelta(minutes=30)


def test_default_length_is_24_hours():
    assert EnforcementWindow(E).hours == 24


def test_contains_its_start_but_not_its_end():
    window = EnforcementWindow(E, 24)
    assert window.contains(E)
    assert window.contains(E + timedelta(hours=24) - SECOND)
    assert not window.contains(E + timedelta(hours=24))
    assert not window.contains(E - SECOND)


def test_has_closed_exactly_at_e_plus_h():
    window = EnforcementWindow(E, 24)
    assert window.has_closed(E + timedelta(hours=24))
    assert not window.has_closed(E + timedelta(hours=24) - SECOND)
    assert not window.has_closed(E - timedelta(days=3))  # before it even opened: not closed either


def test_time_left_counts_down_to_zero():
    window = EnforcementWindow(E, 24)
    assert window.time_left(E) == timedelta(hours=24)
    assert window.time_left(E + timedelta(hours=18)) == timedelta(hours=6)
    assert window.time_left(E + timedelta(days=5)) == timedelta(0)
    assert window.time_left(E - timedelta(hours=1)) == timedelta(hours=25)


def test_long_ago_window_has_always_closed():
    window = EnforcementWindow(None, 24)
    assert window.closes_at is None
    assert window.has_closed(datetime(1990, 1, 1, tzinfo=timezone.utc))
    assert not window.contains(E)
    assert window.time_left(E) == timedelta(0)
    assert window.to_json() == {"windowStartedAt": None, "windowClosesAt": None, "windowHours": 24}


def test_naive_datetimes_are_taken_as_utc():
    window = EnforcementWindow(datetime(2026, 11, 22, 8, 0), 24)
    assert window.started_at == E
    assert window.has_closed(datetime(2026, 11, 23, 8, 0))


def test_to_json_uses_the_authwatch_timestamp_format():
    assert EnforcementWindow(E, 24).to_json() == {
        "windowStartedAt": "2026-11-22T08:00:00Z", "windowClosesAt": "2026-11-23T08:00:00Z", "windowHours": 24}


def test_describe_duration():
    assert describe_duration(timedelta(hours=5, minutes=12, seconds=59)) == "5h 12m"
    assert describe_duration(timedelta(minutes=7)) == "7m"


def qualifying(*policies):
    return legacy_block(list(policies), snapshot()).qualifying


def test_offline_start_is_the_modified_date_of_the_newest_qualifying_policy():
    older = block_policy("1111aaaa-0000-0000-0000-000000000000", client_app_types=["exchangeActiveSync"],
                         modifiedDateTime="2026-01-01T00:00:00Z")
    newer = block_policy("2222bbbb-0000-0000-0000-000000000000", client_app_types=["other"],
                         modifiedDateTime="2026-11-20T10:30:00.1234567Z")
    assert offline_block_start(qualifying(older, newer)) == datetime(2026, 11, 20, 10, 30, 0, 123456,
                                                                    tzinfo=timezone.utc)


def test_offline_start_falls_back_to_created_when_modified_is_null():
    policy = block_policy(modifiedDateTime=None, createdDateTime="2026-11-21T09:00:00Z")
    assert offline_block_start(qualifying(policy)) == datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc)


def test_unparseable_modified_falls_back_to_created():
    policy = block_policy(modifiedDateTime="yesterday", createdDateTime="2026-11-21T09:00:00Z")
    assert offline_block_start(qualifying(policy)) == datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc)


def test_no_dates_means_long_ago():
    assert offline_block_start(qualifying(block_policy(modifiedDateTime=None, createdDateTime=None))) is None
    assert offline_block_start(()) is None


def test_undated_policies_do_not_hold_the_window_open():
    dated = block_policy("1111aaaa-0000-0000-0000-000000000000", modifiedDateTime="2026-01-01T00:00:00Z")
    undated = block_policy("2222bbbb-0000-0000-0000-000000000000", modifiedDateTime=None, createdDateTime=None)
    assert offline_block_start(qualifying(dated, undated)) == datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_non_qualifying_policies_are_not_considered():
    report_only = block_policy("2222bbbb-0000-0000-0000-000000000000", state="enabledForReportingButNotEnforced",
                               modifiedDateTime="2026-11-23T00:00:00Z")
    enforced = block_policy("1111aaaa-0000-0000-0000-000000000000", modifiedDateTime="2026-01-01T00:00:00Z")
    assert offline_block_start(qualifying(enforced, report_only)) == datetime(2026, 1, 1, tzinfo=timezone.utc)
