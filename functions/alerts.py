"""Alert blueprint: the `alerts` queue (delivery), its poison queue, and the reminder digest timer.

Thin: decode the message, call one function of shared.alerts, log. A delivery that failed this attempt raises, so
the Functions host retries the message (host.json maxDequeueCount); the last attempt records a failed delivery
instead of raising, and a message that still lands in `alerts-poison` is recorded by `alert_poison`.
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


def _document(msg: func.QueueMessage) -> Any:
    try:
        return json.loads(msg.get_body().decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


@bp.queue_trigger(arg_name="msg", queue_name="alerts", connection=CONNECTION)
async def deliver_alert(msg: func.QueueMessage) -> None:
    from shared.alerts import InvalidAlert, deliver_message

    document = _document(msg)
    dequeue_count = getattr(msg, "dequeue_count", None)
    try:
        report = await deliver_message(document, message_id=msg.id, dequeue_count=dequeue_count,
                                       now=datetime.now(timezone.utc))
    except InvalidAlert as error:
        log.error("alert message is not a deliverable event; dropped",
                  extra={"message_id": msg.id, "error": str(error)})
        return  # retrying cannot fix it
    log.info("alert processed", extra={"tenant_id": document.get("tenantId"), "event_id": document.get("id"),
                                       "type": document.get("type"), "dequeue_count": dequeue_count,
                                       "sent": ",".join(report.sent), "skipped": ",".join(report.skipped),
                                       "failed": ",".join(report.failed), "parked": ",".join(report.parked)})


@bp.queue_trigger(arg_name="msg", queue_name="alerts-poison", connection=CONNECTION)
async def alert_poison(msg: func.QueueMessage) -> None:
    from shared.alerts import record_poison_message

    await record_poison_message(_document(msg), now=datetime.now(timezone.utc))


@bp.timer_trigger(arg_name="timer", schedule="%AUTHWATCH_DIGEST_SCHEDULE%", run_on_startup=False, use_monitor=True)
async def alert_digest(timer: func.TimerRequest) -> None:
    from shared.alerts import run_digest

    report = await run_digest(now=datetime.now(timezone.utc))
    log.info("alert digest", extra={"sent": ",".join(report.sent), "skipped": ",".join(report.skipped),
                                    "failed": ",".join(report.failed), "past_due": timer.past_due})
