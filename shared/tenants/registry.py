"""The tenant registry: which tenants authwatch watches, how it signs in to each, and how each is doing.

Table `AuthwatchRegistry`, PartitionKey "tenant", RowKey = the tenant id (a lower-case GUID, validated before any
query, so no input ever reaches an OData filter). One row per tenant:

    DisplayName, Enabled, Credential (JSON: mode, client id, NAMES of app settings — never a secret),
    ScheduleMinutes, ApprovedExclusions (JSON), Routing (JSON), Tags (JSON), CreatedAt, UpdatedAt   ← configuration
    LastSuccessAt, LastAttemptAt, ConsecutiveFailures, LastError                                     ← outcomes
    InFlightUntil                                                                                    ← fan-out lease

Every write is read-modify-write with the row's ETag (retried on a conflict), so configuration changes, outcomes
and leases written concurrently never overwrite each other, and properties this version does not know are kept. A
tenant is never deleted: `disable` keeps the row and its history.

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
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.collect.connection import TenantAccess
from shared.collect.credentials import CredentialError, CredentialSpec
from shared.model import EXCLUSION_KINDS, format_time
from shared.storage.account import StorageAccount, account

log = logging.getLogger("authwatch.registry")

TABLE = "AuthwatchRegistry"
PARTITION = "tenant"
SCHEDULE_RANGE = (5, 1440)
MAX_JSON_CHARS = 32_000  # one Table string property holds 64 KiB of UTF-16
MAX_ERROR_CHARS = 500
MAX_TAGS = 50
WRITE_ATTEMPTS = 5
DUE_GRACE = timedelta(minutes=2)  # see due()

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_CONFIG_FIELDS = ("displayName", "credential", "enabled", "scheduleMinutes", "approvedExclusions", "routing", "tags")
_STATUS_FIELDS = ("lastSuccessAt", "lastAttemptAt", "consecutiveFailures", "lastError", "createdAt", "updatedAt")
_ALL_FIELDS = ("tenantId", *_CONFIG_FIELDS, *_STATUS_FIELDS)
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


def _utc(value: datetime | None, name: str) -> datetime | None:
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
        return _utc(datetime.fromisoformat(value), name)
    except ValueError:
        raise RegistryError(f"{name}: {_short(value)} is not an ISO 8601 timestamp") from None


def _json_size(value: Any, name: str) -> str:
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
    _json_size(result, "approvedExclusions")
    return result


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
            _json_size(self.routing, "routing")
        put("tags", _tags(self.tags))
        for name in ("last_success_at", "last_attempt_at", "created_at", "updated_at"):
            put(name, _utc(getattr(self, name), _camel(name)))
        failures = self.consecutive_failures
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
            raise RegistryError(f"consecutiveFailures: expected a whole number ≥ 0, got {_short(failures)}")
        if self.last_error is not None and not isinstance(self.last_error, str):
            raise RegistryError(f"lastError: expected a string or null, got {type(self.last_error).__name__}")
        put("last_error", clean_error(self.last_error))

    def settings(self) -> dict[str, Any]:
        """The snapshot "settings" block for this tenant."""
        return {"approvedExclusions": {kind: list(self.approved_exclusions.get(kind, ())) for kind in EXCLUSION_KINDS}}

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
        }

    @classmethod
    def from_json(cls, data: Any, *, tenant_id: str | None = None, config_only: bool = False) -> TenantConfig:
        """Validate a JSON object (API input or an exported registry). `tenant_id` (e.g. from the URL) is used when
        the body has none, and must match it when it has one. Unknown fields are errors (a typo must not be lost).
        `config_only` (API input) refuses the fields authwatch writes itself (lastSuccessAt, createdAt, …)."""
        if not isinstance(data, dict):
            raise RegistryError(f"(body): expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_ALL_FIELDS))
        if unknown:
            allowed = ("tenantId", *_CONFIG_FIELDS) if config_only else _ALL_FIELDS
            raise RegistryError(f"{unknown[0]}: unknown field (allowed: {', '.join(allowed)})")
        if config_only:
            written = [name for name in _STATUS_FIELDS if name in data]
            if written:
                raise RegistryError(f"{written[0]}: written by authwatch itself, not by a request")
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
        )


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

_TIME_COLUMNS = {"LastSuccessAt": "last_success_at", "LastAttemptAt": "last_attempt_at",
                 "CreatedAt": "created_at", "UpdatedAt": "updated_at"}


def _config_columns(config: TenantConfig) -> dict[str, Any]:
    """The configuration properties of a row; None means "remove the property"."""
    return {
        "DisplayName": config.display_name,
        "Enabled": config.enabled,
        "Credential": json.dumps(config.credential.to_json(), sort_keys=True),
        "ScheduleMinutes": config.schedule_minutes,
        "ApprovedExclusions": _json_size(config.approved_exclusions, "approvedExclusions"),
        "Routing": None if config.routing is None else _json_size(config.routing, "routing"),
        "Tags": json.dumps(list(config.tags)),
    }


def _status_columns(config: TenantConfig) -> dict[str, Any]:
    return {
        "LastSuccessAt": config.last_success_at,
        "LastAttemptAt": config.last_attempt_at,
        "ConsecutiveFailures": config.consecutive_failures,
        "LastError": config.last_error,
        "CreatedAt": config.created_at,
        "UpdatedAt": config.updated_at,
    }


def _from_entity(entity: Mapping[str, Any]) -> TenantConfig:
    tenant_id = entity.get("RowKey")
    try:
        return TenantConfig(
            tenant_id=tenant_id,
            display_name=entity.get("DisplayName", ""),
            credential=CredentialSpec.from_json(json.loads(entity.get("Credential") or "null")),
            enabled=bool(entity.get("Enabled", True)),
            schedule_minutes=entity.get("ScheduleMinutes"),
            approved_exclusions=json.loads(entity.get("ApprovedExclusions") or "{}"),
            routing=json.loads(entity["Routing"]) if entity.get("Routing") else None,
            tags=tuple(json.loads(entity.get("Tags") or "[]")),
            consecutive_failures=int(entity.get("ConsecutiveFailures") or 0),
            last_error=entity.get("LastError") or None,
            **{python: entity.get(column) for column, python in _TIME_COLUMNS.items()},
        )
    except (CredentialError, ValueError, TypeError) as error:
        raise RegistryError(f"tenant {tenant_id}: the stored registry row is unreadable ({error})") from None


def _apply(entity: dict[str, Any], columns: Mapping[str, Any]) -> dict[str, Any]:
    for name, value in columns.items():
        if value is None:
            entity.pop(name, None)
        else:
            entity[name] = value
    return entity


class TenantRegistry:
    def __init__(self, service: TableServiceClient, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self._service = service
        self._table = service.get_table_client(TABLE)
        self._clock = clock

    @classmethod
    def from_connection_string(cls, connection_string: str | StorageAccount, **kwargs: Any) -> TenantRegistry:
        return cls(account(connection_string).table_service(), **kwargs)

    async def create(self) -> None:
        try:
            await self._table.create_table()
        except ResourceExistsError:
            pass

    async def list(self, *, enabled_only: bool = False) -> list[TenantConfig]:
        """Every registered tenant (one query over the partition), sorted by display name. A row that cannot be read
        is logged as an error and left out rather than stopping the whole fleet."""
        return [config for config, _ in await self.list_rows(enabled_only=enabled_only)]

    async def list_rows(self, *, enabled_only: bool = False) -> list[tuple[TenantConfig, dict[str, Any]]]:
        """`list()` with each tenant's row as read, for a conditional write that needs no second read."""
        query = "PartitionKey eq @pk" + (" and Enabled eq true" if enabled_only else "")
        found = []
        async for entity in self._table.query_entities(query, parameters={"pk": PARTITION}):
            try:
                found.append((_from_entity(entity), entity))
            except RegistryError as error:
                log.error("unreadable registry row", extra={"tenant_id": entity.get("RowKey"), "error": str(error)})
        return sorted(found, key=lambda pair: (pair[0].display_name.lower(), pair[0].tenant_id))

    async def get(self, tenant_id: str) -> TenantConfig | None:
        entity = await self._read(tenant_key(tenant_id))
        return None if entity is None else _from_entity(entity)

    async def upsert(self, config: TenantConfig, *, now: datetime | None = None) -> TenantConfig:
        """Create or replace a tenant's configuration. created_at is kept (or set), updated_at set to now; the
        outcome fields of an existing row are kept (only record_outcome writes them)."""
        now = _utc(now or self._clock(), "now")

        def change(entity: dict[str, Any] | None) -> dict[str, Any]:
            if entity is None:
                entity = {"PartitionKey": PARTITION, "RowKey": config.tenant_id, **_status_columns(config)}
                entity["CreatedAt"] = config.created_at or now
            return _apply(entity, {**_config_columns(config), "UpdatedAt": now})

        return _from_entity(await self._write(config.tenant_id, change, create=True))

    async def add(self, config: TenantConfig, *, now: datetime | None = None) -> TenantConfig:
        """Register a new tenant; TenantExists (a RegistryError) when it is already registered — atomic, so two
        concurrent onboardings of one tenant cannot both succeed."""
        now = _utc(now or self._clock(), "now")
        entity = _apply({"PartitionKey": PARTITION, "RowKey": config.tenant_id, **_status_columns(config)},
                        {**_config_columns(config), "CreatedAt": config.created_at or now, "UpdatedAt": now})
        try:
            await self._table.create_entity(entity)
        except ResourceExistsError:
            raise TenantExists(f"tenantId: tenant {config.tenant_id} is already registered; update it instead") \
                from None
        return _from_entity(entity)

    async def update(self, tenant_id: str, changes: dict[str, Any], *, now: datetime | None = None) -> TenantConfig:
        """Change some configuration fields (JSON names, e.g. {"scheduleMinutes": 60}), validated like from_json.
        LookupError when the tenant is unknown; outcome fields and tenantId cannot be changed this way."""
        key = tenant_key(tenant_id)
        if not isinstance(changes, dict):
            raise RegistryError(f"(body): expected a JSON object, got {type(changes).__name__}")
        for name in changes:
            if name in _STATUS_FIELDS:
                raise RegistryError(f"{name}: written by authwatch itself, not by an update")
            if name == "tenantId" and changes[name] is not None and tenant_key(changes[name]) != key:
                raise RegistryError("tenantId: a tenant's id cannot change (register the other tenant instead)")
            if name not in _ALL_FIELDS:
                raise RegistryError(f"{name}: unknown field (allowed: {', '.join(_CONFIG_FIELDS)})")
        now = _utc(now or self._clock(), "now")

        def change(entity: dict[str, Any] | None) -> dict[str, Any]:
            if entity is None:
                raise LookupError(f"tenant {key} is not registered")
            merged = {**_from_entity(entity).to_json(), **changes, "tenantId": key}
            config = TenantConfig.from_json(merged)
            return _apply(entity, {**_config_columns(config), "UpdatedAt": now})

        return _from_entity(await self._write(key, change))

    async def disable(self, tenant_id: str, *, now: datetime | None = None) -> TenantConfig:
        """Stop evaluating a tenant; its row, results and history stay (a tenant is never dropped silently)."""
        return await self.update(tenant_id, {"enabled": False}, now=now)

    async def record_outcome(self, tenant_id: str, *, success: bool, at: datetime, error: str | None = None) -> None:
        """Book one evaluation. LookupError when the tenant is unknown."""
        key = tenant_key(tenant_id)
        at = _utc(at, "at")

        def change(entity: dict[str, Any] | None) -> dict[str, Any]:
            if entity is None:
                raise LookupError(f"tenant {key} is not registered")
            if success:
                columns = {"LastSuccessAt": at, "ConsecutiveFailures": 0, "LastError": None}
            else:
                columns = {"ConsecutiveFailures": int(entity.get("ConsecutiveFailures") or 0) + 1,
                           "LastError": clean_error(error) or "evaluation failed"}
            return _apply(entity, {**columns, "LastAttemptAt": at})

        await self._write(key, change)

    async def claim_in_flight(self, tenant_id: str, *, now: datetime, lease: timedelta,
                              row: dict[str, Any] | None = None) -> bool:
        """Take the tenant's fan-out lease until now + lease; False when another claim still holds it (or the tenant
        is unknown). Two timers racing on one tenant: exactly one wins (ETag-conditional write). `row` (from
        `list_rows`) saves reading the row again: one transaction per tenant, unless someone wrote it meanwhile."""
        key = tenant_key(tenant_id)
        now = _utc(now, "now")
        won = True

        def change(entity: dict[str, Any] | None) -> dict[str, Any] | None:
            nonlocal won
            held = entity.get("InFlightUntil") if entity else None
            won = entity is not None and (held is None or _utc(held, "InFlightUntil") <= now)
            # The fan-out is the attempt: `due` measures the next one from here.
            return _apply(entity, {"InFlightUntil": now + lease, "LastAttemptAt": now}) \
                if won and entity is not None else None

        await self._write(key, change, known=row)
        return won

    async def release_in_flight(self, tenant_id: str) -> None:
        """Drop the fan-out lease (the evaluation finished). Unknown tenants are ignored."""
        key = tenant_key(tenant_id)
        await self._write(key, lambda entity: _apply(entity, {"InFlightUntil": None})
                          if entity is not None and "InFlightUntil" in entity else None)

    async def _read(self, key: str) -> dict[str, Any] | None:
        try:
            return await self._table.get_entity(PARTITION, key)
        except ResourceNotFoundError:
            return None

    async def _write(self, key: str, change: Callable[[dict[str, Any] | None], dict[str, Any] | None], *,
                     create: bool = False, known: dict[str, Any] | None = None) -> dict[str, Any]:
        """Read the row (or start from `known`, a row read earlier), let `change` return the new row (None: nothing
        to write), write it if the row is still the one read (ETag) — else read again and retry. Returns the row as
        written (or as read)."""
        for attempt in range(WRITE_ATTEMPTS):
            current = known if attempt == 0 and known is not None else await self._read(key)
            etag = current.metadata["etag"] if current is not None else None
            new = change(dict(current) if current is not None else None)
            if new is None:
                return current or {}
            if current is None and not create:
                raise LookupError(f"tenant {key} is not registered")
            new = {name: value for name, value in new.items() if value is not None}
            try:
                if current is None:
                    await self._table.create_entity(new)
                else:
                    await self._table.update_entity(new, mode=UpdateMode.REPLACE, etag=etag,
                                                    match_condition=MatchConditions.IfNotModified)
            except (ResourceModifiedError, ResourceExistsError, ResourceNotFoundError):
                continue  # someone else wrote (or created, or deleted) it meanwhile: read again
            return new
        raise RuntimeError(f"tenant {key}: the registry row kept changing; gave up after {WRITE_ATTEMPTS} attempts")

    async def close(self) -> None:
        # The table client borrows the service client's transport; only closing the service frees the sockets.
        await self._table.close()
        await self._service.close()

    async def __aenter__(self) -> TenantRegistry:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
