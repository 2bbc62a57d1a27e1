"""Storing and changing a tenant's exceptions: the one place the CLI (`authwatch exceptions …`) and the HTTP API
(shared/views/exceptions_api.py) go through, so both refuse the same input the same way.

An exception (shared/exceptions.py) names a control, the objects it covers, an owner, a reason, who created it and
when it ends. Adding one checks, before anything is written: the shape (parse_exception), that the control exists,
that the expiry is in the future and at most the tenant's maxExceptionDays away, that its id is not taken and that
no live exception covers the same control and scope already. Extending sets a later expiry within the same bound,
counted from now; removing drops it. Each change is one conditional registry write
(TenantRegistry.change_exceptions) with its `exception.changed` history row: {action: added | extended | removed,
exception: the record, by: who}; history only, never an alert (like config.changed).

The tenant's older `approvedExclusions` keep working as they always did; `list_exceptions` shows them as one
exception without owner or expiry, marked `"legacy": true`. They are changed as before (PATCH approvedExclusions),
not here.
"""

from __future__ import annotations

import math
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.controls import CATALOGUE
from shared.exceptions import ExceptionError, ExceptionRecord, check_length, parse_exception
from shared.model import EXCLUSION_KINDS, format_time
from shared.state.events import Event
from shared.tenants.config import TenantConfig

EXCEPTION_CHANGED = "exception.changed"  # history only, like shared.state.events.CONFIG_CHANGED: sent to nobody
ACTIONS = ("added", "extended", "removed")
LEGACY_ID = "legacy-approvedExclusions"
LEGACY_CONTROL = "entra_legacy_auth_blocked"  # where approvedExclusions act: the Conditional Access legacy block
ADD_FIELDS = ("id", "control", "scope", "owner", "reason", "createdBy", "expiresAt")
MAX_BY = 500


def parse_expiry(raw: Any, now: datetime, max_days: int, field: str = "expiresAt") -> datetime:
    """An expiry in the future and at most `max_days` from now: ISO 8601 (2027-03-31T00:00:00Z) or a date
    (2027-03-31: 00:00 UTC that day). ExceptionError naming `field` otherwise."""
    if not isinstance(raw, str) or not raw.strip():
        raise ExceptionError(f"{field}: required, an ISO 8601 time such as {format_time(now)} or a date such as "
                             f"{now.date().isoformat()}")
    text = raw.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ExceptionError(f"{field}: {raw!r} is not an ISO 8601 time or a date (YYYY-MM-DD)") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)  # a date: 00:00 UTC that day
    try:
        if moment <= now:
            raise ExceptionError(f"{field}: {raw!r} is not in the future (now is {format_time(now)})")
        check_length(now, moment, max_days)
        return moment.astimezone(timezone.utc).replace(microsecond=0)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-05:00: a valid time whose UTC is past year 9999
        raise ExceptionError(f"{field}: {raw!r} is further than this tenant's maxExceptionDays ({max_days})") \
            from None
    except ExceptionError as error:
        message = str(error)
        raise ExceptionError(message if message.startswith(f"{field}:") else
                             f"{field}:{message.split(':', 1)[1]}") from None


def check_by(by: Any, field: str = "by") -> str:
    if not isinstance(by, str) or not by.strip():
        raise ExceptionError(f"{field}: required, who makes the change")
    if len(by) > MAX_BY:
        raise ExceptionError(f"{field}: at most {MAX_BY} characters")
    return by.strip()


def new_id() -> str:
    return f"exc-{secrets.token_hex(4)}"


def _record_status(record: ExceptionRecord, reminder_days: int, now: datetime) -> dict[str, Any]:
    left = record.expires_at - now
    expired = left <= timedelta(0)
    soon = not expired and left <= timedelta(days=reminder_days)
    return {"legacy": False, "status": "expired" if expired else "expiring soon" if soon else "active",
            "expired": expired, "expiringSoon": soon, "daysLeft": max(0, math.floor(left / timedelta(days=1)))}


def legacy_exception(config: TenantConfig) -> dict[str, Any] | None:
    """The tenant's approvedExclusions as one exception without owner or expiry (None when it has none)."""
    scope = {kind: list(config.approved_exclusions[kind]) for kind in EXCLUSION_KINDS
             if config.approved_exclusions.get(kind)}
    if not scope:
        return None
    return {"id": LEGACY_ID, "control": LEGACY_CONTROL, "scope": scope, "owner": None,
            "reason": "the tenant's approvedExclusions (from before exceptions had an owner and an expiry)",
            "createdBy": None, "createdAt": None, "expiresAt": None, "legacy": True, "status": "legacy",
            "expired": False, "expiringSoon": False, "daysLeft": None}


def list_exceptions(config: TenantConfig, *, now: datetime) -> list[dict[str, Any]]:
    """The tenant's exceptions, soonest expiry first, each with its status (active, expiring soon, expired) and
    days left; then its approvedExclusions as a legacy exception. Pure."""
    records = sorted(config.exception_records(), key=lambda record: (record.expires_at, record.id))
    listed = [{**record.to_json(), **_record_status(record, config.exception_reminder_days, now)}
              for record in records]
    legacy = legacy_exception(config)
    return listed + ([legacy] if legacy else [])


def describe(config: TenantConfig, *, now: datetime) -> dict[str, Any]:
    return {"tenantId": config.tenant_id, "displayName": config.display_name,
            "maxExceptionDays": config.max_exception_days, "exceptionReminderDays": config.exception_reminder_days,
            "exceptions": list_exceptions(config, now=now)}


def _history(config: TenantConfig, version: int, action: str, record: ExceptionRecord, by: str, now: datetime,
             **extra: Any) -> dict[str, Any]:
    until = f" until {format_time(record.expires_at)}" if action != "removed" else ""
    summary = f"Exception {record.id} on {record.control} {action} by {by}{until}"
    details = {"action": action, "exception": record.to_json(), "by": by, **extra}
    event = Event(at=now, tenant_id=config.tenant_id, type=EXCEPTION_CHANGED, control=record.control,
                  severity="low", summary=summary, details=details,
                  # unique per attempt: two writers racing at one version must not share a history row
                  subject=f"{record.id}|{action}|{version}|{secrets.token_hex(8)}")
    return event.to_record()


def _find(config: TenantConfig, exception_id: Any) -> ExceptionRecord:
    if exception_id == LEGACY_ID:
        raise ExceptionError(f"exceptionId: {LEGACY_ID} is the tenant's approvedExclusions; change them with PATCH "
                             "approvedExclusions (or add an exception with an owner and an expiry in their place)")
    if not isinstance(exception_id, str) or not exception_id:
        raise ExceptionError("exceptionId: required, the id of one of the tenant's exceptions")
    for record in config.exception_records():
        if record.id == exception_id:
            return record
    raise LookupError(f"no exception {exception_id!r} in tenant {config.tenant_id}")


def _same_scope(a: ExceptionRecord, b: ExceptionRecord) -> bool:
    return a.control == b.control and {k: set(v) for k, v in a.scope.items()} == {k: set(v) for k, v in b.scope.items()}


def build_exception(config: TenantConfig, raw: Any, *, now: datetime) -> ExceptionRecord:
    """The record `raw` (the fields of ADD_FIELDS; id optional) asks to add to this tenant, fully checked. Pure."""
    if not isinstance(raw, dict):
        raise ExceptionError("(body): expected a JSON object with " + ", ".join(ADD_FIELDS))
    unknown = sorted(str(name) for name in set(raw) - set(ADD_FIELDS))
    if unknown:
        written = " (set by authwatch itself)" if unknown[0] == "createdAt" else ""
        raise ExceptionError(f"{unknown[0]}: unknown field{written} (allowed: {', '.join(ADD_FIELDS)})")
    control = raw.get("control")
    if control is None:
        raise ExceptionError(f"control: required, a control id ({', '.join(CATALOGUE)})")
    if control not in CATALOGUE:
        raise ExceptionError(f"control: {control!r} is not a control id (see `authwatch controls list`: "
                             f"{', '.join(CATALOGUE)})")
    expires = parse_expiry(raw.get("expiresAt"), now, config.max_exception_days)
    created = now.astimezone(timezone.utc).replace(microsecond=0)
    try:
        record = parse_exception({**raw, "id": new_id() if raw.get("id") is None else raw["id"],
                                  "createdAt": format_time(created), "expiresAt": format_time(expires)})
    except ExceptionError as error:  # "exception.owner: …" → "owner: …": the field as the caller named it
        raise ExceptionError(str(error).removeprefix("exception.")) from None
    for other in config.exception_records():
        if other.id == record.id:
            raise ExceptionError(f"id: {record.id!r} is already an exception of this tenant (extend it, or choose "
                                 "another id)")
        if other.live(now) and _same_scope(other, record):
            raise ExceptionError(f"scope: exception {other.id} already covers {record.control} with this scope until "
                                 f"{format_time(other.expires_at)}; extend it instead")
    return record


async def add_exception(registry: Any, tenant_id: str, raw: Any, *, now: datetime) -> dict[str, Any]:
    """Add one exception (validated against the tenant as stored); its record as stored."""
    added: list[ExceptionRecord] = []

    def change(config: TenantConfig, version: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        record = build_exception(config, raw, now=now)
        added[:] = [record]
        return [*config.exceptions, record.to_json()], _history(config, version, "added", record,
                                                                  record.created_by, now)

    config = await registry.change_exceptions(tenant_id, change, now=now)
    return {**added[0].to_json(), **_record_status(added[0], config.exception_reminder_days, now)}


async def extend_exception(registry: Any, tenant_id: str, exception_id: Any, expires: Any, *, by: Any,
                           now: datetime) -> dict[str, Any]:
    """Move one exception's expiry later, at most maxExceptionDays from now; its record as stored."""
    who = check_by(by)
    extended: list[ExceptionRecord] = []

    def change(config: TenantConfig, version: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        record = _find(config, exception_id)
        until = parse_expiry(expires, now, config.max_exception_days)
        if until <= record.expires_at:
            raise ExceptionError(f"expiresAt: {format_time(until)} is not after its current expiry "
                                 f"{format_time(record.expires_at)}; remove the exception to end it early")
        new = record.extended(until)
        extended[:] = [new]
        kept = [new.to_json() if item["id"] == record.id else item for item in config.exceptions]
        return kept, _history(config, version, "extended", new, who, now,
                              previousExpiresAt=format_time(record.expires_at))

    config = await registry.change_exceptions(tenant_id, change, now=now)
    return {**extended[0].to_json(), **_record_status(extended[0], config.exception_reminder_days, now)}


async def remove_exception(registry: Any, tenant_id: str, exception_id: Any, *, by: Any,
                           now: datetime) -> dict[str, Any]:
    """Drop one exception; the record as it was."""
    who = check_by(by)
    removed: list[ExceptionRecord] = []

    def change(config: TenantConfig, version: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        record = _find(config, exception_id)
        removed[:] = [record]
        kept = [item for item in config.exceptions if item["id"] != record.id]
        return kept, _history(config, version, "removed", record, who, now)

    await registry.change_exceptions(tenant_id, change, now=now)
    return {**removed[0].to_json(), "removed": True}


async def exceptions_of(registry: Any, tenant_id: str, *, now: datetime) -> dict[str, Any]:
    """The tenant's exceptions (list_exceptions) with its bounds; LookupError when it is not registered."""
    config = await registry.get(tenant_id)
    if config is None:
        raise LookupError(f"no tenant {tenant_id} is registered")
    return describe(config, now=now)
