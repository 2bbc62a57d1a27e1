"""Alert channels, each a registered plug-in; importing this package registers the built-in types: teams, slack,
webhook, email. May import: the rest of shared.alerts and the layers below. A new channel: ARCHITECTURE.md."""

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
