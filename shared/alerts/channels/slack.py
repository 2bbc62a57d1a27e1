"""Slack incoming webhook with Block Kit.

Config: {"type": "slack", "urlSetting": "<APP SETTING holding https://hooks.slack.com/services/…>"}. The URL is the
credential, so it lives in an app setting (a Key Vault reference), never inline.

Every string from an event or the registry goes through `escape` (shared/alerts/markup.py: & < > as entities, the
emphasis markers as look-alikes) and every mrkdwn object is sent `verbatim`, so tenant text never becomes a link, a
mention or formatting; authwatch's own bold labels and dashboard link are added around it.
"""

from __future__ import annotations

from typing import Any

from shared.alerts.channels.base import SendContext, WebhookChannel, json_body, register_channel
from shared.alerts.content import AlertGroup, Digest, age, view
from shared.alerts.markup import slack_mrkdwn

MAX_EVENTS = 10  # Slack allows 50 blocks per message
MAX_DIGEST_ALERTS = 40
MAX_DIGEST_TENANTS = 20  # two blocks each, within Slack's 50
SECTION_LIMIT = 3000  # characters of a section's text
HEADER_LIMIT = 150


def escape(text: object) -> str:
    """Data as text in mrkdwn (no link, mention or formatting)."""
    return slack_mrkdwn(text)


def _mrkdwn(text: str) -> dict[str, Any]:
    """A mrkdwn text object; verbatim: Slack does not auto-link URLs, #channels or @mentions in it."""
    return {"type": "mrkdwn", "text": _clip(text, SECTION_LIMIT), "verbatim": True}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _link(url: str, text: str) -> str:
    """A mrkdwn link to authwatch's own URL; `text` is already escaped. The URL keeps to what Slack's <url|text>
    allows (& as &amp;; <, >, | percent-encoded)."""
    safe = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{safe}|{text}>"


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": _clip(text, HEADER_LIMIT), "emoji": False}}


def _button(text: str, url: str) -> dict[str, Any]:
    return {"type": "actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": _clip(text, 75)}, "url": url}]}


@register_channel("slack")
class SlackWebhook(WebhookChannel):
    description = "Slack incoming webhook, Block Kit"
    fields = ("urlSetting",)

    def render_alert(self, group: AlertGroup) -> dict[str, Any]:
        views = group.views()
        blocks: list[dict[str, Any]] = [
            _header(group.title()),
            {"type": "context", "elements": [_mrkdwn(
                f"*Tenant* {escape(group.tenant_name)} ({escape(group.tenant_id)}) · *Severity* "
                f"{escape(group.severity.upper())} · *Detected* {escape(group.lead.get('at'))} · *Alert id* "
                f"{escape(group.id)}")]},
        ]
        for item in views[:MAX_EVENTS]:
            heading = item.label
            lines = [f"*{escape(heading)}* ({escape(item.severity)})", escape(item.summary)]
            lines += [f"*{label}:* {escape(text)}" for label, text in item.facts()]
            blocks += [{"type": "divider"}, _section("\n".join(lines))]
        if len(views) > MAX_EVENTS:
            blocks.append(_section(f"…and {len(views) - MAX_EVENTS} more in the dashboard."))
        if group.dashboard:
            blocks.append(_button("Open in authwatch", group.dashboard))
        return {"text": _clip(escape(group.title()), SECTION_LIMIT), "blocks": blocks}

    def render_digest(self, digest: Digest) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = [_header(digest.title()), {"type": "context", "elements": [
            _mrkdwn("Still open, not acknowledged, not snoozed.")]}]
        shown = 0
        for entry in digest.entries[:MAX_DIGEST_TENANTS]:
            if shown >= MAX_DIGEST_ALERTS:
                break
            lines = [f"*{escape(entry.tenant_name)}*"]
            for alert in entry.alerts[:MAX_DIGEST_ALERTS - shown]:
                item = view(alert, digest.now)
                lines.append(f"• *{escape(item.severity.upper())}* {escape(item.label)}: {escape(item.summary)} "
                             f"_({age(item.at, digest.now)})_")
                shown += 1
            if entry.dashboard:
                lines.append(_link(entry.dashboard, f"Open {escape(entry.tenant_name)} in authwatch"))
            blocks += [{"type": "divider"}, _section("\n".join(lines))]
        if digest.total > shown:
            blocks.append(_section(f"…and {digest.total - shown} more in the dashboard."))
        return {"text": _clip(escape(digest.title()), SECTION_LIMIT), "blocks": blocks}

    async def send_once(self, payload: dict[str, Any], *, message_id: str, context: SendContext) -> None:
        await self.post(json_body(payload), {}, context)
