"""Service functions behind the HTTP API: each route decodes its request and calls exactly one of these.

Inputs are validated here (tenant ids are GUIDs before they reach a Table query; bodies through the registry's own
validation), so the Functions layer only maps exceptions to status codes: BadRequest → 400, LookupError → 404.
"""

from __future__ import annotations

import asyncio
import json
import string
import uuid
from datetime import datetime, timezone
from typing import Any

from shared.alerts.entrypoints import annotate_alert, open_alerts_of
from shared.controls.enforcement_window import EnforcementWindow
from shared.cycle.fleet import Fleet, evaluation_message
from shared.cycle.service import accept_baseline
from shared.model import format_time, parse_time_or_none
from shared.tenants.config import RegistryError, TenantConfig, TenantExists
from shared.tenants.exceptions_service import list_exceptions
from shared.views.timeline import build_timeline


class BadRequest(ValueError):
    """The request is malformed; the message names the problem."""


MAX_BODY_BYTES = 64 * 1024


def parse_body(raw: bytes) -> Any:
    """A request body as JSON (None when empty), or BadRequest saying what is wrong with it. Shared by the function
    app and `authwatch serve`, so both refuse the same bodies the same way."""
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"the request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
        json.dumps(body, ensure_ascii=False).encode("utf-8")  # "\ud800" parses, but half a UTF-16 pair is not text
    except UnicodeEncodeError:
        raise BadRequest("the request body is not valid JSON text: it holds a lone UTF-16 surrogate escape "
                         "(such as \\ud800)") from None
    except (ValueError, RecursionError) as error:  # RecursionError: nested deeper than the parser goes
        raise BadRequest(f"the request body is not valid JSON ({error})") from None
    return body


def parse_limit(raw: str | None, name: str, default: int) -> int:
    """A count query parameter: a whole number from 1 to 500."""
    if raw is None:
        return default
    # isdigit() alone passes "²" (int() refuses it) and 5,000 digits (more than int() converts): both a 500 before.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not 1 <= int(raw) <= 500:
        raise BadRequest(f"{name} must be a whole number from 1 to 500, got {raw!r}")
    return int(raw)


def tenant_id_from(raw: str | None) -> str:
    """A GUID, normalised; anything else is refused before it can reach a Table query (no OData injection)."""
    # uuid.UUID alone also takes what int(..., 16) tolerates ("_", "+", spaces, non-ASCII digits) and would map such
    # a malformed id onto some other GUID: only ASCII hex digits get through, in the spellings uuid.UUID accepts.
    digits = str(raw or "").removeprefix("urn:uuid:").strip("{}").replace("-", "")
    if len(digits) != 32 or any(c not in string.hexdigits for c in digits):
        raise BadRequest(f"tenantId must be a GUID such as 8c1d0f4e-1a2b-4c3d-8e9f-000000000001, got {raw!r}")
    return str(uuid.UUID(digits))


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _status(config: TenantConfig, state: dict[str, Any] | None) -> str:
    if not config.enabled:
        return "disabled"
    if state is None:
        return "never evaluated"
    if state.get("unreachable"):
        return "unreachable"
    statuses = {control.get("status") for control in (state.get("controls") or {}).values()}
    for status in ("fail", "pending", "unknown"):
        if status in statuses:
            return {"fail": "failing"}.get(status, status)
    return "healthy"


def _why_unreachable(config: TenantConfig, state: dict[str, Any] | None) -> str | None:
    """What the last failed read said, as one line (the state's error, else the registry's), or None."""
    error = (state or {}).get("lastError")
    if isinstance(error, dict) and (error.get("code") or error.get("message")):
        return ": ".join(str(part) for part in (error.get("code"), error.get("message")) if part)
    if isinstance(error, str) and error:
        return error
    return config.last_error


def _summary(config: TenantConfig, state: dict[str, Any] | None) -> dict[str, Any]:
    controls = (state or {}).get("controls") or {}
    return {
        **config.to_json(),
        # The state row is written every cycle; the registry only when its story changes.
        "lastSuccessAt": (state or {}).get("lastSuccessAt") or config.to_json().get("lastSuccessAt"),
        "status": _status(config, state),
        "failing": sorted(c for c, v in controls.items() if v.get("status") == "fail"),
        "pending": sorted(c for c, v in controls.items() if v.get("status") == "pending"),
        "lastCollectedAt": (state or {}).get("lastCollectedAt"),
        # Read-only, for the dashboard's fleet matrix (one request for the whole fleet): each control's last verdict,
        # and for an unreachable tenant why it cannot be read.
        "controlStatus": {control: value.get("status") for control, value in controls.items()
                          if isinstance(value, dict)},
        "unreachableReason": _why_unreachable(config, state) if (state or {}).get("unreachable") else None,
    }


# Attention first: how every listing of the fleet is ordered (then by name).
STATUS_ORDER = {"unreachable": 0, "failing": 1, "pending": 2, "unknown": 3, "never evaluated": 4, "healthy": 5,
                "disabled": 6}


async def list_tenants(fleet: Fleet) -> list[dict[str, Any]]:
    """Every tenant with its status, those needing attention first."""
    configs = await fleet.registry.list()
    gate = asyncio.Semaphore(16)  # one partition query per tenant: concurrent, bounded (1,000 tenants in ~1 s)

    async def summary(config: TenantConfig) -> dict[str, Any]:
        async with gate:
            return _summary(config, (await fleet.monitor.store.load(config.tenant_id)).state)

    rows = await asyncio.gather(*(summary(config) for config in configs))
    return sorted(rows, key=lambda row: (STATUS_ORDER.get(row["status"], 9), row.get("displayName") or ""))


async def _config(fleet: Fleet, tenant_id: str) -> TenantConfig:
    config = await fleet.registry.get(tenant_id)
    if config is None:
        raise LookupError(f"no tenant {tenant_id} is registered")
    return config


def _storage(fleet: Fleet) -> Any:
    from shared.settings import Settings

    return Settings.from_env(fleet.env).storage


def _countdown(state: dict[str, Any] | None, now: datetime) -> dict[str, Any] | None:
    tracked = (state or {}).get("enforcement")
    if not tracked or not tracked.get("startedAt"):
        return None
    window = EnforcementWindow(parse_time_or_none(tracked["startedAt"]), float(tracked.get("hours", 24)))
    return {**window.to_json(), "open": not window.has_closed(now),
            "secondsLeft": int(window.time_left(now).total_seconds()), "confirmed": bool(tracked.get("confirmed")),
            "gapReported": bool(tracked.get("gapReported"))}


async def tenant_detail(fleet: Fleet, tenant_id: str, *, now: datetime, history_limit: int = 50) -> dict[str, Any]:
    """One tenant: its controls with evidence and remediation, open alerts, the enforcement countdown, history."""
    config = await _config(fleet, tenant_id)
    record = await fleet.monitor.store.load(tenant_id)
    history = await fleet.monitor.store.history(tenant_id, limit=history_limit)
    opened = await open_alerts_of(_storage(fleet), tenant_id, now=now)  # their own rows: no window of history
    return {
        **_summary(config, record.state),
        "controls": [{**item.result.to_json(), "evaluatedAt": format_time(item.evaluated_at)}
                     for item in record.results],
        "openAlerts": opened.alerts,
        "openAlertsOmitted": opened.omitted,  # past the per-tenant bound (shared/alerts/open_store.py); normally 0
        "enforcementWindow": _countdown(record.state, now),
        "history": history[:history_limit],
        "hasBaseline": record.baseline is not None,
        "failedDeliveries": await tenant_failed_deliveries(fleet, tenant_id, limit=20),
        # Its exceptions with their status and days left, the legacy approvedExclusions last (exceptions_service).
        "exceptions": list_exceptions(config, now=now),
    }


async def tenant_results(fleet: Fleet, tenant_id: str) -> dict[str, Any]:
    record = await fleet.monitor.store.load(tenant_id)
    if not record.results:
        raise LookupError(f"no results stored for tenant {tenant_id}")
    return {"tenantId": tenant_id,
            "results": [{**item.result.to_json(), "evaluatedAt": format_time(item.evaluated_at)}
                        for item in record.results]}


async def tenant_history(fleet: Fleet, tenant_id: str, *, limit: int) -> list[dict[str, Any]]:
    await _config(fleet, tenant_id)
    return await fleet.monitor.store.history(tenant_id, limit=limit)


def _check_routing(routing: Any, tenant_id: str, env: Any) -> None:
    from shared.alerts import AlertConfigError, validate_tenant_routing

    try:
        validate_tenant_routing(routing, tenant_id, env)
    except AlertConfigError as error:
        raise BadRequest(str(error)) from None


async def onboard_tenant(fleet: Fleet, body: Any) -> dict[str, Any]:
    body = _object(body)
    try:
        config = TenantConfig.from_json(body, config_only=True)  # fields authwatch writes itself are refused
        _check_routing(config.routing, config.tenant_id, fleet.env)
        return (await fleet.registry.add(config)).to_json()  # atomic: onboarding twice fails, never overwrites
    except TenantExists:
        raise BadRequest(f"tenant {body.get('tenantId')} is already registered; PATCH it to change it") from None
    except RegistryError as error:
        raise BadRequest(str(error)) from None


async def update_tenant(fleet: Fleet, tenant_id: str, body: Any) -> dict[str, Any]:
    await _config(fleet, tenant_id)
    body = _object(body)
    if body.get("routing") is not None:
        _check_routing(body["routing"], tenant_id, fleet.env)
    try:
        return (await fleet.registry.update(tenant_id, body)).to_json()
    except RegistryError as error:
        raise BadRequest(str(error)) from None


async def tenant_failed_deliveries(fleet: Fleet, tenant_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """Alerts that could not be delivered after every retry (visible so nobody assumes they arrived)."""
    from shared.alerts import failed_deliveries
    from shared.settings import Settings

    await _config(fleet, tenant_id)
    return await failed_deliveries(Settings.from_env(fleet.env).storage, tenant_id, limit=limit)


async def disable_tenant(fleet: Fleet, tenant_id: str) -> dict[str, Any]:
    await _config(fleet, tenant_id)
    return (await fleet.registry.disable(tenant_id)).to_json()


async def accept_tenant_baseline(fleet: Fleet, tenant_id: str) -> dict[str, Any]:
    await _config(fleet, tenant_id)
    baseline = await accept_baseline(fleet.monitor.store, tenant_id)
    return {"tenantId": tenant_id, "accepted": True, "items": sum(len(section) for section in baseline.values())}


async def acknowledge_alert(fleet: Fleet, tenant_id: str, alert_id: str, body: Any, *, now: datetime) -> dict:
    await _config(fleet, tenant_id)
    by = _object(body or {}).get("by")
    if by is not None and (not isinstance(by, str) or len(by) > 200):
        raise BadRequest("by: expected who acknowledges, as text of at most 200 characters")
    return await annotate_alert(_storage(fleet), fleet.monitor.store, tenant_id, _alert_id(alert_id), now=now,
                                acknowledged_at=now, acknowledged_by=by)


async def snooze_alert(fleet: Fleet, tenant_id: str, alert_id: str, body: Any, *, now: datetime) -> dict:
    await _config(fleet, tenant_id)
    raw = _object(body).get("until")
    until = parse_time_or_none(raw)
    try:
        until = until.astimezone(timezone.utc) if until else None  # stored and shown in UTC
    except OverflowError:  # e.g. 9999-12-31T23:59:59-05:00: a valid time whose UTC is past year 9999
        until = None
    if until is None or until <= now:
        raise BadRequest(f"until: expected a future ISO 8601 time such as {format_time(now)}, got {raw!r}")
    return await annotate_alert(_storage(fleet), fleet.monitor.store, tenant_id, _alert_id(alert_id), now=now,
                                snoozed_until=until)


def _alert_id(raw: str | None) -> str:
    value = str(raw or "")
    if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise BadRequest(f"alertId must be the 32-character id of an event, got {raw!r}")
    return value


async def request_evaluation(fleet: Fleet, tenant_id: str, *, now: datetime) -> dict[str, Any]:
    """Evaluate one tenant now: queued like a scheduled run (same worker, same lease), answered 202."""
    config = await _config(fleet, tenant_id)
    if not config.enabled:
        raise BadRequest(f"tenant {tenant_id} is disabled; enable it first (PATCH {{\"enabled\": true}})")
    await fleet.evaluations.send(evaluation_message(config, now, "api"))
    return {"tenantId": tenant_id, "queued": True, "requestedAt": format_time(now)}


async def tenant_timeline(fleet: Fleet, tenant_id: str, *, now: datetime, limit: int = 100) -> dict[str, Any]:
    """The tenant's timeline (shared/views/timeline.py): protection changes, enforcement windows and what the
    evidence said, next to the platform's own dates; newest first, at most `limit` entries."""
    await _config(fleet, tenant_id)
    record = await fleet.monitor.store.load(tenant_id)
    scan = min(1000, max(200, limit * 4))  # history rows read: most are not protection changes
    history = await fleet.monitor.store.history(tenant_id, limit=scan)
    controls = [{**item.result.to_json(), "evaluatedAt": format_time(item.evaluated_at)} for item in record.results]
    timeline = build_timeline(history, record.state, controls=controls, now=now, limit=limit)
    return {"tenantId": tenant_id, "at": format_time(now), **timeline,
            # the oldest history was not read: older changes are not on this timeline
            "historyTruncated": len(history) >= scan}
