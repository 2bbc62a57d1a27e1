"""The domain model: a tenant's collected configuration (`TenantSnapshot`) and a control's verdict (`ControlResult`).

Snapshots keep Microsoft's raw shapes (see the snapshot contract in the product spec) so that one can be produced by
`authwatch collect`, written by hand or exported from another tool. Only the envelope is validated here; what is
inside a source is judged by the controls, which answer `unknown` rather than fail on odd data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1

# Every source a snapshot can carry, as "<section>.<name>". The collector fills them, controls read them.
GRAPH_SOURCES = (
    "organization",
    "securityDefaults",
    "conditionalAccessPolicies",
    "sharepointSettings",
    "signIns",
    "directoryAudits",
)
EXCHANGE_SOURCES = (
    "organizationConfig",
    "transportConfig",
    "authenticationPolicies",
    "casMailboxes",
    "casMailboxPlans",
    "users",
)
SOURCES = tuple(f"graph.{name}" for name in GRAPH_SOURCES) + tuple(f"exchange.{name}" for name in EXCHANGE_SOURCES)

EXCLUSION_KINDS = ("users", "groups", "roles", "applications", "locations", "guestOrExternalUserTypes")


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    PENDING = "pending"
    UNKNOWN = "unknown"
    NOT_APPLICABLE = "not_applicable"


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class SnapshotError(ValueError):
    """The snapshot cannot be read at all; the message names the offending field."""


@dataclass(frozen=True)
class ControlResult:
    control: str
    status: Status
    severity: Severity
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    frameworks: tuple[str, ...] = ()
    remediation: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "status": str(self.status),
            "severity": str(self.severity),
            "summary": self.summary,
            "evidence": self.evidence,
            "frameworks": list(self.frameworks),
            "remediation": self.remediation,
        }


@dataclass(frozen=True)
class SourceError:
    """Why a source was not collected (HTTP status and Microsoft's error code, never a token)."""

    status: int | None
    code: str
    message: str
    # A read cut short keeps what it read; these bound the stretch it did not reach (ISO times), read next cycle.
    unread_from: str | None = None
    unread_until: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.partial:
            body.update(unreadFrom=self.unread_from, unreadUntil=self.unread_until)
        return body

    @property
    def partial(self) -> bool:
        """The source was read in part: what was read is in the snapshot, the stretch not reached is named."""
        return bool(self.unread_from and self.unread_until)


LICENCE_ERROR_CODE = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"


@dataclass(frozen=True)
class EvaluationContext:
    """What evaluation knows beyond the snapshot itself, handed in by the caller (state, never a clock read).

    `block_effective_at` is when the legacy-auth block became effective as tracked in stored state; None means
    evaluate offline and derive it from the qualifying policies (controls.md §2).
    """

    block_effective_at: datetime | None = None


@dataclass(frozen=True)
class TenantSnapshot:
    tenant_id: str
    collected_at: datetime
    settings: dict[str, Any] = field(default_factory=dict)
    graph: dict[str, Any] = field(default_factory=dict)
    exchange: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, SourceError] = field(default_factory=dict)

    def collected(self, source: str) -> bool:
        """A source counts as collected when it is present and not listed under errors."""
        section, _, name = source.partition(".")
        container = self.graph if section == "graph" else self.exchange
        return source not in self.errors and name in container and container[name] is not None

    def get(self, source: str) -> Any:
        """The raw value of a collected source, or None when it was not collected."""
        if not self.collected(source):
            return None
        section, _, name = source.partition(".")
        return (self.graph if section == "graph" else self.exchange)[name]

    def error(self, source: str) -> SourceError | None:
        return self.errors.get(source)

    def partial(self, source: str) -> Any:
        """What was read of a source whose read was cut short (its error names the stretch not reached), or None.
        Such a source is still not `collected`: a verdict on it is never PASS."""
        error = self.errors.get(source)
        if error is None or not error.partial:
            return None
        section, _, name = source.partition(".")
        return (self.graph if section == "graph" else self.exchange).get(name)

    @property
    def unreachable(self) -> bool:
        """Nothing was collected and something failed: the whole tenant could not be reached."""
        return bool(self.errors) and not any(self.collected(source) for source in SOURCES)

    def approved_exclusions(self, kind: str) -> frozenset[str]:
        approved = self.settings.get("approvedExclusions") or {}
        return frozenset(str(item) for item in approved.get(kind) or ())

    @property
    def enforcement_window_hours(self) -> float:
        return float(self.settings.get("enforcementWindowHours", 24))

    def to_json(self) -> dict[str, Any]:
        return {
            "schemaVersion": SCHEMA_VERSION,
            "tenantId": self.tenant_id,
            "collectedAt": format_time(self.collected_at),
            "settings": self.settings,
            "graph": self.graph,
            "exchange": self.exchange,
            "errors": {source: error.to_json() for source, error in self.errors.items()},
        }


def format_time(moment: datetime) -> str:
    """UTC, second precision, with a Z: the one timestamp format authwatch writes."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any, field_name: str) -> datetime:
    """Parse an ISO 8601 timestamp (Graph writes 7 fractional digits); naive times are taken as UTC."""
    if not isinstance(value, str) or "T" not in value:
        raise SnapshotError(f"{field_name}: expected an ISO 8601 timestamp such as 2026-11-23T08:00:00Z, got {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SnapshotError(f"{field_name}: {value!r} is not a valid ISO 8601 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_time_or_none(value: Any) -> datetime | None:
    """Lenient variant for timestamps inside Microsoft data, where a bad value must not stop evaluation."""
    try:
        return parse_time(value, "")
    except SnapshotError:
        return None


def _object(document: dict[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SnapshotError(f"{key}: expected a JSON object, got {type(value).__name__}")
    return value


def _settings(raw: dict[str, Any]) -> dict[str, Any]:
    settings = _object(raw, "settings")
    exclusions = settings.get("approvedExclusions")
    if exclusions is not None:
        if not isinstance(exclusions, dict):
            raise SnapshotError("settings.approvedExclusions: expected a JSON object")
        for kind, ids in exclusions.items():
            if kind not in EXCLUSION_KINDS:
                continue  # unknown extra fields are ignored
            if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
                raise SnapshotError(f"settings.approvedExclusions.{kind}: expected a list of strings")
    hours = settings.get("enforcementWindowHours")
    if hours is not None and (isinstance(hours, bool) or not isinstance(hours, (int, float)) or hours <= 0):
        raise SnapshotError("settings.enforcementWindowHours: expected a positive number of hours")
    return settings


def _optional_time(value: Any, name: str) -> str | None:
    return None if value is None else format_time(parse_time(value, name))


def _errors(raw: dict[str, Any]) -> dict[str, SourceError]:
    errors: dict[str, SourceError] = {}
    for source, detail in _object(raw, "errors").items():
        if not isinstance(detail, dict):
            raise SnapshotError(f"errors.{source}: expected a JSON object with status, code and message")
        status = detail.get("status")
        errors[source] = SourceError(
            status=status if isinstance(status, int) and not isinstance(status, bool) else None,
            code=str(detail.get("code") or ""),
            message=str(detail.get("message") or ""),
            unread_from=_optional_time(detail.get("unreadFrom"), f"errors.{source}.unreadFrom"),
            unread_until=_optional_time(detail.get("unreadUntil"), f"errors.{source}.unreadUntil"),
        )
    return errors


def snapshot_from_json(raw: Any) -> TenantSnapshot:
    """Validate the envelope of a snapshot document and build a TenantSnapshot from it."""
    if not isinstance(raw, dict):
        raise SnapshotError(f"snapshot: expected a JSON object at the top level, got {type(raw).__name__}")
    version = raw.get("schemaVersion")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise SnapshotError(f"schemaVersion: this authwatch reads schemaVersion {SCHEMA_VERSION}, got {version!r}")
    tenant_id = raw.get("tenantId")
    if not isinstance(tenant_id, str) or not tenant_id.strip():
        raise SnapshotError(f"tenantId: expected a non-empty string, got {tenant_id!r}")
    return TenantSnapshot(
        tenant_id=tenant_id,
        collected_at=parse_time(raw.get("collectedAt"), "collectedAt"),
        settings=_settings(raw),
        graph=_object(raw, "graph"),
        exchange=_object(raw, "exchange"),
        errors=_errors(raw),
    )


def load_snapshot(text: str) -> TenantSnapshot:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise SnapshotError(f"snapshot: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})") from None
    return snapshot_from_json(raw)
