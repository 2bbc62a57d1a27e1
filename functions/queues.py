"""Queue blueprints: `evaluations` (one tenant per message) and its poison queue. Alert delivery: functions/alerts.py.

Thin: decode the message, call one service function, log. A failure raises, so the Functions host retries the
message (host.json maxDequeueCount) and finally moves it to the poison queue, where it is recorded against the
tenant instead of vanishing.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("authwatch.queue")

CONNECTION = "AzureWebJobsStorage"


def _document(msg: func.QueueMessage) -> dict[str, Any]:
    try:
        body = json.loads(msg.get_body().decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        body = None
    return body if isinstance(body, dict) else {}


def _tenant_id(document: dict[str, Any]) -> str | None:
    from shared.views.api import BadRequest, tenant_id_from

    try:
        return tenant_id_from(document.get("tenantId"))
    except BadRequest:
        return None


@bp.queue_trigger(arg_name="msg", queue_name="evaluations", connection=CONNECTION)
async def evaluate_tenant(msg: func.QueueMessage) -> None:
    from shared.bootstrap import process_fleet
    from shared.cycle.fleet import evaluate_registered

    document = _document(msg)
    tenant_id = _tenant_id(document)
    if tenant_id is None:
        log.error("evaluation message without a valid tenant id; dropped", extra={"message_id": msg.id})
        return  # retrying cannot fix it
    # The instance's fleet, reused by every message: its storage clients, connections and its share of the
    # deployment's request budget live as long as the instance (shared.bootstrap.process_fleet).
    fleet = await process_fleet()
    # The message carries the tenant's registry config as of the fan-out; the worker re-reads the registry only when
    # the config changed since (shared/cycle/fleet.py).
    outcome = await evaluate_registered(fleet, tenant_id, now=datetime.now(timezone.utc), message=document)
    log.info("tenant evaluated", extra={"tenant_id": tenant_id, "dequeue_count": msg.dequeue_count,
                                        "events": len(outcome.events) if outcome else 0,
                                        "unreachable": bool(outcome and outcome.unreachable)})


@bp.queue_trigger(arg_name="msg", queue_name="evaluations-poison", connection=CONNECTION)
async def evaluation_poison(msg: func.QueueMessage) -> None:
    from shared.bootstrap import build_fleet
    from shared.cycle.fleet import record_poison

    fleet = build_fleet()
    try:
        await fleet.create()
        await record_poison(fleet, _tenant_id(_document(msg)), now=datetime.now(timezone.utc),
                            body=msg.get_body().decode("utf-8", "replace"))
    finally:
        await fleet.close()
