"""Timer blueprint: every AUTHWATCH_SCHEDULE, queue one evaluation per due tenant. Thin: build, call, log."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("authwatch.timer")


@bp.timer_trigger(arg_name="timer", schedule="%AUTHWATCH_SCHEDULE%", run_on_startup=False, use_monitor=True)
async def fan_out(timer: func.TimerRequest) -> None:
    from shared.bootstrap import build_fleet
    from shared.cycle.fleet import fan_out as queue_due_tenants

    fleet = build_fleet()
    try:
        await fleet.create()
        result = await queue_due_tenants(fleet, now=datetime.now(timezone.utc))
    finally:
        await fleet.close()
    log.info("timer fan-out", extra={"queued": len(result.queued), "in_flight": result.in_flight,
                                     "not_due": result.not_due, "failed": result.failed,
                                     "past_due": timer.past_due})
