"""Exceptions ending: a reminder ahead of the expiry, and one word when it passes. Pure (the time is the snapshot's
collectedAt, the same moment the overlay judged the exception live or not).

- `exception.expiring` (low): once per exception and expiry, from `expiresAt - settings.exceptionReminderDays`
  (default 7) until it expires; extending the exception (a new expiresAt) re-arms it.
- `exception.expired` (medium): once per exception and expiry, at the first cycle at or after it. The finding itself
  comes back through the ordinary `control.failed` (pass with exception → fail), raised by compare's transitions.

What was said is remembered in the state compare returns (`state["exceptionNotices"]`: id → {expiresAt, reminded,
expired}), only for exceptions still in the tenant's settings, so it stays as small as the exception list (at most
MAX_EXCEPTIONS entries).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.controls.exceptions import EVIDENCE_KEY, snapshot_exceptions
from shared.controls.exchange_objects import name_some
from shared.exceptions import ExceptionRecord, reminder_days
from shared.model import ControlResult, Status, TenantSnapshot, format_time
from shared.state import events as ev
from shared.state.events import Event


def _left(span: timedelta) -> str:
    """'in 6 days' / 'in 5h 12m': how long a person has to act."""
    if span >= timedelta(days=1):
        days = span.days
        return f"in {days} day{'s' if days != 1 else ''}"
    minutes = int(span.total_seconds() // 60)
    return f"in {minutes // 60}h {minutes % 60:02d}m"


def _details(record: ExceptionRecord) -> dict[str, Any]:
    return {"exceptionId": record.id, "control": record.control, "owner": record.owner, "reason": record.reason,
            "createdBy": record.created_by, "expiresAt": format_time(record.expires_at),
            "scope": {kind: list(ids) for kind, ids in record.scope.items()},
            "wholeControl": record.covers_whole_control()}


def _what_comes_back(record: ExceptionRecord, result: ControlResult | None) -> tuple[str, dict[str, Any] | None]:
    """What this exception accepts in the current verdict, in words and as kind -> ids (None: nothing now)."""
    detail = (result.evidence.get(EVIDENCE_KEY) if result is not None and isinstance(result.evidence, dict)
              else None)
    if not isinstance(detail, dict) or record.id not in detail.get("ids", ()) or "acceptedStatus" not in detail:
        return "it accepts no current finding, so nothing comes back unless one appears", None
    covered = detail.get("covered") or {}
    if detail.get("wholeControl") or not covered:
        return f"{record.control} fails again: {detail.get('acceptedSummary')}", {}
    named = "; ".join(f"{name_some(ids, len(ids))} ({kind})" for kind, ids in covered.items())
    return f"{record.control} fails again for {named}", covered


def _now_status(record: ExceptionRecord, result: ControlResult | None) -> str:
    if result is None:
        return f"authwatch has no control {record.control}, so nothing comes back"
    detail = result.evidence.get(EVIDENCE_KEY) if isinstance(result.evidence, dict) else None
    if result.status == Status.FAIL:
        return f"the finding is back: {result.summary}"
    if result.status == Status.PASS and isinstance(detail, dict) and "acceptedStatus" in detail:
        return f"another exception still accepts it ({', '.join(detail.get('ids', []))})"
    if result.status == Status.PASS:
        return "nothing comes back: the control passes now"
    return f"the control is {result.status} now"


def exception_events(snapshot: TenantSnapshot, results: list[ControlResult],
                     remembered: Any) -> tuple[list[Event], dict[str, Any]]:
    """The reminders and expiries this cycle raises, and what to remember (state["exceptionNotices"])."""
    now = snapshot.collected_at
    days = reminder_days(snapshot.settings.get("exceptionReminderDays"))
    by_control = {result.control: result for result in results}
    before = remembered if isinstance(remembered, dict) else {}
    raised: list[Event] = []
    notified: dict[str, Any] = {}
    for record in sorted(snapshot_exceptions(snapshot), key=lambda r: (r.expires_at, r.id)):
        expires = format_time(record.expires_at)
        seen = before.get(record.id)
        # Said about this very expiry before? A new expiresAt (an extension) starts afresh.
        seen = seen if isinstance(seen, dict) and seen.get("expiresAt") == expires else {}
        reminded, expired = bool(seen.get("reminded")), bool(seen.get("expired"))
        result = by_control.get(record.control)
        subject = f"{record.id}|{expires}"
        if now >= record.expires_at:
            if not expired:
                raised.append(Event(now, snapshot.tenant_id, ev.EXCEPTION_EXPIRED, record.control, "medium",
                                    f"Exception {record.id} for {record.control} (owner {record.owner}) expired on "
                                    f"{record.expires_at:%Y-%m-%d}: {_now_status(record, result)}.",
                                    {**_details(record), "statusNow": str(result.status) if result else None},
                                    subject))
            reminded = expired = True  # a reminder after the fact helps nobody
        elif days and record.live(now) and now >= record.expires_at - timedelta(days=days) and not reminded:
            comes_back, covers = _what_comes_back(record, result)
            left = record.expires_at - now
            raised.append(Event(now, snapshot.tenant_id, ev.EXCEPTION_EXPIRING, record.control, "low",
                                f"Exception {record.id} for {record.control} (owner {record.owner}) expires "
                                f"{record.expires_at:%Y-%m-%d} ({_left(left)}); then {comes_back}. Extend it or "
                                "fix the finding.",
                                {**_details(record), "reminderDays": days, "secondsLeft": int(left.total_seconds()),
                                 "accepts": covers},
                                subject))
            reminded = True
        if reminded or expired:
            notified[record.id] = {"expiresAt": expires, "reminded": reminded, "expired": expired}
    return raised, notified
