"""Alert delivery moved to shared.alerts (channels, routing, at-least-once delivery, digests). This module keeps the
old entry point importable: `deliver(alert)` delivers one queued event as the `alerts` queue worker does."""

from __future__ import annotations

from typing import Any

from shared.alerts import DeliveryReport, deliver_message


async def deliver(alert: dict[str, Any]) -> DeliveryReport:
    return await deliver_message(alert)
