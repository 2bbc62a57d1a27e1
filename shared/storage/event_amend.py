"""Amending one stored event in place: what a later cycle learnt about it (who made the change), without a new
event and so without a second alert."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.storage.event_rows import MAX_PROPERTY_CHARS, event_row_key


async def amend_event_details(table: Any, tenant_id: str, event_id: str, at: datetime,
                              details: dict[str, Any]) -> dict[str, Any]:
    """Merge `details` into the event's details (and say who, in its summary); LookupError when it is gone (pruned).
    A point read and a merge: two Table transactions, only when there is something to add."""
    try:
        entity = await table.get_entity(tenant_id, event_row_key(at, event_id))
    except ResourceNotFoundError:
        raise LookupError(f"tenant {tenant_id} has no event {event_id}") from None
    event = json.loads(entity["Body"])
    event["details"] = {**(event.get("details") or {}), **details}
    actor = details.get("changedBy")
    summary = str(event.get("summary") or "")
    if actor and f" by {actor}" not in summary:
        how = f" with {details['cmdlet']}" if details.get("cmdlet") else ""
        when = f" at {details['changedAt']}" if details.get("changedAt") else ""
        summary = f"{summary} Changed by {actor}{when}{how} (from Microsoft's audit log)."
        event["summary"] = summary
    body = json.dumps(event, default=str)
    if len(body) > MAX_PROPERTY_CHARS:
        return event  # the stored event is already at its bound: keep it as it is rather than cut it
    await table.update_entity({"PartitionKey": tenant_id, "RowKey": entity["RowKey"], "Body": body,
                               "Summary": summary[:MAX_PROPERTY_CHARS]}, mode=UpdateMode.MERGE)
    return event
