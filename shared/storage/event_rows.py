"""Event rows of a tenant's partition: `e:<inverted ms>:<event id>`, newest first, the full event JSON in Body
(summarised when too big for one property), a person's acknowledge/snooze decisions beside it. Pure encoding: the
reads and writes are shared/storage/tenant_store.py's.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.model import format_time
from shared.storage.entities import MAX_PROPERTY_CHARS, evidence_json

EVENT_PREFIX = "e:"
EVENT_END = "e;"  # ';' is the character after ':', so every event RowKey sorts between EVENT_PREFIX and this
_FORBIDDEN_KEY_CHARS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")

_EVENT_SCALE = 10**13  # inverted milliseconds, 13 digits: good until the year 2286
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)

_MAX_EVENT_ID_CHARS = 400  # RowKey ≤ 1 KiB


def check_key(value: str, what: str) -> None:
    if not isinstance(value, str) or not value or _FORBIDDEN_KEY_CHARS.search(value):
        raise ValueError(f"{what} {value!r} cannot be part of a Table key (empty, or contains / \\ # ? or a control character)")


def _milliseconds(moment: datetime) -> int:
    """Whole milliseconds since the epoch, rounded down; naive times are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // _MILLISECOND


def _event_time(tenant_id: str, event: dict[str, Any]) -> datetime:
    value = event.get("at")
    try:
        moment = datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"tenant {tenant_id}: event {event.get('id')!r} has no ISO 8601 'at' (got {value!r})") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def event_row_key(at: datetime, event_id: str) -> str:
    return f"{EVENT_PREFIX}{_EVENT_SCALE - _milliseconds(at):013d}:{event_id}"


def event_order(entity: dict[str, Any]) -> tuple[int, int]:
    """(milliseconds, position in its commit): events of one cycle share `at`, so the position keeps their order."""
    inverted = int(entity["RowKey"][len(EVENT_PREFIX):len(EVENT_PREFIX) + 13])
    return _EVENT_SCALE - inverted, int(entity.get("Seq") or 0)


def _event_body(event: dict[str, Any]) -> str:
    """The full event JSON, or — when too big for one property — the event with its details summarised."""
    text = json.dumps(event, default=str)
    if len(text) <= MAX_PROPERTY_CHARS:
        return text
    details = event.get("details")
    summarised = json.loads(evidence_json(details)) if isinstance(details, dict) else {"truncated": True}
    text = json.dumps({**event, "details": summarised}, default=str)
    if len(text) <= MAX_PROPERTY_CHARS:
        return text
    # Something besides the details is huge: keep the envelope a person and the alert channels need.
    envelope = {key: event.get(key) for key in ("id", "at", "tenantId", "type", "control", "severity")}
    envelope["summary"] = str(event.get("summary") or "")[:2000]
    envelope["details"] = {"truncated": True}
    return json.dumps(envelope, default=str)


def event_entity(tenant_id: str, event: dict[str, Any], position: int) -> dict[str, Any]:
    event_id = event.get("id")
    check_key(event_id, f"tenant {tenant_id}: event id")  # type: ignore[arg-type]
    if len(event_id) > _MAX_EVENT_ID_CHARS:  # type: ignore[arg-type]
        raise ValueError(f"tenant {tenant_id}: event id longer than {_MAX_EVENT_ID_CHARS} characters")
    if event.get("tenantId") not in (None, tenant_id):
        raise ValueError(f"tenant {tenant_id}: event {event_id} belongs to tenant {event.get('tenantId')}")
    at = _event_time(tenant_id, event)
    if not 0 <= _milliseconds(at) < _EVENT_SCALE:
        raise ValueError(f"tenant {tenant_id}: event {event_id} has an out-of-range time {event.get('at')!r}")
    return {
        "PartitionKey": tenant_id,
        "RowKey": event_row_key(at, event_id),  # type: ignore[arg-type]
        "EventId": event_id,
        "Type": str(event.get("type") or ""),
        "Control": event.get("control"),  # None (tenant-wide events) is simply not stored
        "Severity": str(event.get("severity") or ""),
        "At": at,
        "Summary": str(event.get("summary") or "")[:MAX_PROPERTY_CHARS],
        "Body": _event_body(event),
        "Pending": True,
        "Seq": position,
    }


def stored_event(entity: dict[str, Any]) -> dict[str, Any]:
    return json.loads(entity["Body"])


def annotations(entity: dict[str, Any]) -> dict[str, Any]:
    """A person's decisions on an event's alert, as ISO strings (absent ones as None)."""
    def moment(value: Any) -> str | None:
        return format_time(value) if isinstance(value, datetime) else None

    return {"acknowledgedAt": moment(entity.get("AckedAt")), "acknowledgedBy": entity.get("AckedBy") or None,
            "snoozedUntil": moment(entity.get("SnoozedUntil"))}


def events_before(older_than: datetime) -> str | None:
    """The RowKey above which every event is older than `older_than` (millisecond precision), or None when no event
    can be: at_ms < older_than ⇔ at_ms < ceil(older_than in ms). Older events have larger inverted times, and the
    RowKeys of the cutoff millisecond itself sort below "…;"."""
    remainder = (older_than if older_than.tzinfo else older_than.replace(tzinfo=timezone.utc)) - _EPOCH
    cutoff = remainder // _MILLISECOND + (1 if remainder % _MILLISECOND else 0)
    if cutoff <= 0:
        return None
    return f"{EVENT_PREFIX}{max(_EVENT_SCALE - cutoff, 0):013d};"
