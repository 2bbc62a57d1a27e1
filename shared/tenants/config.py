"""One registered tenant as validated data (TenantConfig), the checks on every field, and when it is due.

Pure: no storage here (shared/tenants/registry.py reads and writes the rows). Every bound on a field (schedule range,
JSON sizes, tag count, error length) is checked when a TenantConfig is built, so nothing unbounded reaches a row.

When is a tenant due (`due`)? interval = schedule_minutes or the fleet default. A tenant is due when it is enabled
and (a) it was never evaluated, or (b) its configuration changed after its last evaluation (a fixed credential or a
re-enabled tenant is evaluated at the next tick), or (c) now ≥ last evaluation + interval − grace, where the last
evaluation is the last attempt (success or failure: a broken tenant is retried at its own pace, the queue already
retries transient failures) and grace = min(2 minutes, interval / 2): a tenant whose evaluation finished up to two
minutes after a timer tick (queue latency) is due again at the tick one interval later instead of one tick after
that, while with ticks at least 2 minutes apart no tenant is ever evaluated a tick early.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.collect.connection import TenantAccess
from shared.collect.credentials import CredentialError, CredentialSpec
from shared.exceptions import (DEFAULT_MAX_DAYS, DEFAULT_REMINDER_DAYS, REMINDER_DAYS_RANGE, ExceptionError,
                               ExceptionRecord, parse_exceptions)
from shared.model import EXCLUSION_KINDS, format_time

SCHEDULE_RANGE = (5, 1440)
MAX_EXCEPTION_DAYS_RANGE = (1, 3650)  # maxExceptionDays: the longest exception this tenant allows
MAX_JSON_CHARS = 32_000  # one Table string property holds 64 KiB of UTF-16
MAX_ERROR_CHARS = 500
MAX_TAGS = 50

DUE_GRACE = timedelta(minutes=2)  # see due()

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
CONFIG_FIELDS = ("displayName", "credential", "enabled", "scheduleMinutes", "approvedExclusions", "routing", "tags",
                 "exceptions", "maxExceptionDays", "exceptionReminderDays")
# Changed one at a time through shared/tenants/exceptions_service.py, so every change is in the tenant's history:
# never by a whole-config write from a request (onboarding, PATCH).
MANAGED_FIELDS = ("exceptions",)
STATUS_FIELDS = ("lastSuccessAt", "lastAttemptAt", "consecutiveFailures", "lastError", "createdAt", "updatedAt",
                 "verifiedDomains")
# The tenant's domain names as Graph's organization lists them (written by the worker), so people can name a tenant
# `contoso.onmicrosoft.com`. A tenant may hold up to 5,000 domains; the first 100 (sorted, the initial one first) are
# kept, which is what names it.
MAX_DOMAINS = 100
ALL_FIELDS = ("tenantId", *CONFIG_FIELDS, *STATUS_FIELDS)
# What a queue message carries of a tenant for the worker (shared/cycle/fleet.py): what the worker reads, and nothing
# else (no routing, which may hold webhook addresses; no tags). Never a secret: the credential NAMES app settings.
WORKER_FIELDS = ("tenantId", "displayName", "credential", "enabled", "approvedExclusions", "consecutiveFailures",
                 "lastError", "verifiedDomains", "exceptions", "exceptionReminderDays")
_EXCEPTION_FIELDS = ("exceptions", "exceptionReminderDays")  # carried only by a tenant that has exceptions
# What could carry a secret in an error text: a JWT, "Bearer …", key=value pairs named like secrets.
_SECRETISH = (
    (re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*"), "[token]"),
    (re.compile(r"(?i)\bbearer\s+\S+"), "Bearer [redacted]"),
    (re.compile(r"(?i)\b(client_secret|client_assertion|secret|password|sig|key|token|accountkey)=([^&\s;]+)"),
     r"\1=[redacted]"),
)


class RegistryError(ValueError):
    """Invalid tenant configuration or tenant id; the message starts with the field ("scheduleMinutes: …")."""


class TenantExists(RegistryError):
    """`add` of a tenant that is already registered."""


def tenant_key(tenant_id: Any) -> str:
    """The validated, lower-case tenant id: the only form that ever reaches a Table key or query."""
    if not isinstance(tenant_id, str) or not _GUID.match(tenant_id):
        raise RegistryError(f"tenantId: expected a GUID such as 8c1d0f6e-…, got {_short(tenant_id)}")
    return tenant_id.lower()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_utc(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise RegistryError(f"{name}: expected a date-time, got {_short(value)}")
    # azure-data-tables hands back a datetime subclass; keep plain, aware UTC datetimes
    moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return datetime(moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second,
                    moment.microsecond, tzinfo=timezone.utc)


def _parse_time(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RegistryError(f"{name}: expected an ISO 8601 timestamp such as 2026-11-23T08:00:00Z, got {_short(value)}")
    try:
        return as_utc(datetime.fromisoformat(value), name)
    except ValueError:
        raise RegistryError(f"{name}: {_short(value)} is not an ISO 8601 timestamp") from None


def bounded_json(value: Any, name: str) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        raise RegistryError(f"{name}: must be plain JSON (objects, lists, strings, numbers, booleans)") from None
    if len(text) > MAX_JSON_CHARS:
        raise RegistryError(f"{name}: too large ({len(text):,} characters of JSON; at most {MAX_JSON_CHARS:,})")
    return text


def clean_error(text: str | None) -> str | None:
    """An error text fit to store and show: one line, trimmed, with anything token- or secret-like redacted."""
    if text is None:
        return None
    text = " ".join(str(text).split())
    for pattern, replacement in _SECRETISH:
        text = pattern.sub(replacement, text)
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 1] + "…"


def _exclusions(value: Any) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise RegistryError(f"approvedExclusions: expected an object keyed by {', '.join(EXCLUSION_KINDS)}")
    result: dict[str, list[str]] = {}
    for kind, ids in value.items():
        if kind not in EXCLUSION_KINDS:
            raise RegistryError(f"approvedExclusions.{kind}: unknown kind (allowed: {', '.join(EXCLUSION_KINDS)})")
        if not isinstance(ids, (list, tuple)):
            raise RegistryError(f"approvedExclusions.{kind}: expected a list of ids, got {type(ids).__name__}")
        for index, item in enumerate(ids):
            if not isinstance(item, str) or not item.strip() or len(item) > 256 or _CONTROL_CHARS.search(item):
                raise RegistryError(f"approvedExclusions.{kind}[{index}]: expected a non-empty id (at most 256 "
                                    f"characters), got {_short(item)}")
        result[kind] = list(dict.fromkeys(item.strip() for item in ids))
    bounded_json(result, "approvedExclusions")
    return result


def _exceptions(value: Any) -> list[dict[str, Any]]:
    """The tenant's exceptions, each in ExceptionRecord.to_json() form (normalised), bounded like every JSON field."""
    try:
        records = parse_exceptions(list(value) if isinstance(value, tuple) else value)
    except ExceptionError as error:
        raise RegistryError(str(error)) from None
    result = [record.to_json() for record in records]
    bounded_json(result, "exceptions")
    return result


def _whole(value: Any, name: str, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        raise RegistryError(f"{name}: expected whole days between {bounds[0]} and {bounds[1]}, got {_short(value)}")
    return value


def _domains(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or len(value) > MAX_DOMAINS:
        raise RegistryError(f"verifiedDomains: expected a list of at most {MAX_DOMAINS} domain names")
    if not all(isinstance(name, str) and 0 < len(name.strip()) <= 255 for name in value):
        raise RegistryError("verifiedDomains: expected domain names")
    return tuple(dict.fromkeys(name.strip().lower() for name in value))


def domain_names(organization: Any) -> tuple[str, ...]:
    """The names to store from Graph's organization (an object, or the one-item collection): initial first."""
    org = organization[0] if isinstance(organization, list) and organization else organization
    domains = org.get("verifiedDomains") if isinstance(org, dict) else None
    if not isinstance(domains, list):
        return ()
    named = [d for d in domains if isinstance(d, dict) and isinstance(d.get("name"), str) and d["name"].strip()]
    named.sort(key=lambda d: (not d.get("isInitial"), d["name"].lower()))
    return tuple(dict.fromkeys(d["name"].strip().lower() for d in named))[:MAX_DOMAINS]


def _tags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise RegistryError(f"tags: expected a list of strings, got {type(value).__name__}")
    if len(value) > MAX_TAGS:
        raise RegistryError(f"tags: at most {MAX_TAGS} tags, got {len(value)}")
    for index, tag in enumerate(value):
        if not isinstance(tag, str) or not tag.strip() or len(tag) > 64 or _CONTROL_CHARS.search(tag):
            raise RegistryError(f"tags[{index}]: expected a non-empty tag of at most 64 characters, got {_short(tag)}")
    return tuple(dict.fromkeys(tag.strip() for tag in value))


@dataclass(frozen=True)
class TenantConfig:
    """One registered tenant. Constructing one validates and normalises it (RegistryError naming the field)."""

    tenant_id: str
    display_name: str
    credential: CredentialSpec
    enabled: bool = True
    schedule_minutes: int | None = None  # override of the fleet interval; 5..1440
    approved_exclusions: dict[str, list[str]] = field(default_factory=dict)
    routing: dict[str, Any] | None = field(default=None, repr=False)  # opaque here; may hold webhook addresses
    tags: tuple[str, ...] = ()
    last_success_at: datetime | None = None
    last_attempt_at: datetime | None = None  # last evaluation, successful or not
    consecutive_failures: int = 0
    last_error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None  # last configuration change (outcomes do not count)
    verified_domains: tuple[str, ...] = ()  # lower-case, from the last collection's organization
    # Accepted deviations (shared/exceptions.py), as ExceptionRecord.to_json() objects; changed one at a time by
    # shared/tenants/exceptions_service.py, which also bounds each one's length by max_exception_days.
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    max_exception_days: int = DEFAULT_MAX_DAYS
    exception_reminder_days: int = DEFAULT_REMINDER_DAYS
    # The registry row's ConfigVersion: raised by every change the queue worker must see (shared/tenants/registry.py).
    # Not part of the JSON form (API, export): it is the registry's bookkeeping.
    config_version: int = field(default=0, compare=False, repr=False)

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen dataclass
        put("tenant_id", tenant_key(self.tenant_id))
        if not isinstance(self.display_name, str) or not self.display_name.strip() or len(self.display_name) > 256 \
                or _CONTROL_CHARS.search(self.display_name):
            raise RegistryError(f"displayName: expected a non-empty name of at most 256 characters, got "
                                f"{_short(self.display_name)}")
        put("display_name", self.display_name.strip())
        if not isinstance(self.credential, CredentialSpec):
            raise RegistryError(f"credential: expected a CredentialSpec, got {type(self.credential).__name__}")
        try:
            self.credential.validate()
        except CredentialError as error:
            raise RegistryError(f"credential.{error}") from None
        if not isinstance(self.enabled, bool):
            raise RegistryError(f"enabled: expected true or false, got {_short(self.enabled)}")
        minutes = self.schedule_minutes
        if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int)
                                    or not SCHEDULE_RANGE[0] <= minutes <= SCHEDULE_RANGE[1]):
            raise RegistryError(f"scheduleMinutes: expected whole minutes between {SCHEDULE_RANGE[0]} and "
                                f"{SCHEDULE_RANGE[1]} (or null for the fleet default), got {_short(minutes)}")
        put("approved_exclusions", _exclusions(self.approved_exclusions))
        if self.routing is not None:
            if not isinstance(self.routing, dict):
                raise RegistryError(f"routing: expected an object or null, got {type(self.routing).__name__}")
            bounded_json(self.routing, "routing")
        put("tags", _tags(self.tags))
        for name in ("last_success_at", "last_attempt_at", "created_at", "updated_at"):
            put(name, as_utc(getattr(self, name), _camel(name)))
        failures = self.consecutive_failures
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
            raise RegistryError(f"consecutiveFailures: expected a whole number ≥ 0, got {_short(failures)}")
        if self.last_error is not None and not isinstance(self.last_error, str):
            raise RegistryError(f"lastError: expected a string or null, got {type(self.last_error).__name__}")
        put("last_error", clean_error(self.last_error))
        put("verified_domains", _domains(self.verified_domains))
        put("exceptions", _exceptions(self.exceptions))
        _whole(self.max_exception_days, "maxExceptionDays", MAX_EXCEPTION_DAYS_RANGE)
        _whole(self.exception_reminder_days, "exceptionReminderDays", REMINDER_DAYS_RANGE)
        if isinstance(self.config_version, bool) or not isinstance(self.config_version, int) or self.config_version < 0:
            raise RegistryError(f"configVersion: expected a whole number ≥ 0, got {_short(self.config_version)}")

    def exception_records(self) -> list[ExceptionRecord]:
        return parse_exceptions(self.exceptions)

    def settings(self) -> dict[str, Any]:
        """The snapshot "settings" block for this tenant. Exceptions (and their reminder days) only when the tenant
        has any, so the snapshot of a tenant without exceptions is what it always was."""
        settings: dict[str, Any] = {
            "approvedExclusions": {kind: list(self.approved_exclusions.get(kind, ())) for kind in EXCLUSION_KINDS}}
        if self.exceptions:
            settings["exceptions"] = [dict(item) for item in self.exceptions]
            settings["exceptionReminderDays"] = self.exception_reminder_days
        return settings

    def access(self, env: Mapping[str, str], *, assertion_provider: Callable[[], str] | None = None) -> TenantAccess:
        """How the collector signs in: the credential spec resolved against `env` (the app settings) when used."""
        return TenantAccess(tenant_id=self.tenant_id, display_name=self.display_name, settings=self.settings(),
                            credential_spec=self.credential, env=env, assertion_provider=assertion_provider)

    def to_json(self) -> dict[str, Any]:
        time = lambda value: format_time(value) if value else None  # noqa: E731
        return {
            "tenantId": self.tenant_id,
            "displayName": self.display_name,
            "credential": self.credential.to_json(),
            "enabled": self.enabled,
            "scheduleMinutes": self.schedule_minutes,
            "approvedExclusions": {kind: list(ids) for kind, ids in self.approved_exclusions.items()},
            "routing": self.routing,
            "tags": list(self.tags),
            "lastSuccessAt": time(self.last_success_at),
            "lastAttemptAt": time(self.last_attempt_at),
            "consecutiveFailures": self.consecutive_failures,
            "lastError": self.last_error,
            "createdAt": time(self.created_at),
            "updatedAt": time(self.updated_at),
            "verifiedDomains": list(self.verified_domains),
            "exceptions": [dict(item) for item in self.exceptions],
            "maxExceptionDays": self.max_exception_days,
            "exceptionReminderDays": self.exception_reminder_days,
        }

    def worker_json(self) -> dict[str, Any]:
        """The worker's view (WORKER_FIELDS) and the registry version it was read at, for a queue message. The
        exception fields only when there are exceptions (as in `settings`): the message of a tenant without any is
        what it always was."""
        data = self.to_json()
        carried = [name for name in WORKER_FIELDS if self.exceptions or name not in _EXCEPTION_FIELDS]
        return {**{name: data[name] for name in carried}, "configVersion": self.config_version}

    @classmethod
    def from_worker_json(cls, data: Any) -> TenantConfig:
        """Read `worker_json` back, validated (RegistryError). Fields it does not carry take their defaults."""
        if not isinstance(data, dict) or set(data) - {*WORKER_FIELDS, "configVersion"}:
            raise RegistryError("(message config): expected the fields of TenantConfig.worker_json")
        config = cls.from_json({name: data[name] for name in WORKER_FIELDS if name in data})
        return replace(config, config_version=data.get("configVersion"))

    @classmethod
    def from_json(cls, data: Any, *, tenant_id: str | None = None, config_only: bool = False) -> TenantConfig:
        """Validate a JSON object (API input or an exported registry). `tenant_id` (e.g. from the URL) is used when
        the body has none, and must match it when it has one. Unknown fields are errors (a typo must not be lost).
        `config_only` (API input) refuses the fields authwatch writes itself (lastSuccessAt, createdAt, …)."""
        if not isinstance(data, dict):
            raise RegistryError(f"(body): expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(ALL_FIELDS))
        if unknown:
            allowed = ("tenantId", *CONFIG_FIELDS) if config_only else ALL_FIELDS
            raise RegistryError(f"{unknown[0]}: unknown field (allowed: {', '.join(allowed)})")
        if config_only:
            written = [name for name in STATUS_FIELDS if name in data]
            if written:
                raise RegistryError(f"{written[0]}: written by authwatch itself, not by a request")
            managed = [name for name in MANAGED_FIELDS if name in data]
            if managed:
                raise RegistryError(managed_message(managed[0]))
        body_id = data.get("tenantId")
        if tenant_id is not None and body_id is not None and tenant_key(body_id) != tenant_key(tenant_id):
            raise RegistryError(f"tenantId: the body says {body_id} but the request is for {tenant_id}")
        chosen = body_id if body_id is not None else tenant_id
        if chosen is None:
            raise RegistryError("tenantId: required")
        if "displayName" not in data:
            raise RegistryError("displayName: required")
        if "credential" not in data:
            raise RegistryError("credential: required (mode and clientId, plus the setting its mode needs)")
        try:
            credential = CredentialSpec.from_json(data["credential"])
        except CredentialError as error:
            raise RegistryError(f"credential.{error}" if ":" in str(error) else f"credential: {error}") from None
        tags = data.get("tags")
        return cls(
            tenant_id=chosen,
            display_name=data["displayName"],
            credential=credential,
            enabled=data.get("enabled", True),
            schedule_minutes=data.get("scheduleMinutes"),
            approved_exclusions={} if data.get("approvedExclusions") is None else data["approvedExclusions"],
            routing=data.get("routing"),
            tags=() if tags is None else tags,
            last_success_at=_parse_time(data.get("lastSuccessAt"), "lastSuccessAt"),
            last_attempt_at=_parse_time(data.get("lastAttemptAt"), "lastAttemptAt"),
            consecutive_failures=data.get("consecutiveFailures", 0),
            last_error=data.get("lastError"),
            created_at=_parse_time(data.get("createdAt"), "createdAt"),
            updated_at=_parse_time(data.get("updatedAt"), "updatedAt"),
            verified_domains=data.get("verifiedDomains") or (),
            exceptions=[] if data.get("exceptions") is None else data["exceptions"],
            max_exception_days=_or(data.get("maxExceptionDays"), DEFAULT_MAX_DAYS),
            exception_reminder_days=_or(data.get("exceptionReminderDays"), DEFAULT_REMINDER_DAYS),
        )


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value  # null: the default, as scheduleMinutes null is the fleet's


def managed_message(name: str) -> str:
    return (f"{name}: changed one exception at a time (POST tenants/{{tenantId}}/exceptions, …/extend, DELETE …; "
            f"`authwatch exceptions add|extend|remove`) so that every change is in the tenant's history")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def due(config: TenantConfig, now: datetime, default_minutes: int, *, grace: timedelta = DUE_GRACE) -> bool:
    """Is this tenant due for evaluation at `now`? (The rule is in the module docstring.)"""
    if not config.enabled:
        return False
    interval = timedelta(minutes=config.schedule_minutes or default_minutes)
    last = config.last_attempt_at or config.last_success_at
    if last is None:
        return True
    if config.updated_at is not None and config.updated_at > last:
        return True
    return now >= last + interval - min(grace, interval / 2)


# -- Table rows -----------------------------------------------------------------------------------------------------
