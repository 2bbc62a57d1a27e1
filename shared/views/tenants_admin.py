"""Fleet management, read and acted on by `authwatch tenants list|show|enable|disable|remove|import` and the HTTP API
(GET /api/tenants, POST …/enable, DELETE /api/tenants/{id}, POST /api/tenants/import).

Each row of the fleet is the API's tenant summary (shared/views/api.py: status, failing controls, last success)
plus what an operator managing many tenants looks for: open alerts (a count), the credential mode, the problem the
last read ran into, and `onboarding` — the tenant's GDAP onboarding record (`onboarding_states`; None for a tenant
added by hand or imported). Inputs are validated here; BadRequest → 400, LookupError → 404.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from shared.alerts.entrypoints import open_alerts_of
from shared.alerts.open_store import TABLE as OPEN_ALERTS_TABLE
from shared.alerts.store import TABLE as DELIVERIES_TABLE
from shared.alerts.store import AlertTables
from shared.cycle.fleet import Fleet
from shared.settings import Settings
from shared.storage.tenant_store import TABLE as STATE_TABLE
from shared.tenants import fleet_import, registry_admin
from shared.tenants.config import TenantConfig
from shared.views.api import STATUS_ORDER, BadRequest, _config, _status, _summary, _why_unreachable

log = logging.getLogger("authwatch.tenants")
READ_CONCURRENCY = 16  # one partition query (two for an evaluated tenant) per tenant: concurrent, bounded
SHOWN_HISTORY = 10
# A purge deletes the tenant's partition in each: its state, results and history; its open alerts; its deliveries.
PURGED_TABLES = (STATE_TABLE, OPEN_ALERTS_TABLE, DELIVERIES_TABLE)


def _storage(fleet: Fleet) -> Any:
    return Settings.from_env(fleet.env).storage


async def onboarding_states(fleet: Fleet) -> dict[str, dict[str, Any]]:
    """Each tenant's GDAP onboarding state (tenant id → {"state", "fix", …}, from `authwatch tenants discover`'s
    records), shown as `onboarding` in the fleet listing; a tenant added by hand has none."""
    from shared.tenants.onboarding_records import OnboardingRecords

    async with OnboardingRecords.from_connection_string(_storage(fleet)) as records:
        return {record.tenant_id: record.to_json() for record in await records.all()}


async def onboarding_state(fleet: Fleet, tenant_id: str) -> dict[str, Any] | None:
    """One tenant's onboarding record (one read, for `tenants show`), or None (none, or no registry table yet)."""
    from shared.tenants.onboarding_records import OnboardingRecords

    async with OnboardingRecords.from_connection_string(_storage(fleet)) as records:
        record = await records.get(tenant_id)
    return record.to_json() if record is not None else None


async def _mark_removed(fleet: Fleet, removed: TenantConfig) -> None:
    """A GDAP customer's onboarding record becomes `removed` (shown as not watched; `discover --add-all` leaves it
    alone). Best effort: the removal is done and its withdrawal steps must reach the operator whatever happens here."""
    from datetime import timezone

    from shared.tenants.onboarding_records import OnboardingRecord, OnboardingRecords

    records = OnboardingRecords.from_connection_string(_storage(fleet))
    try:
        if await records.get(removed.tenant_id) is not None or registry_admin.GDAP_TAG in removed.tags:
            await records.save(OnboardingRecord(
                removed.tenant_id, removed.display_name, "removed",
                f"Not watched: removed with `authwatch tenants remove`. `authwatch tenants onboard --tenant "
                f"{removed.tenant_id}` watches it again.", updated_at=datetime.now(timezone.utc)))
    except Exception as error:  # noqa: BLE001 - logged; the answer (what to withdraw) still goes out
        log.warning("onboarding record not updated", extra={"tenant_id": removed.tenant_id,
                                                            "error": type(error).__name__})
    finally:
        await records.close()


def _problem(config: TenantConfig, state: dict[str, Any] | None) -> str | None:
    """What went wrong last, in one line: the unreachable reason, else the registry's last error."""
    if state is not None and state.get("unreachable"):
        return _why_unreachable(config, state)
    return config.last_error


async def fleet_rows(fleet: Fleet, *, now: datetime) -> list[dict[str, Any]]:
    """Every registered tenant by name: the API's summary plus openAlerts, credentialMode, problem, onboarding."""
    pairs = await fleet.registry.list_rows()  # sorted by display name
    onboarding = await onboarding_states(fleet)
    gate = asyncio.Semaphore(READ_CONCURRENCY)
    async with AlertTables.from_connection_string(_storage(fleet)) as tables:  # one client for the whole fleet
        await tables.open.create()

        async def row(config: TenantConfig) -> dict[str, Any]:
            async with gate:
                state = (await fleet.monitor.store.load(config.tenant_id)).state
                # Never evaluated: no history, so nothing can be open (and no read is spent finding that out).
                opened = await tables.open.open_alerts(config.tenant_id, now=now) if state is not None else None
            return {**_summary(config, state),
                    "openAlerts": 0 if opened is None else len(opened.alerts) + opened.omitted,
                    "credentialMode": config.credential.mode, "problem": _problem(config, state),
                    "onboarding": onboarding.get(config.tenant_id)}

        return list(await asyncio.gather(*(row(config) for config, _ in pairs)))


async def list_tenants(fleet: Fleet, *, now: datetime) -> list[dict[str, Any]]:
    """GET /api/tenants: the fleet rows, those needing attention first."""
    rows = await fleet_rows(fleet, now=now)
    return sorted(rows, key=lambda row: (STATUS_ORDER.get(row["status"], 9), row.get("displayName") or ""))


async def tenant_overview(fleet: Fleet, tenant_id: str, *, now: datetime,
                          history_limit: int = SHOWN_HISTORY) -> dict[str, Any]:
    """`tenants show`: the configuration (no secrets: the credential names app settings; routing, which may hold
    webhook addresses, only as configured or not), status, last success and error, open alerts, recent history."""
    config = await _config(fleet, tenant_id)
    record = await fleet.monitor.store.load(config.tenant_id)
    history = await fleet.monitor.store.history(config.tenant_id, limit=history_limit)
    opened = await open_alerts_of(_storage(fleet), config.tenant_id, now=now)
    data = config.to_json()
    data.pop("routing")
    summary = _summary(config, record.state)
    return {
        **data, "routingConfigured": config.routing is not None, "exceptions": len(config.exceptions),
        "credentialMode": config.credential.mode, "status": _status(config, record.state),
        "lastSuccessAt": summary["lastSuccessAt"], "lastCollectedAt": summary["lastCollectedAt"],
        "problem": _problem(config, record.state), "failing": summary["failing"], "pending": summary["pending"],
        "onboarding": await onboarding_state(fleet, config.tenant_id),
        "openAlerts": [{name: alert.get(name) for name in ("id", "at", "type", "control", "severity", "summary",
                                                           "acknowledged", "snoozed")} for alert in opened.alerts],
        "openAlertsOmitted": opened.omitted,
        "history": [{name: event.get(name) for name in ("id", "at", "type", "control", "severity", "summary")}
                    for event in history],
    }


async def set_enabled(fleet: Fleet, tenant_id: str, enabled: bool) -> dict[str, Any]:
    """Enable or disable (idempotent): the tenant as it now is, and `changed` (false: it already was)."""
    config, changed = await registry_admin.set_enabled(fleet.registry, tenant_id, enabled)
    return {**config.to_json(), "changed": changed}


def _purge_flag(body: Any) -> bool:
    if body is None:
        return False
    if not isinstance(body, dict):
        raise BadRequest('the request body must be a JSON object such as {"purge": false}')
    unknown = sorted(set(body) - {"purge"})
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown field (allowed: purge)")
    purge = body.get("purge", False)
    if not isinstance(purge, bool):
        raise BadRequest(f"purge: expected true or false, got {purge!r}"[:200])
    return purge


async def remove_tenant(fleet: Fleet, tenant_id: str, body: Any = None, *, purge: bool | None = None) -> dict[str, Any]:
    """Remove a tenant from the registry; its history is kept unless `purge` (the body's {"purge": true}). Answers
    what the customer tenant's admins withdraw: the reverse of the onboarding steps."""
    purge = _purge_flag(body) if purge is None else purge
    await _config(fleet, tenant_id)
    async with registry_admin.TenantRemoval.from_connection_string(_storage(fleet)) as admin:
        removed, deleted = await admin.remove(fleet.registry, tenant_id, purge_tables=PURGED_TABLES if purge else ())
    await _mark_removed(fleet, removed)  # else its record says "ready, watched", and `discover --add-all` re-adds it
    others = await fleet.registry.list()
    endpoints = fleet.monitor.endpoints
    steps = registry_admin.withdrawal_steps(removed, endpoints.graph, authority=endpoints.authority, others=others,
                                            operator_tenant=fleet.env.get("AZURE_TENANT_ID"))
    return {"tenantId": removed.tenant_id, "displayName": removed.display_name, "removed": True, "purged": purge,
            "historyKept": not purge, "deletedRows": deleted, "withdraw": [step.to_json() for step in steps]}


async def import_tenants(fleet: Fleet, body: Any) -> dict[str, Any]:
    """POST /api/tenants/import: {"tenants": [...], "dryRun": false} → one outcome per item, and the summary. The
    request body stays under the API's 64 KiB: a big import goes through `authwatch tenants import`."""
    if not isinstance(body, dict) or "tenants" not in body:
        raise BadRequest('the request body must be a JSON object such as {"tenants": [{"tenantId": "…", '
                         '"name": "…"}]}')
    unknown = sorted(set(body) - {"tenants", "dryRun"})
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown field (allowed: tenants, dryRun)")
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise BadRequest("dryRun: expected true or false")
    try:
        rows = fleet_import.read_json(body["tenants"])
    except fleet_import.ImportFileError as error:
        raise BadRequest(f"tenants: {error}") from None
    outcomes = await fleet_import.import_rows(fleet.registry, rows, fleet.env, dry_run=dry_run)
    counts = fleet_import.summary(outcomes)
    return {"dryRun": dry_run, "rows": [item.to_json() for item in outcomes], "summary": counts,
            "summaryText": fleet_import.summary_text(counts)}
