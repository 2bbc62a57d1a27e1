"""A legacy sign-in that reaches Entra's sign-in log hours after it happened is still seen, and its enforcement gap
is raised exactly once (issue 17, item 3). Each cycle collects what the log shows at that moment from the watermark
the stored state gives, as the collector does (createdDateTime ge since)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.state.compare import DEFAULT_SIGNIN_OVERLAP, compare, watermark
from tests.unit.test_replay_scenarios import POLICY_ID, at, block_policy, iso, snap, success

BLOCK = [block_policy(POLICY_ID, createdDateTime=iso(at(0.9)), modifiedDateTime=iso(at(0.9)))]  # window ends 24.9 h


def run_cycles(log: list[tuple[dict, float]], hours: list[float], overlap: timedelta) -> list:
    """Cycles at `hours`; `log` holds (sign-in, hour it became visible in the log)."""
    state, events = None, []
    for hour in hours:
        since = watermark(state, overlap)
        visible = [signin for signin, shown_at in log if shown_at <= hour
                   and (since is None or signin["createdDateTime"] >= iso(since))]
        result = compare(state, None, snap(hour, policies=BLOCK if hour >= 1 else [], signins=visible), now=at(hour))
        state = result.state
        events.extend(result.events)
    return events


CYCLES = [0, 1, *[25 + quarter / 4 for quarter in range(17)]]  # every 15 minutes from 25 h to 29 h


def test_a_sign_in_logged_two_hours_late_raises_its_gap_exactly_once():
    late = success(25.5)  # after the window closed (24.9 h), but visible in the log only at 27.5 h
    gaps = [e for e in run_cycles([(late, 27.5)], CYCLES, DEFAULT_SIGNIN_OVERLAP) if e.type == "enforcement.gap"]
    assert len(gaps) == 1
    assert gaps[0].at == at(27.5)
    assert gaps[0].details["gapCount"] == 1


def test_the_overlap_is_what_finds_it():
    late = success(25.5)
    gaps = [e for e in run_cycles([(late, 27.5)], CYCLES, timedelta(minutes=10)) if e.type == "enforcement.gap"]
    assert gaps == []  # the old 10-minute overlap had read past it before it was logged


@pytest.mark.parametrize("overlap_hours", [1, 3])
def test_re_reading_the_overlap_never_counts_a_sign_in_twice(overlap_hours):
    on_time = success(25.2, user="scanner@contoso.com")
    events = run_cycles([(on_time, 25.25)], CYCLES, timedelta(hours=overlap_hours))
    gaps = [e for e in events if e.type == "enforcement.gap"]
    assert len(gaps) == 1 and gaps[0].details["gapCount"] == 1
