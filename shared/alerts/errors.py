"""Errors of the alerts package. Their messages name the setting, channel, route and field at fault, and never quote
a setting's value (a secret pasted into the wrong place must not end up in a log)."""

from __future__ import annotations


class AlertConfigError(ValueError):
    """AUTHWATCH_ALERT_CHANNELS, AUTHWATCH_ALERT_ROUTES, a tenant's routing or another alert setting is invalid."""


class InvalidAlert(ValueError):
    """A queue message that is not an event authwatch can deliver (no id, no tenant, unknown type): dropped."""


class AlertDeliveryFailed(RuntimeError):
    """Some channel failed this attempt and the message will be retried by the queue (the text holds no secret)."""
