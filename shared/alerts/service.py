"""Alert delivery: the `alerts` queue worker, its poison handler and the reminder digest.

At least once, and once per (event, channel):
- every queued event carries its stable id; before sending, the message claims `<event id>:<channel>` rows in the
  deliveries table (store.py) and afterwards marks them delivered, so a redelivered message (same id) finds them
  done and sends nothing;
- a failed send is retried with backoff inside the attempt (RetryPolicy), then the message is retried by the queue
  (this raises AlertDeliveryFailed). When the attempt whose dequeue count reaches AUTHWATCH_ALERT_MAX_DEQUEUE
  (host.json maxDequeueCount) fails too, a receiver that is down for a while does not lose the alert: the message is
  parked (queued again, invisible for 11 minutes to an hour, growing with the outage) until
  AUTHWATCH_ALERT_OUTAGE_HOURS (24) after the event. Past that, or on a permanent failure (a 4xx, a refused target),
  the rows are recorded as failed with an ERROR log; the daily digest lists them. A message that still ends up in
  `alerts-poison` (the worker crashed) is recorded the same way.
- channels are independent: sent concurrently, each settling its own rows, with a deadline on every try
  (channels/base.py, http.py), so a slow receiver fails only its own channel and the retry skips the others.

One message per cycle: the events one cycle committed for a tenant share their `at` and were written in one
transaction, so whichever of their queue messages arrives first reads them all and claims, in one transaction, every
one of them that routes to the channel. It sends them as ONE grouped message (id = the most important event's id,
the same on every retry) and marks them all delivered; the other messages of the cycle find their rows claimed or
done and send nothing. A message whose rows another live message holds trusts it: that message stays on the queue
until it has delivered or recorded a failure, so nothing is lost by not waiting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.alerts.channels import Channel, SendContext
from shared.alerts.config import AlertSettings
from shared.alerts.content import AlertGroup, event_order
from shared.alerts.digest import DigestReport, send_digest
from shared.alerts.errors import AlertDeliveryFailed, InvalidAlert
from shared.alerts.http import DeliveryError
from shared.alerts.lifecycle import OPENING, RESOLVING
from shared.alerts.routing import Routing, TenantInfo
from shared.alerts.store import (
    DELIVERED,
    FAILED,
    LEASE,
    MAX_GROUP,
    SENDING,
    AlertTables,
    Claim,
    event_time,
    row_key,
    standing,
)
from shared.collect.endpoints import MicrosoftEndpoints
from shared.state.events import EVENT_TYPES

log = logging.getLogger("authwatch.alerts")

CLAIM_ATTEMPTS = 4
# A parked message comes back as a new message (a new holder), so it waits out the old claim's lease; then the wait
# grows with the outage (about doubling each time), up to an hour.
PARK_MIN = LEASE + timedelta(minutes=1)
PARK_MAX = timedelta(hours=1)


def park_delay(event_at: datetime, now: datetime) -> timedelta:
    return min(PARK_MAX, max(PARK_MIN, now - event_at))
_EVENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def validate_event(document: Any) -> dict[str, Any]:
    """The queued event (Event.to_record()), checked before any of it reaches a Table key or query."""
    if not isinstance(document, dict):
        raise InvalidAlert("the message is not a JSON object")
    event_id, tenant_id, kind = document.get("id"), document.get("tenantId"), document.get("type")
    if not isinstance(event_id, str) or not _EVENT_ID.match(event_id):
        raise InvalidAlert("id: missing or not an event id")
    if not isinstance(tenant_id, str) or not _GUID.match(tenant_id):
        raise InvalidAlert("tenantId: missing or not a GUID")
    if kind not in EVENT_TYPES:
        raise InvalidAlert(f"type: not an alert event type ({str(kind)[:40]!r})")
    try:
        event_time(document.get("at"))
    except (TypeError, ValueError):
        raise InvalidAlert("at: missing or not an ISO 8601 time") from None
    return {**document, "tenantId": tenant_id.lower()}


@dataclass
class DeliveryReport:
    """What one queue message did, per channel."""

    event_id: str
    routed: tuple[str, ...] = ()
    sent: dict[str, int] = field(default_factory=dict)  # channel → size of the group this message sent
    skipped: list[str] = field(default_factory=list)  # already delivered / failed, or held by another message
    failed: list[str] = field(default_factory=list)  # recorded as failed (final)
    retrying: list[str] = field(default_factory=list)  # failed this attempt; the queue retries
    parked: list[str] = field(default_factory=list)  # the queue's retries are spent: re-queued with a delay
    parked_for: timedelta | None = None


class AlertService:
    def __init__(self, *, settings: AlertSettings, tables: AlertTables, store: Any = None, registry: Any = None,
                 endpoints: MicrosoftEndpoints | None = None, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, parking: Any = None) -> None:
        self.settings = settings
        self.parking = parking  # shared.storage.queues.JsonQueue of `alerts`: where a long outage parks a message
        self.tables = tables
        self.store = store  # shared.storage.tenant_store.TenantStore: history for the digest
        self.registry = registry  # shared.tenants.registry.TenantRegistry: names, tags, per-tenant routing
        self.context = SendContext(policy=settings.policy, allow_loopback=settings.allow_loopback,
                                   endpoints=endpoints or MicrosoftEndpoints(), env=env or {}, clock=clock,
                                   sleep=sleep)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> AlertService:
        """Real adapters from the app settings. SettingsError / AlertConfigError name what is wrong."""
        from shared.logs import configure_observability
        from shared.settings import Settings
        from shared.storage.queues import ALERTS_QUEUE, JsonQueue
        from shared.storage.tenant_store import TenantStore
        from shared.tenants.registry import TenantRegistry

        env = os.environ if env is None else env
        configure_observability()
        settings = Settings.from_env(env)
        alert_settings = AlertSettings.from_env(env)
        connection = settings.storage  # a connection string locally, the managed identity on Azure
        kwargs.setdefault("parking", JsonQueue.from_connection_string(connection, ALERTS_QUEUE))
        return cls(settings=alert_settings, tables=AlertTables.from_connection_string(connection),
                   store=TenantStore.from_connection_string(connection),
                   registry=TenantRegistry.from_connection_string(connection), endpoints=settings.endpoints,
                   env=env, **kwargs)

    async def create(self) -> None:
        await self.tables.create()
        for part in (self.store, self.registry):
            if part is not None:
                await part.create()

    async def close(self) -> None:
        for part in (self.tables, self.store, self.registry, self.parking):
            if part is not None:
                await part.close()

    async def __aenter__(self) -> AlertService:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # --- tenants -------------------------------------------------------------------------------------------------
    async def tenant(self, tenant_id: str) -> TenantInfo:
        if self.registry is not None:
            try:
                config = await self.registry.get(tenant_id)
            except ValueError as error:  # RegistryError: an unreadable row must not stop its alerts
                log.error("unreadable registry row; alerting with defaults",
                          extra={"tenant_id": tenant_id, "error": str(error)[:300]})
                config = None
            if config is not None:
                return TenantInfo(tenant_id=tenant_id, name=config.display_name or tenant_id,
                                  tags=tuple(config.tags), routing=config.routing, enabled=config.enabled)
        return TenantInfo(tenant_id=tenant_id, name=tenant_id)

    async def digest_tenants(self) -> list[TenantInfo]:
        """The tenants the digest reminds of: the enabled registered ones (or, without a registry, every stored one)."""
        if self.registry is not None:
            registered = await self.registry.list(enabled_only=True)
            if registered:
                return [TenantInfo(tenant_id=c.tenant_id, name=c.display_name or c.tenant_id, tags=tuple(c.tags),
                                   routing=c.routing) for c in registered]
        if self.store is None:
            return []
        return [TenantInfo(tenant_id=tenant_id, name=tenant_id) for tenant_id in await self.store.tenant_ids()]

    # --- one queue message ---------------------------------------------------------------------------------------
    async def deliver(self, document: Any, *, now: datetime, message_id: str | None = None,
                      dequeue_count: int | None = None) -> DeliveryReport:
        """Deliver the alert of one `alerts` message to every channel its routes name (module docstring).
        Raises InvalidAlert (drop the message) or AlertDeliveryFailed (let the queue retry it)."""
        event = validate_event(document)
        report = DeliveryReport(event_id=event["id"])
        fields = {"tenant_id": event["tenantId"], "event_id": event["id"], "type": event.get("type"),
                  "control": event.get("control"), "severity": event.get("severity")}
        await self._track(event, fields, now=now)
        if not self.settings.configured:
            log.warning("alert", extra={**fields, "summary": event.get("summary"),
                                        "outcome": "logged only: no alert channels configured"})
            return report
        tenant = await self.tenant(event["tenantId"])
        routing = self.settings.routing_for(tenant)
        report.routed = routing.channels_for(event, tenant)
        if not report.routed:
            log.info("alert not routed", extra={**fields, "outcome": "no route matches"})
            return report
        holder = message_id or f"event:{event['id']}"
        final = (dequeue_count or 1) >= self.settings.max_dequeue
        cycle = await self._cycle(event)
        reasons: list[str] = []
        # Channels are independent: each is sent concurrently and settles its own rows, so a slow or broken receiver
        # delays (and fails) only itself; the queue's retry then finds the others done and sends them nothing.
        outcomes = await asyncio.gather(*(
            self._deliver_to(name, event, cycle, tenant, routing, holder=holder, final=final, now=now,
                             dequeue_count=dequeue_count) for name in report.routed), return_exceptions=True)
        crashed: list[Exception] = []
        for name, result in zip(report.routed, outcomes):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancelled: the host is stopping
                log.error("alert delivery raised; the queue will retry this channel",
                          extra={**fields, "channel": name, "error": type(result).__name__}, exc_info=result)
                report.retrying.append(name)
                crashed.append(result)
                continue
            outcome, detail = result
            if outcome == "sent":
                report.sent[name] = detail
            elif outcome == "failed":
                report.failed.append(name)
            elif outcome == "retrying":
                report.retrying.append(name)
                reasons.append(f"{name}: {detail}")
            elif outcome == "parked":
                report.parked.append(name)
            else:
                report.skipped.append(name)
        if crashed:
            raise crashed[0]  # the original error, for the host's log; its rows stay this message's for the retry
        if report.retrying:
            raise AlertDeliveryFailed(f"event {event['id']}: delivery failed this attempt, the queue will retry "
                                      f"({'; '.join(reasons)})")
        if report.parked:
            # The same document again: its id (hence the alert's) is unchanged, and delivered channels skip it.
            report.parked_for = park_delay(event_time(event["at"]), now)
            await self.parking.create()  # exists wherever the queue trigger runs; a no-op then (and rare)
            await self.parking.send(event, delay=report.parked_for)
        return report

    async def _track(self, event: dict[str, Any], fields: dict[str, Any], *, now: datetime) -> None:
        """The open-alert rows follow the alert as it arrives (an opening writes one, a resolution removes them).
        Best effort: a failure here never holds the alert back, and the next read catches up from history."""
        if event.get("type") not in OPENING + RESOLVING:
            return
        try:
            await self.tables.open.apply(event["tenantId"], [event], now=now)
        except Exception as error:  # noqa: BLE001 - storage trouble must not stop the delivery
            log.warning("open-alert rows not updated; the next read catches up from history",
                        extra={**fields, "error": type(error).__name__})

    def _may_park(self, event: dict[str, Any], now: datetime) -> bool:
        """Whether a transient failure on the last queue attempt parks the message rather than failing it."""
        return (self.parking is not None
                and now - event_time(event["at"]) < timedelta(hours=self.settings.outage_hours))

    async def _cycle(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The events of the cycle that raised `event` (itself included, even when not stored)."""
        stored = await self.tables.cycle_events(event["tenantId"], event["at"])
        by_id = {item.get("id"): item for item in stored if isinstance(item, dict) and item.get("id")}
        by_id[event["id"]] = event
        return sorted(by_id.values(), key=event_order)

    async def _deliver_to(self, name: str, event: dict[str, Any], cycle: list[dict[str, Any]], tenant: TenantInfo,
                          routing: Routing, *, holder: str, final: bool, now: datetime,
                          dequeue_count: int | None) -> tuple[str, Any]:
        channel = self.settings.channels[name]
        tenant_id = tenant.tenant_id
        members = [item for item in cycle if item["id"] == event["id"] or name in routing.channels_for(item, tenant)]
        for _ in range(CLAIM_ATTEMPTS):
            rows = await self.tables.cycle_rows(tenant_id, name, event["at"])
            own = standing(rows.get(event["id"]), holder=holder, now=now)
            if own.state in ("done", "held"):
                log.info("alert already handled", extra={"tenant_id": tenant_id, "event_id": event["id"],
                                                         "channel": name, "outcome": own.state,
                                                         "status": (own.row or {}).get("Status")})
                return own.state, None
            group: list[tuple[dict[str, Any], Claim]] = []
            for item in members:
                claim = own if item["id"] == event["id"] else standing(rows.get(item["id"]), holder=holder, now=now)
                if claim.state in ("free", "mine"):
                    group.append((item, claim))
            group = _bounded(group, event["id"])
            lead = group[0][0]["id"]
            items = [(row_key(item["id"], name), claim, _row_properties(item, channel, lead))
                     for item, claim in group]
            if await self.tables.claim(tenant_id, items, holder=holder, now=now):
                break
        else:
            return "retrying", "the delivery rows kept changing under this message"
        alert = AlertGroup(tenant_id=tenant_id, tenant_name=tenant.name, events=tuple(item for item, _ in group),
                           dashboard=self.settings.dashboard_link(tenant_id), now=now)
        keys = {row_key(item["id"], name): int((claim.row or {}).get("Tries") or 0) for item, claim in group}
        extra = {"tenant_id": tenant_id, "event_id": event["id"], "alert_id": alert.id, "channel": name,
                 "channel_type": channel.type, "group_size": len(group), "dequeue_count": dequeue_count}
        try:
            tries = await channel.send(channel.render_alert(alert), message_id=alert.id, context=self.context)
        except DeliveryError as error:
            reason = self.settings.redact(error.reason)
            if final and not error.permanent and self._may_park(event, now):
                await self.tables.settle(tenant_id, keys, status=SENDING, now=now, tries=error.tries, error=reason)
                log.warning("alert delivery parked: the receiver keeps failing, the alert is tried again later",
                            extra={**extra, "tries": error.tries, "error": reason,
                                   "retry_in_s": int(park_delay(event_time(event["at"]), now).total_seconds())})
                return "parked", reason
            if error.permanent or final:
                await self.tables.settle(tenant_id, keys, status=FAILED, now=now, tries=error.tries, error=reason,
                                         GroupId=alert.id, GroupSize=len(group))
                log.error("alert delivery failed", extra={**extra, "tries": error.tries, "error": reason,
                                                          "outcome": "permanent failure" if error.permanent
                                                          else "last retry failed"})
                return "failed", reason
            await self.tables.settle(tenant_id, keys, status=SENDING, now=now, tries=error.tries, error=reason)
            log.warning("alert delivery failed; the queue will retry",
                        extra={**extra, "tries": error.tries, "error": reason})
            return "retrying", reason
        await self.tables.settle(tenant_id, keys, status=DELIVERED, now=now, tries=tries, GroupId=alert.id,
                                 GroupSize=len(group))
        log.info("alert sent", extra={**extra, "tries": tries, "outcome": "delivered"})
        return "sent", len(group)

    # --- the poison queue ----------------------------------------------------------------------------------------
    async def record_poison(self, document: Any, *, now: datetime) -> list[str]:
        """A message that failed every retry without recording its outcome (the worker crashed): its rows, and the
        rows of the group it had claimed, are recorded as failed. Returns the channels recorded."""
        try:
            event = validate_event(document)
        except InvalidAlert as error:
            log.error("poison alert message is unreadable; dropped", extra={"error": str(error)})
            return []
        fields = {"tenant_id": event["tenantId"], "event_id": event["id"], "type": event.get("type")}
        if not self.settings.configured:
            log.error("poison alert message", extra={**fields, "outcome": "no alert channels configured"})
            return []
        tenant = await self.tenant(event["tenantId"])
        recorded = []
        for name in self.settings.routing_for(tenant).channels_for(event, tenant):
            channel = self.settings.channels[name]
            rows = await self.tables.cycle_rows(tenant.tenant_id, name, event["at"])
            own = rows.get(event["id"])
            if own is not None and own.get("Status") in (DELIVERED, FAILED):
                continue
            group = own.get("GroupId") if own else None
            keys = {row_key(event_id, name): int(row.get("Tries") or 0) for event_id, row in rows.items()
                    if row.get("Status") == SENDING and group and row.get("GroupId") == group}
            keys.setdefault(row_key(event["id"], name), int((own or {}).get("Tries") or 0))
            await self.tables.settle(tenant.tenant_id, keys, status=FAILED, now=now, tries=0,
                                     error="the message failed every retry (poison queue)",
                                     **_row_properties(event, channel, group or event["id"]) if own is None else {})
            recorded.append(name)
            log.error("alert delivery failed", extra={**fields, "channel": name, "channel_type": channel.type,
                                                      "outcome": "poison message", "group_size": len(keys)})
        return recorded

    async def record_unroutable(self, document: Any, *, now: datetime, reason: str) -> list[str]:
        """Record a failed delivery that could not even be routed (row `<event id>:*`), with an ERROR log."""
        try:
            event = validate_event(document)
        except InvalidAlert as error:
            log.error("poison alert message is unreadable; dropped", extra={"error": str(error)})
            return []
        reason = self.settings.redact(reason)
        await self.tables.settle(event["tenantId"], {row_key(event["id"], "*"): 0}, status=FAILED, now=now, tries=0,
                                 error=reason, EventId=event["id"], Channel="*", Kind="alert",
                                 At=event_time(event["at"]), Type=event.get("type"), Severity=event.get("severity"),
                                 Control=event.get("control"), GroupId=event["id"])
        log.error("alert delivery failed", extra={"tenant_id": event["tenantId"], "event_id": event["id"],
                                                  "outcome": "poison message", "error": reason})
        return ["*"]

    # --- reminders -----------------------------------------------------------------------------------------------
    async def digest(self, *, now: datetime) -> DigestReport:
        """One reminder per channel of the still-open alerts (digest.py)."""
        return await send_digest(self, now=now)

    async def failed_deliveries(self, tenant_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        return await self.tables.failed(tenant_id.lower(), limit=limit)


def _bounded(group: list[tuple[dict[str, Any], Claim]], own_id: str) -> list[tuple[dict[str, Any], Claim]]:
    """Most important first, at most one transaction's worth, always including the message's own event."""
    group = sorted(group, key=lambda pair: event_order(pair[0]))
    if len(group) <= MAX_GROUP:
        return group
    own = [pair for pair in group if pair[0]["id"] == own_id]
    return sorted(own + [pair for pair in group if pair[0]["id"] != own_id][:MAX_GROUP - 1],
                  key=lambda pair: event_order(pair[0]))


def _row_properties(event: dict[str, Any], channel: Channel, group_id: str) -> dict[str, Any]:
    return {"EventId": event["id"], "Channel": channel.name, "ChannelType": channel.type, "Kind": "alert",
            "At": event_time(event["at"]), "Type": event.get("type"), "Severity": event.get("severity"),
            "Control": event.get("control"), "GroupId": group_id}

