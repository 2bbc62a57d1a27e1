"""Exceptions: an accepted deviation with an owner, a reason and an end — the records every layer reads.

An exception names one control and the objects it covers (its scope); an empty scope covers the control as a whole
(an organisation-wide setting, such as SMTP AUTH left on in the transport config). It is kept in the tenant's
configuration (`exceptions`, a list) and travels into the snapshot's `settings.exceptions`, so `authwatch evaluate`
and `authwatch replay` honour it exactly as the timer does. It always ends: `expiresAt` is required, at most
`maxExceptionDays` (tenant setting, default 180) after it was created or last extended.

This module is the shape and its validation only (pure). What it does to a verdict is in
shared/controls/exceptions.py; its reminders and its expiry in shared/state; storing and changing it in
shared/tenants and shared/cli.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from shared.model import format_time, parse_time

# What a scope may name. The Conditional Access kinds are the exclusion lists of a policy's conditions
# (users/groups/roles/applications/locations/guestOrExternalUserTypes, as settings.approvedExclusions names them);
# `mailboxes` are Exchange mailboxes (UserPrincipalName, PrimarySmtpAddress or Identity, compared case-insensitively);
# `authenticationPolicies` Exchange authentication policy names.
SCOPE_KINDS = ("users", "groups", "roles", "applications", "locations", "guestOrExternalUserTypes", "mailboxes",
               "authenticationPolicies")
MAX_EXCEPTIONS = 100  # per tenant: the list rides in the tenant's config row and the worker's queue message
MAX_SCOPE_IDS = 200  # per exception, all kinds together
MAX_TEXT = 500  # owner, reason, createdBy
DEFAULT_MAX_DAYS = 180
DEFAULT_REMINDER_DAYS = 7
REMINDER_DAYS_RANGE = (0, 90)  # settings.exceptionReminderDays: whole days; 0 = no reminder before the expiry itself
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_REQUIRED_TEXT = ("owner", "reason", "createdBy")


class ExceptionError(ValueError):
    """An exception record that cannot be used; the message names the field."""


@dataclass(frozen=True)
class ExceptionRecord:
    id: str
    control: str
    owner: str
    reason: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    scope: dict[str, tuple[str, ...]] = field(default_factory=dict)  # kind → ids; empty: the whole control

    def live(self, now: datetime) -> bool:
        return self.created_at <= now < self.expires_at

    def covers_whole_control(self) -> bool:
        return not any(self.scope.values())

    def extended(self, until: datetime) -> ExceptionRecord:
        return replace(self, expires_at=until)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "control": self.control,
                "scope": {kind: list(ids) for kind, ids in self.scope.items() if ids},
                "owner": self.owner, "reason": self.reason, "createdBy": self.created_by,
                "createdAt": format_time(self.created_at), "expiresAt": format_time(self.expires_at)}


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ExceptionError(f"{where}.{key}: required, a non-empty string")
    if len(value) > MAX_TEXT:
        raise ExceptionError(f"{where}.{key}: at most {MAX_TEXT} characters")
    return value.strip()


def _scope(raw: Any, where: str) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ExceptionError(f"{where}.scope: expected an object keyed by {', '.join(SCOPE_KINDS)}")
    scope: dict[str, tuple[str, ...]] = {}
    for kind, ids in raw.items():
        if kind not in SCOPE_KINDS:
            raise ExceptionError(f"{where}.scope.{kind}: unknown kind (allowed: {', '.join(SCOPE_KINDS)})")
        if not isinstance(ids, list) or not all(isinstance(item, str) and 0 < len(item) <= 256 for item in ids):
            raise ExceptionError(f"{where}.scope.{kind}: expected a list of ids (non-empty strings, at most 256 "
                                 f"characters each)")
        if ids:
            scope[kind] = tuple(dict.fromkeys(ids))
    if sum(len(ids) for ids in scope.values()) > MAX_SCOPE_IDS:
        raise ExceptionError(f"{where}.scope: at most {MAX_SCOPE_IDS} ids in all")
    return scope


def parse_exception(raw: Any, where: str = "exception") -> ExceptionRecord:
    """One record from its JSON shape (see ExceptionRecord.to_json); ExceptionError naming the field otherwise."""
    if not isinstance(raw, dict):
        raise ExceptionError(f"{where}: expected a JSON object")
    ident = raw.get("id")
    if not isinstance(ident, str) or not _ID.match(ident):
        raise ExceptionError(f"{where}.id: expected 1-64 letters, digits, '.', '_' or '-'")
    control = raw.get("control")
    if not isinstance(control, str) or not control:
        raise ExceptionError(f"{where}.control: required, a control id")
    texts = {key: _text(raw, key, where) for key in _REQUIRED_TEXT}
    try:
        created = parse_time(raw.get("createdAt"), f"{where}.createdAt")
        expires = parse_time(raw.get("expiresAt"), f"{where}.expiresAt")
    except ValueError as error:
        raise ExceptionError(str(error)) from error
    if expires <= created:
        raise ExceptionError(f"{where}.expiresAt: must be after createdAt")
    return ExceptionRecord(id=ident, control=control, owner=texts["owner"], reason=texts["reason"],
                           created_by=texts["createdBy"], created_at=created, expires_at=expires,
                           scope=_scope(raw.get("scope"), where))


def parse_exceptions(raw: Any, where: str = "exceptions") -> list[ExceptionRecord]:
    """A tenant's list; ids unique, at most MAX_EXCEPTIONS."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ExceptionError(f"{where}: expected a list of exception objects")
    if len(raw) > MAX_EXCEPTIONS:
        raise ExceptionError(f"{where}: at most {MAX_EXCEPTIONS} exceptions per tenant")
    records = [parse_exception(item, f"{where}[{index}]") for index, item in enumerate(raw)]
    seen: set[str] = set()
    for index, record in enumerate(records):
        if record.id in seen:
            raise ExceptionError(f"{where}[{index}].id: {record.id!r} is used twice")
        seen.add(record.id)
    return records


def reminder_days(value: Any) -> int:
    """settings.exceptionReminderDays read leniently (a reminder must never stop a cycle): the default for anything
    that is not a whole number of days in REMINDER_DAYS_RANGE. `authwatch evaluate` rejects such input instead."""
    low, high = REMINDER_DAYS_RANGE
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return DEFAULT_REMINDER_DAYS


def check_length(created: datetime, expires: datetime, max_days: int) -> None:
    """The tenant's longest allowed exception: an expiry further than `max_days` from `created` is refused."""
    if expires - created > timedelta(days=max_days):
        raise ExceptionError(f"expiresAt: at most {max_days} days after it was set (this tenant's maxExceptionDays); "
                             f"extend it again later instead")
