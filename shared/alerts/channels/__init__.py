"""Alert channels, each a registered plug-in. Importing this package registers the built-in types: teams, slack,
webhook, email. A new channel is a module with a Channel subclass decorated `@register_channel("<type>")`,
imported here."""

from shared.alerts.channels.base import (
    Channel,
    ChannelConfig,
    SendContext,
    WebhookChannel,
    build_channel,
    channel_types,
    register_channel,
)
from shared.alerts.channels import email, slack, teams, webhook  # noqa: E402,F401  (registration)

__all__ = ["Channel", "ChannelConfig", "SendContext", "WebhookChannel", "build_channel", "channel_types",
           "register_channel"]
