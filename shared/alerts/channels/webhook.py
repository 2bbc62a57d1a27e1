"""Generic webhook: the JSON payload of product.md ("Alert payload"), signed with X-Authwatch-Signature when a
secret is configured.

Config: {"type": "webhook", "url": "https://…"} or {"type": "webhook", "urlSetting": "<APP SETTING>"}, plus
optional "secretSetting": "<APP SETTING holding the HMAC secret>". Headers: X-Authwatch-Id (the idempotency key,
also the payload's "id"), X-Authwatch-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>"> (signed afresh on
every try, so a retry is never stale).
"""

from __future__ import annotations

from typing import Any

import httpx

from shared.alerts.channels.base import ChannelConfig, SendContext, WebhookChannel, json_body, register_channel
from shared.alerts.content import AlertGroup, Digest
from shared.alerts.signing import SIGNATURE_HEADER, sign

MIN_SECRET_CHARS = 16


@register_channel("webhook")
class GenericWebhook(WebhookChannel):
    description = "JSON POST per product.md, HMAC-SHA256 signed"
    fields = ("url", "urlSetting", "secretSetting")

    def __init__(self, name: str, url: httpx.URL, secret: str | None) -> None:
        super().__init__(name, url)
        self._secret = secret

    @classmethod
    def from_config(cls, config: ChannelConfig) -> GenericWebhook:
        if config.has("url") and config.has("urlSetting"):
            config.raw("url")
            raise config.error("url", "give either url or urlSetting, not both")
        if config.has("url"):
            raw = config.raw("url")
            if not isinstance(raw, str):
                raise config.error("url", "expected an https:// URL")
            url = config.url("url", raw, source="url")
        else:
            name, value = config.setting_value("urlSetting")
            url = config.url("urlSetting", value or "", source=f"app setting {name}")
        setting, secret = config.setting_value("secretSetting", required=False)
        if secret is not None and len(secret) < MIN_SECRET_CHARS:
            raise config.error("secretSetting", f"app setting {setting} holds a secret shorter than "
                                                f"{MIN_SECRET_CHARS} characters")
        return cls(config.name, url, secret)

    @property
    def signed(self) -> bool:
        return self._secret is not None

    def secrets(self) -> tuple[str, ...]:
        return super().secrets() + ((self._secret,) if self._secret else ())

    def render_alert(self, group: AlertGroup) -> dict[str, Any]:
        return group.payload()

    def render_digest(self, digest: Digest) -> dict[str, Any]:
        return digest.payload()

    async def send_once(self, payload: dict[str, Any], *, message_id: str, context: SendContext) -> None:
        body = json_body(payload)
        headers = {"X-Authwatch-Id": message_id}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(body, self._secret, timestamp=int(context.clock()))
        await self.post(body, headers, context)
