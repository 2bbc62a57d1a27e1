"""Exceptions over time (issue 21): a reminder ahead of the expiry (once, re-armed by an extension), one word when it
passes and the finding back with exactly one control.failed, an accepted finding that is not "recovered", the scope
growing raising control.failed once. Through `replay`, the same compare the timer path runs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.cli import main
from shared.cli.replay import replay
from shared.model import snapshot_from_json
from shared.state.compare import compare
from tests.unit.test_exceptions_overlay import OVERRIDES, exception, excluding, tenant

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
EXPIRES = T0 + timedelta(days=10)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def day(days: float) -> datetime:
    return T0 + timedelta(days=days)


def snap(days: float, *, overrides: tuple[str, ...] = ("scanner",), scope: tuple[str, ...] = ("scanner",),
         expires: datetime = EXPIRES, with_exception: bool = True, settings: dict[str, Any] | None = None,
         **kwargs: Any):
    records = [exception(scope={"mailboxes": list(scope)}, created=iso(T0 - timedelta(days=1)),
                         expires=iso(expires))] if with_exception else None
    return snapshot_from_json(tenant(overrides=overrides, exceptions=records, settings=settings,
                                     collected_at=iso(day(days)), **kwargs))


def kinds(events, days: float | None = None) -> list[tuple[str, str | None]]:
    return [(e.type, e.control) for e in events if days is None or e.at == day(days)]


def test_a_covered_finding_raises_nothing_and_expiry_brings_it_back_with_one_alert():
    events = replay([snap(0), snap(1), snap(9.5), snap(10), snap(11), snap(12)])
    assert ("control.failed", OVERRIDES) not in kinds(events, 0)  # accepted from the first sight
    assert kinds(events, 10) == [("control.failed", OVERRIDES), ("exception.expired", OVERRIDES)]
    assert kinds(events, 11) == [] and kinds(events, 12) == []
    assert sum(e.type == "control.failed" and e.control == OVERRIDES for e in events) == 1
    expired = next(e for e in events if e.type == "exception.expired")
    assert expired.severity == "medium"
    assert expired.summary.startswith("Exception printer-1 for exo_smtp_auth_mailbox_overrides (owner Jane Doe) "
                                      "expired on 2026-11-30: the finding is back: 1 mailbox(es) turn SMTP AUTH on")
    assert expired.details["exceptionId"] == "printer-1" and expired.details["statusNow"] == "fail"
    assert set(expired.details) == {"exceptionId", "control", "owner", "reason", "createdBy", "expiresAt", "scope",
                                    "wholeControl", "statusNow"}


def test_the_reminder_comes_seven_days_ahead_once_and_an_extension_re_arms_it():
    extended = EXPIRES + timedelta(days=10)
    series = [snap(0), snap(2.9), snap(3), snap(4), snap(5, expires=extended), snap(12.9, expires=extended),
              snap(13, expires=extended), snap(14, expires=extended)]
    events = replay(series)
    reminders = [e for e in events if e.type == "exception.expiring"]
    assert [e.at for e in reminders] == [day(3), day(13)]
    first = reminders[0]
    assert first.severity == "low" and first.control == OVERRIDES
    assert first.summary == ("Exception printer-1 for exo_smtp_auth_mailbox_overrides (owner Jane Doe) expires "
                             "2026-11-30 (in 7 days); then exo_smtp_auth_mailbox_overrides fails again for "
                             "scanner@contoso.com (mailboxes). Extend it or fix the finding.")
    assert first.details["accepts"] == {"mailboxes": ["scanner@contoso.com"]}
    assert first.details["reminderDays"] == 7 and first.details["secondsLeft"] == 7 * 86400
    assert first.id != reminders[1].id  # each expiry its own reminder
    assert [e.type for e in events if e.type.startswith("control.")] == []  # the finding stays accepted


def test_the_reminder_follows_the_tenant_setting_and_zero_turns_it_off():
    three = replay([snap(0, settings={"exceptionReminderDays": 3}), snap(6.9, settings={"exceptionReminderDays": 3}),
                    snap(7, settings={"exceptionReminderDays": 3})])
    assert kinds(three) == [("exception.expiring", OVERRIDES)] and three[0].at == day(7)
    off = replay([snap(0, settings={"exceptionReminderDays": 0}), snap(9.9, settings={"exceptionReminderDays": 0})])
    assert off == []


def test_an_accepted_finding_closes_its_alert_as_accepted_and_the_scope_growing_fails_once():
    events = replay([snap(0, with_exception=False), snap(1), snap(2, overrides=("scanner", "printer2")),
                     snap(2.5, overrides=("scanner", "printer2"))])
    assert kinds(events, 0) == [("control.failed", OVERRIDES)]
    # Accepted, not fixed: the open alert closes saying so (not as a fix).
    [closed] = [e for e in events if e.at == day(1)]
    assert (closed.type, closed.control) == ("control.recovered", OVERRIDES)
    assert closed.summary.startswith("Accepted by exception printer-1") and \
        closed.details["acceptedByException"] == ["printer-1"]
    grown = [e for e in events if e.at == day(2) and e.type == "control.failed"]
    assert len(grown) == 1 and grown[0].control == OVERRIDES
    assert "1 mailbox is not covered by exception printer-1: printer2@contoso.com" in grown[0].summary
    assert grown[0].details["before"] == "pass" and grown[0].details["after"] == "fail"
    assert kinds(events, 2.5) == []


def test_a_real_fix_of_an_accepted_finding_raises_nothing_and_a_fix_of_a_plain_one_recovers():
    accepted_then_fixed = replay([snap(0), snap(1, overrides=())])
    # Drift says the configuration got stronger; the verdict stayed pass, so no control event.
    assert not any(e.type.startswith("control.") for e in accepted_then_fixed)
    plain = replay([snap(0, with_exception=False), snap(1, overrides=(), with_exception=False)])
    assert ("control.recovered", OVERRIDES) in kinds(plain, 1)


def test_what_is_remembered_is_bounded_to_the_exceptions_in_settings_and_replays_are_idempotent():
    first = compare(None, None, snap(3), now=day(3))
    assert [e.type for e in first.events] == ["exception.expiring"]
    assert first.state["exceptionNotices"] == {"printer-1": {"expiresAt": iso(EXPIRES), "reminded": True,
                                                             "expired": False}}
    again = compare(first.state, None, snap(3), now=day(3))
    assert again.stale and again.events == []
    later = compare(first.state, None, snap(4), now=day(4))
    assert later.events == [] and later.state["exceptionNotices"] == first.state["exceptionNotices"]
    removed = compare(later.state, None, snap(5, with_exception=False), now=day(5))
    assert "exceptionNotices" not in removed.state
    assert not any(e.type.startswith("exception.") for e in removed.events)


def test_an_exception_on_the_block_is_not_a_block_in_force():
    """A Conditional Access block accepted by exception passes control 1 but starts no enforcement window: the
    excluded users are not blocked, and control 2 reads control 1 as it is."""
    record = exception("breakglass", "entra_legacy_auth_blocked", {"users": ["u-1"]},
                       created=iso(T0 - timedelta(days=1)), expires=iso(EXPIRES))
    events = replay([snapshot_from_json(tenant(policies=excluding("u-1"), exceptions=[record],
                                               collected_at=iso(day(d)))) for d in (0, 1, 2)])
    assert not any(e.type.startswith("enforcement.") for e in events)
    assert ("control.failed", "entra_legacy_auth_blocked") not in kinds(events)


def test_the_tenant_unreachable_still_hears_of_the_expiry():
    unreachable = tenant(collected_at=iso(day(10)), exceptions=[exception(scope={"mailboxes": ["scanner"]},
                                                                          created=iso(T0), expires=iso(EXPIRES))])
    unreachable["graph"], unreachable["exchange"] = {}, {}
    unreachable["errors"] = {"graph.organization": {"status": 401, "code": "AADSTS7000215", "message": "bad secret"}}
    events = replay([snap(0), snapshot_from_json(unreachable), snap(11)])
    assert kinds(events, 10) == [("tenant.unreachable", None), ("exception.expired", OVERRIDES)]
    # Back again: the finding returns once (its last verdict, pass with exception, was kept meanwhile).
    assert ("control.failed", OVERRIDES) in kinds(events, 11)
    assert sum(e.type == "control.failed" and e.control == OVERRIDES for e in events) == 1


# ---------------------------------------------------------------- `authwatch replay` over snapshot files


def test_replay_files_an_exception_covering_a_new_failure_then_its_expiry(tmp_path, capsys):
    files = {"1.json": snap(0, overrides=(), with_exception=False), "2.json": snap(1),
             "3.json": snap(10.5)}
    for name, snapshot in files.items():
        (tmp_path / name).write_text(json.dumps(snapshot.to_json()))
    assert main(["replay", str(tmp_path / "1.json"), str(tmp_path / "2.json")]) == 0
    two = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert not any(event["type"] == "control.failed" for event in two)
    assert main(["replay", str(tmp_path)]) == 0
    three = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    failed = [event for event in three if event["type"] == "control.failed"]
    assert [(event["at"], event["control"]) for event in failed] == [(iso(day(10.5)), OVERRIDES)]
    assert [event["type"] for event in three if event["type"].startswith("exception.")] == ["exception.expired"]
