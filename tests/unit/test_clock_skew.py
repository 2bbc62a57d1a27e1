"""A stored state whose time lies in the future (a clock that ran ahead wrote it) must not freeze the tenant
(issue 22 #9): small skew is tolerated as before (an older snapshot is a retry, stale), large skew is ignored, said,
and replaced, and the next read of sign-ins starts afresh instead of after a watermark nobody reached."""

from __future__ import annotations

from datetime import timedelta

from shared.state.compare import CLOCK_SKEW_TOLERANCE, compare, watermark
from tests.unit.test_replay_scenarios import at, iso, snap


def ahead_by(state: dict, delta: timedelta) -> dict:
    moved = dict(state)
    for key in ("lastCollectedAt", "lastSuccessAt", "readThrough"):
        moved[key] = iso(at(1) + delta)
    return moved


def test_a_state_six_hours_in_the_future_does_not_hide_smtp_auth_switched_back_on():
    first = compare(None, None, snap(1), now=at(1))
    skewed = ahead_by(first.state, timedelta(hours=6))
    later = compare(skewed, first.baseline, snap(1.25, transport=False), now=at(1.25))
    assert not later.stale and later.results
    assert {e.type for e in later.events} >= {"basic_auth.reenabled", "control.failed"}
    assert later.clock_ahead is not None and later.clock_ahead > timedelta(hours=5)
    assert later.state["lastCollectedAt"] == iso(at(1.25))
    # Sign-ins were read from a watermark in the future this time: the next read covers the evidence window again.
    assert later.state["readThrough"] is None and watermark(later.state) is None
    # And the cycle after is an ordinary one.
    after = compare(later.state, first.baseline, snap(1.5, transport=False), now=at(1.5))
    assert not after.stale and after.clock_ahead is None and after.events == []


def test_small_skew_is_tolerated_and_a_retry_is_still_stale():
    first = compare(None, None, snap(1), now=at(1))
    slightly = ahead_by(first.state, CLOCK_SKEW_TOLERANCE - timedelta(minutes=1))
    retry = compare(slightly, first.baseline, snap(1), now=at(1))
    assert retry.stale and retry.events == [] and retry.clock_ahead is None


def test_an_unreachable_tenant_with_a_future_state_is_recorded_too():
    first = compare(None, None, snap(1), now=at(1))
    down = compare(ahead_by(first.state, timedelta(days=2)), first.baseline, snap(1.25, unreachable=True),
                   now=at(1.25))
    assert not down.stale and down.state["unreachable"] is True and down.clock_ahead is not None
    assert [e.type for e in down.events] == ["tenant.unreachable"]
