"""Who changed it, for what the directory audit log does not tell: Exchange and SharePoint changes, attributed later
from Microsoft's unified audit log (Graph audit log query API, shared/collect/audit_query.py).

Pure. When compare raises `drift.weakened` or `basic_auth.reenabled` for an Exchange or SharePoint setting, the
event says "actor not yet known" and the change is remembered here (`pending`, in the tenant's state). Microsoft
records such a change in the audit log typically 60-90 minutes after it happens ("doesn't guarantee a specific time",
https://learn.microsoft.com/en-us/purview/audit-log-search), so the first query runs FIRST_TRY after the change was
seen, at most one query a QUERY_EVERY per tenant, and a change not found within GIVE_UP is given up with a reason.
The event row is then updated in place (never a second alert).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.model import format_time, parse_time_or_none
from shared.state import events as ev
from shared.state.attribution_audit import ObservedChange
from shared.state.bounded_set import change as set_change

FIRST_TRY = timedelta(minutes=60)
QUERY_EVERY = timedelta(minutes=30)
GIVE_UP = timedelta(hours=24)
MAX_PENDING = 50  # per tenant: the state row stays bounded; the oldest is given up first
NOT_YET_KNOWN = ("not yet known: Microsoft's audit log typically records an Exchange or SharePoint change 60-90 "
                 "minutes after it; authwatch looks again and fills this in")
GIVEN_UP = ("not found in Microsoft's audit log within 24 hours (auditing off, a licence without the audit log, or "
            "the record never arrived)")

# drift section (and item) -> the audit log's kind of change (shared/state/attribution_audit.py KINDS)
_SECTION_KIND = {"transport": "transportSmtpAuth", "mailboxOverrides": "mailboxSmtpAuth",
                 "mailboxProtocols": "mailboxProtocols", "sharepoint": "sharepointLegacyAuth"}
_TRANSPORT_PARAMETER = {"transportSmtpAuth": "SmtpClientAuthenticationDisabled"}


def _kind(section: str, item: str) -> str | None:
    if section == "authenticationPolicies":
        if item.startswith("authPolicy:"):
            return "authenticationPolicy"
        if item.startswith("assigned:"):
            return "userAuthenticationPolicy"
        return "defaultAuthenticationPolicy" if item == "defaultPolicy" else None
    return _SECTION_KIND.get(section)


def _objects(kind: str, item: str, changes: list[dict[str, Any]]) -> list[str]:
    """The objects a per-object change is about: the policy's name, or the mailboxes / users added to a set."""
    if kind == "authenticationPolicy":
        return [item.removeprefix("authPolicy:")]
    names: list[str] = []
    for field in changes:
        named = field.get("objects")  # drift's FieldChange.objects: what it was turned on for
        if isinstance(named, list):
            names.extend(str(name) for name in named)
        elif isinstance(field.get("before"), dict):  # stored sets (state/bounded_set) given whole
            moved = set_change(field.get("before"), field.get("after"))
            names.extend(moved.added if moved else [])
    return sorted(set(names))[:MAX_PENDING]


def pending_from(events: list[ev.Event], since: datetime | None) -> list[dict[str, Any]]:
    """Mark each Exchange/SharePoint drift event whose actor is not known as such, and return what to look for."""
    found: list[dict[str, Any]] = []
    for event in events:
        if event.type not in (ev.DRIFT_WEAKENED, ev.BASIC_AUTH_REENABLED) or event.details.get("changedBy"):
            continue
        kind = _kind(str(event.details.get("section")), str(event.details.get("item")))
        if kind is None:
            continue
        event.details.update({"changedBy": None, "actor": NOT_YET_KNOWN})
        changes = [c for c in event.details.get("changes") or () if isinstance(c, dict)]
        after = changes[0].get("after") if len(changes) == 1 else None
        found.append({"eventId": event.id, "at": format_time(event.at), "kind": kind,
                      "item": event.details.get("item"), "value": after if isinstance(after, bool) else None,
                      "objects": _objects(kind, str(event.details.get("item")), changes),
                      "seenAt": format_time(event.at), "since": format_time(since) if since else None})
    return found


def merged(kept: list[dict[str, Any]] | None, new: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                                                 list[dict[str, Any]]]:
    """(what stays pending, what is dropped because the list is full: given up at once)."""
    everything = [*(kept or []), *new]
    return everything[-MAX_PENDING:], everything[:-MAX_PENDING]


def observed(entry: dict[str, Any]) -> ObservedChange:
    seen = parse_time_or_none(entry.get("seenAt"))
    assert seen is not None  # written by pending_from
    parameter = _TRANSPORT_PARAMETER.get(entry["kind"])
    value = entry.get("value")
    return ObservedChange(kind=entry["kind"], seen_at=seen, since=parse_time_or_none(entry.get("since")),
                          object_ids=tuple(entry.get("objects") or ()),
                          settings={parameter: value} if parameter and isinstance(value, bool) else {})


def due(pending: list[dict[str, Any]], last_query_at: datetime | None, now: datetime) -> bool:
    """Whether to start an audit query now: some change was seen FIRST_TRY ago, and none ran in QUERY_EVERY."""
    if last_query_at is not None and now - last_query_at < QUERY_EVERY:
        return False
    return any(now - (parse_time_or_none(entry.get("seenAt")) or now) >= FIRST_TRY for entry in pending)


def expired(entry: dict[str, Any], now: datetime) -> bool:
    return now - (parse_time_or_none(entry.get("seenAt")) or now) >= GIVE_UP


def attributed_details(found: dict[str, Any]) -> dict[str, Any]:
    """What an event's details gain once the audit log names who made the change."""
    actor = found.get("changedBy")
    return {"changedBy": actor, "changedAt": found.get("changedAt"), "cmdlet": found.get("cmdlet"),
            "parameters": found.get("parameters") or {}, "byMicrosoft": bool(found.get("byMicrosoft")),
            "actor": "Microsoft made this change itself (a service account)" if found.get("byMicrosoft") else actor,
            "attributedBy": found.get("source", "auditLogQuery")}
