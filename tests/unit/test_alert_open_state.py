"""The open-alert rows' rules (shared/alerts/open_store.plan), pure: fed the events of a history in any order, in any
chunks, each any number of times, they hold exactly the open alerts a replay of the whole history finds
(shared/alerts/lifecycle.open_alerts); past the per-tenant bound what is left out is counted, never silent."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

from shared.alerts.lifecycle import open_alerts
from shared.alerts.open_store import MAX_OPEN, Stored, plan
from shared.model import format_time

TENANT = "84841066-274d-4ec0-a5c1-276be684bdd3"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
KINDS = [("control.failed", "c1"), ("control.recovered", "c1"), ("control.failed", "c2"),
         ("control.recovered", "c2"), ("tenant.unreachable", None), ("tenant.recovered", None),
         ("drift.weakened", "d1"), ("basic_auth.reenabled", "d1"), ("drift.strengthened", "d1"),
         ("enforcement.gap", "c2"), ("control.unknown", "c1"), ("enforcement.window_started", "c2")]


def event(index: int, kind: str, subject: str | None, severity: str = "high") -> dict:
    control = subject if kind.startswith(("control", "enforcement")) else None
    details = {"item": subject} if kind.startswith(("drift", "basic_auth")) else {}
    return {"id": f"{index:032x}", "at": format_time(T0 + timedelta(minutes=index)), "tenantId": TENANT,
            "type": kind, "control": control, "severity": severity, "summary": f"{kind} {subject}",
            "details": details}


def history(seed: int, length: int = 300) -> list[dict]:
    rng = random.Random(seed)
    return [event(index, *rng.choice(KINDS)) for index in range(length)]


def feed(chunks: list[list[dict]]) -> tuple[Stored, int]:
    """Apply chunk after chunk as the store would (each on what the previous left); returns the end state."""
    stored = Stored()
    for chunk in chunks:
        rows, resolved, omitted, more = plan(stored, chunk, TENANT, now=T0 + timedelta(days=1))
        stored = Stored(meta={"Omitted": json.dumps(omitted), "OmittedMore": more}, rows=rows,
                        resolved=resolved)
    return stored, stored.omitted_count


def test_any_order_any_chunks_any_repeats_give_the_replayed_open_alerts():
    for seed in range(40):
        events = history(seed)
        expected = sorted(alert["id"] for alert in open_alerts(events, now=T0))
        rng = random.Random(seed + 1000)
        shuffled = events + rng.sample(events, 60)  # some twice (an at-least-once queue, an overlapping re-read)
        rng.shuffle(shuffled)
        cuts = sorted(rng.sample(range(1, len(shuffled)), 12))
        chunks = [shuffled[start:end] for start, end in zip([0, *cuts], [*cuts, len(shuffled)])]
        stored, omitted = feed(chunks)
        assert sorted(stored.rows) == expected, seed
        assert omitted == 0


def test_a_late_opening_event_older_than_its_resolution_stays_closed():
    opened, resolved = event(1, "control.failed", "c1"), event(2, "control.recovered", "c1")
    stored, _ = feed([[resolved], [opened]])
    assert stored.rows == {}
    stored, _ = feed([[opened], [resolved], [opened]])
    assert stored.rows == {}


def test_decisions_on_the_event_row_are_carried_into_the_open_row():
    opened = {**event(1, "control.failed", "c1"), "acknowledgedAt": "2026-11-23T09:00:00Z",
              "acknowledgedBy": "oncall", "snoozedUntil": "2026-11-30T00:00:00Z"}
    stored, _ = feed([[opened]])
    row = stored.rows[opened["id"]]
    assert row["AckedBy"] == "oncall" and row["AckedAt"] == datetime(2026, 11, 23, 9, tzinfo=timezone.utc)
    assert row["SnoozedUntil"] == datetime(2026, 11, 30, tzinfo=timezone.utc)
    assert "acknowledgedAt" not in row["Body"]  # decisions are columns, updated on their own


def test_past_the_bound_repeats_and_low_severity_go_first_and_are_counted():
    # MAX_OPEN + 30 distinct open settings (drift.weakened, one key each) and 20 repeats of one control failing.
    distinct = [event(index, "drift.weakened", f"item-{index}", "medium" if index % 3 else "high")
                for index in range(MAX_OPEN + 30)]
    repeats = [event(10_000 + index, "control.failed", "c1") for index in range(20)]
    stored, omitted = feed([distinct, repeats])
    assert len(stored.rows) == MAX_OPEN and omitted == 30 + 20  # 19 repeats, then the 31 newest medium ones
    kept_repeats = [row for row in stored.rows.values() if row["Type"] == "control.failed"]
    assert len(kept_repeats) == 1 and kept_repeats[0]["EventId"] == repeats[0]["id"]  # the oldest: open since
    dropped = {event_id for event_id in {e["id"] for e in distinct} if event_id not in stored.rows}
    assert all(e["severity"] == "medium" for e in distinct if e["id"] in dropped)
    # Applying the same events again neither re-adds nor counts twice what was left out.
    again, omitted_again = feed([distinct, repeats, distinct + repeats])
    assert sorted(again.rows) == sorted(stored.rows) and omitted_again == omitted
    # Resolving the repeated control also clears its left-out repeats from the count.
    closed, omitted_closed = feed([distinct, repeats, [event(20_000, "control.recovered", "c1")]])
    assert omitted_closed == 31 and all(row["Type"] != "control.failed" for row in closed.rows.values())
