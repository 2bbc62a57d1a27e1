"""Which alerts are open: an alert opens on a failing transition and resolves on its matching recovery.

Pure. Opening events: control.failed, drift.weakened, basic_auth.reenabled, enforcement.gap, tenant.unreachable.
Each is resolved by the later event that undoes it (control.recovered for the same control, drift.strengthened for
the same configuration item, tenant.recovered): `alert_key` says which alerts an event opens or resolves.

The open alerts the API and the digest show are kept as their own state (open_store.py), fed event by event with
these rules; `open_alerts` replays a list of events and is the reference those rules are tested against.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.model import parse_time_or_none
from shared.state import events as ev

OPENING = (ev.CONTROL_FAILED, ev.DRIFT_WEAKENED, ev.BASIC_AUTH_REENABLED, ev.ENFORCEMENT_GAP, ev.TENANT_UNREACHABLE)
RESOLVING = (ev.CONTROL_RECOVERED, ev.DRIFT_STRENGTHENED, ev.TENANT_RECOVERED)


def alert_key(event: dict[str, Any]) -> tuple[str, ...] | None:
    """What an opening or resolving event is about (same key: the resolution closes the alert); None otherwise."""
    kind = event.get("type")
    if kind in (ev.CONTROL_FAILED, ev.CONTROL_RECOVERED, ev.ENFORCEMENT_GAP):
        return ("control", str(event.get("control")))
    if kind in (ev.TENANT_UNREACHABLE, ev.TENANT_RECOVERED):
        return ("tenant",)
    if kind in (ev.DRIFT_WEAKENED, ev.BASIC_AUTH_REENABLED, ev.DRIFT_STRENGTHENED):
        return ("config", str((event.get("details") or {}).get("item")))
    return None


def open_alerts(history: list[dict[str, Any]], *, now: datetime) -> list[dict[str, Any]]:
    """Open alerts, newest first, each marked acknowledged / snoozed (a snooze that has passed no longer counts)."""
    open_by_key: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for event in sorted(history, key=lambda e: e.get("at") or ""):  # oldest first: replay the lifecycle
        key = alert_key(event)
        if key is None:
            continue
        if event.get("type") in OPENING:
            open_by_key.setdefault(key, []).append(event)
        elif event.get("type") in RESOLVING:
            open_by_key.pop(key, None)
    alerts = []
    for event in (e for events in open_by_key.values() for e in events):
        snoozed = parse_time_or_none(event.get("snoozedUntil"))
        alerts.append({**event, "acknowledged": bool(event.get("acknowledgedAt")),
                       "snoozed": snoozed is not None and snoozed > now})
    return sorted(alerts, key=lambda e: e.get("at") or "", reverse=True)
