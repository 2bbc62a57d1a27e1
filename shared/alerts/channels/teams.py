"""Microsoft Teams through a Workflows webhook ("When a Teams webhook request is received" → post the card): a
message with one Adaptive Card attachment.

Config: {"type": "teams", "urlSetting": "<APP SETTING holding the workflow URL>"}. The URL carries its signature
(sig=…) in the query, so it is a secret: an app setting (a Key Vault reference), never inline.

TextBlocks and facts render markdown, so every string that comes from an event or the registry goes through
`teams_markdown` (shared/alerts/markup.py): a policy named `[Re-consent now](https://…)` shows as text, not a link.
Only authwatch's own words carry markdown (the digest's bold severity).
"""

from __future__ import annotations

from typing import Any

from shared.alerts.channels.base import SendContext, WebhookChannel, json_body, register_channel
from shared.alerts.content import AlertGroup, Digest, EventView, age, view
from shared.alerts.markup import teams_markdown as md

MAX_EVENTS = 10  # a card holds ~28 KB; the dashboard has the rest
MAX_DIGEST_ALERTS = 40
MAX_TEXT = 1200
MAX_CARD_BYTES = 25_000  # Teams refuses messages over ~28 KB


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": _clip(text), "wrap": True, **style}


def _facts(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"type": "FactSet", "facts": [{"title": title, "value": _clip(value)} for title, value in pairs]}


def _colour(item: EventView) -> str:
    if item.resolution:
        return "Good"
    return {"high": "Attention", "medium": "Warning"}.get(item.severity, "Default")


def card_message(body: list[dict[str, Any]], link: str | None) -> dict[str, Any]:
    card: dict[str, Any] = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "version": "1.4", "body": body, "msteams": {"width": "Full"}}
    if link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in authwatch", "url": link}]
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


@register_channel("teams")
class TeamsWorkflow(WebhookChannel):
    description = "Microsoft Teams Workflows webhook, Adaptive Card"
    fields = ("urlSetting",)

    def render_alert(self, group: AlertGroup) -> dict[str, Any]:
        """The card, with as many events (most important first) and as much text as fit in MAX_CARD_BYTES."""
        for shown, clip in ((MAX_EVENTS, MAX_TEXT), (5, MAX_TEXT), (5, 400), (3, 300), (1, 300)):
            message = self._alert_card(group, shown, clip)
            if len(json_body(message)) <= MAX_CARD_BYTES:
                return message
        return message

    def _alert_card(self, group: AlertGroup, shown: int, clip: int) -> dict[str, Any]:
        views = group.views()
        body: list[dict[str, Any]] = [
            _text(md(group.title()), size="Large", weight="Bolder", style="heading"),
            _facts([("Tenant", md(f"{group.tenant_name} ({group.tenant_id})")),
                    ("Severity", md(group.severity.upper())), ("Detected", md(group.lead.get("at") or "")),
                    ("Alert id", md(group.id))]),
        ]
        for item in views[:shown]:
            body.append({"type": "Container", "separator": True, "spacing": "Medium", "items": [
                _text(md(item.label), weight="Bolder", color=_colour(item)),
                _text(_clip(md(item.summary), clip)),
                _facts([(label, _clip(md(text), clip)) for label, text in item.facts()]),
            ]})
        if len(views) > shown:
            body.append(_text(f"…and {len(views) - shown} more in the dashboard.", isSubtle=True))
        return card_message(body, group.dashboard)

    def render_digest(self, digest: Digest) -> dict[str, Any]:
        body: list[dict[str, Any]] = [_text(digest.title(), size="Large", weight="Bolder", style="heading"),
                                      _text("Still open, not acknowledged, not snoozed.", isSubtle=True)]
        shown = 0
        for entry in digest.entries:
            if shown >= MAX_DIGEST_ALERTS:
                break
            items = [_text(md(entry.tenant_name), weight="Bolder")]
            for alert in entry.alerts[:MAX_DIGEST_ALERTS - shown]:
                item = view(alert, digest.now)
                items.append(_text(f"**{md(item.severity.upper())}** {md(item.label)}: {md(item.summary)} "
                                   f"({age(item.at, digest.now)})"))
                if item.remediation:
                    items.append(_text(f"Fix: {md(item.remediation)}", isSubtle=True))
                shown += 1
            if entry.dashboard:
                items.append({"type": "ActionSet", "actions": [
                    {"type": "Action.OpenUrl", "title": f"Open {entry.tenant_name}", "url": entry.dashboard}]})
            body.append({"type": "Container", "separator": True, "items": items})
        if digest.total > shown:
            body.append(_text(f"…and {digest.total - shown} more in the dashboard.", isSubtle=True))
        return card_message(body, None)

    async def send_once(self, payload: dict[str, Any], *, message_id: str, context: SendContext) -> None:
        await self.post(json_body(payload), {"X-Authwatch-Id": message_id}, context)
