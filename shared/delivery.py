"""Alert delivery. Until channels are configured (Teams, Slack, webhook, e-mail), an alert is written to the log as
one structured line, so nothing queued is ever silently discarded."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("authwatch.alerts")


async def deliver(alert: dict[str, Any]) -> None:
    log.warning("alert", extra={"event_id": alert.get("id"), "tenant_id": alert.get("tenantId"),
                                "type": alert.get("type"), "control": alert.get("control"),
                                "severity": alert.get("severity"), "summary": alert.get("summary")})
