"""The reminder digest: once a day (the `alert_digest` timer), each channel gets one message listing the still-open
alerts at or above AUTHWATCH_DIGEST_MIN_SEVERITY, leaving out acknowledged ones and snoozed ones until the snooze
ends. The open alerts are the tenant's own open-alert rows (open_store.py), not a replay of recent history. At most
one digest per channel per hour (a timer that fires twice sends once); channels are sent concurrently, each on its
own, so a slow receiver delays only its own digest.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from shared.alerts.channels import Channel
from shared.alerts.content import Digest, DigestEntry, event_order, severity_rank, stable_id
from shared.alerts.http import DeliveryError
from shared.alerts.routing import TenantInfo
from shared.alerts.store import DELIVERED, DIGEST_PARTITION, FAILED, standing

log = logging.getLogger("authwatch.alerts")


@dataclass
class DigestReport:
    sent: dict[str, int] = field(default_factory=dict)  # channel → alerts listed
    skipped: list[str] = field(default_factory=list)  # this hour's digest already went (or is going)
    failed: list[str] = field(default_factory=list)


async def send_digest(service: Any, *, now: datetime) -> DigestReport:
    """`service`: the AlertService (settings, tables, the tenants to remind of, the send context)."""
    report = DigestReport()
    settings = service.settings
    if not settings.configured or service.store is None:
        return report
    minimum = severity_rank(settings.digest_min_severity)
    buckets: dict[str, dict[str, tuple[TenantInfo, list[dict[str, Any]]]]] = {}
    for tenant in await service.digest_tenants():
        listed = await service.tables.open.open_alerts(tenant.tenant_id, now=now)
        reminders = [alert for alert in listed.alerts if severity_rank(alert.get("severity")) >= minimum
                     and not alert["acknowledged"] and not alert["snoozed"]]
        if listed.omitted:
            log.error("the digest leaves out open alerts past the per-tenant bound",
                      extra={"tenant_id": tenant.tenant_id, "omitted": listed.omitted})
        if not reminders:
            continue
        routing = settings.routing_for(tenant)
        for alert in sorted(reminders, key=event_order):
            for name in routing.digest_channels(alert, tenant):
                buckets.setdefault(name, {}).setdefault(tenant.tenant_id, (tenant, []))[1].append(alert)
    slot = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H")
    holder = f"digest:{uuid.uuid4().hex}"
    digests = {}
    for name, per_tenant in buckets.items():
        entries = tuple(DigestEntry(tenant_id=tenant.tenant_id, tenant_name=tenant.name,
                                    dashboard=settings.dashboard_link(tenant.tenant_id), alerts=tuple(alerts))
                        for tenant, alerts in sorted(per_tenant.values(), key=lambda pair: pair[0].name.lower()))
        digests[name] = Digest(id=stable_id("digest", slot, name), now=now,
                               min_severity=settings.digest_min_severity, entries=entries)
    outcomes = await asyncio.gather(*(
        _send(service, settings.channels[name], digest, f"{slot}:{name}", holder=holder, now=now)
        for name, digest in digests.items()), return_exceptions=True)
    for (name, digest), outcome in zip(digests.items(), outcomes):
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome == "sent":
            report.sent[name] = digest.total
        elif outcome == "failed":
            report.failed.append(name)
        else:
            report.skipped.append(name)
    return report


async def _send(service: Any, channel: Channel, digest: Digest, key: str, *, holder: str, now: datetime) -> str:
    tables = service.tables
    claim = standing(await tables.get(DIGEST_PARTITION, key), holder=holder, now=now)
    properties = {"Channel": channel.name, "ChannelType": channel.type, "Kind": "digest", "EventId": digest.id,
                  "GroupSize": digest.total}
    # "mine" here only means a crashed run's claim whose lease has lapsed: this run takes it over.
    if claim.state not in ("free", "mine") or not await tables.claim(
            DIGEST_PARTITION, [(key, claim, properties)], holder=holder, now=now):
        return "skipped"
    extra = {"channel": channel.name, "channel_type": channel.type, "digest_id": digest.id,
             "alerts": digest.total, "tenants": len(digest.entries)}
    try:
        tries = await channel.send(channel.render_digest(digest), message_id=digest.id, context=service.context)
    except DeliveryError as error:
        reason = service.settings.redact(error.reason)
        await tables.settle(DIGEST_PARTITION, {key: 0}, status=FAILED, now=now, tries=error.tries, error=reason)
        log.error("alert digest delivery failed", extra={**extra, "tries": error.tries, "error": reason})
        return "failed"
    await tables.settle(DIGEST_PARTITION, {key: 0}, status=DELIVERED, now=now, tries=tries)
    log.info("alert digest sent", extra={**extra, "tries": tries})
    return "sent"
