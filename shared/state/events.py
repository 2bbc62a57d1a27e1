"""Events: the stable vocabulary of product.md, one JSON object each, with a stable id for idempotency."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.model import format_time

CONTROL_FAILED = "control.failed"
CONTROL_RECOVERED = "control.recovered"
CONTROL_UNKNOWN = "control.unknown"
DRIFT_WEAKENED = "drift.weakened"
DRIFT_STRENGTHENED = "drift.strengthened"
BASIC_AUTH_REENABLED = "basic_auth.reenabled"
WINDOW_STARTED = "enforcement.window_started"
WINDOW_CONFIRMED = "enforcement.confirmed"
ENFORCEMENT_GAP = "enforcement.gap"
TENANT_UNREACHABLE = "tenant.unreachable"
TENANT_RECOVERED = "tenant.recovered"

# Exceptions ending (shared/state/exception_events.py), new in the contract: `exception.expiring` (low) once per
# exception and expiry, settings.exceptionReminderDays (default 7) ahead, delivered like any alert so the owner can
# extend it or fix the finding in time; `exception.expired` (medium) once when it passes, kept in history only: the
# finding itself comes back as control.failed, the one alert. Details: exceptionId, control, owner, reason,
# createdBy, expiresAt, scope, wholeControl; expiring adds reminderDays, secondsLeft and accepts (kind -> ids the
# exception accepts now, {} for a whole control, null when nothing), expired adds statusNow.
EXCEPTION_EXPIRING = "exception.expiring"
EXCEPTION_EXPIRED = "exception.expired"

EVENT_TYPES = (CONTROL_FAILED, CONTROL_RECOVERED, CONTROL_UNKNOWN, DRIFT_WEAKENED, DRIFT_STRENGTHENED,
               BASIC_AUTH_REENABLED, WINDOW_STARTED, WINDOW_CONFIRMED, ENFORCEMENT_GAP, TENANT_UNREACHABLE,
               TENANT_RECOVERED, EXCEPTION_EXPIRING)

# Not an event of the contract: a neutral configuration change, kept in history and sent to nobody.
CONFIG_CHANGED = "config.changed"


@dataclass(frozen=True)
class Event:
    at: datetime
    tenant_id: str
    type: str
    control: str | None
    severity: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    subject: str = ""  # what the event is about beyond type/control (a policy id…), part of the id

    @property
    def id(self) -> str:
        """Stable idempotency key: the same transition seen again (a retry, a replay) has the same id."""
        key = "|".join((self.tenant_id, self.type, self.control or "", self.subject, format_time(self.at)))
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def to_json(self) -> dict[str, Any]:
        """The contract shape of product.md (`authwatch replay`), plus the id the alert payload carries."""
        return {"at": format_time(self.at), "tenantId": self.tenant_id, "type": self.type, "control": self.control,
                "severity": self.severity, "summary": self.summary, "details": self.details}

    def to_record(self) -> dict[str, Any]:
        return {"id": self.id, **self.to_json()}
