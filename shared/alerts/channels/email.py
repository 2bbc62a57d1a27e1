"""E-mail through Microsoft Graph `sendMail`, from a mailbox in the operator's own tenant, with an HTML body.

Config:
    {"type": "email", "tenantId": "<operator tenant GUID>",
     "credential": {"mode": "federated", "clientId": "…", "managedIdentityClientId": "…"},   # as the tenant registry
     "from": "authwatch@operator.example", "to": ["soc@operator.example"], "cc": [], "saveToSentItems": false}

The credential is the project's own (shared.collect.credentials: federated, secret or certificate, naming app
settings, never holding a secret): a single-tenant app of the operator's that Exchange RBAC for Applications lets
send from the one sending mailbox ("Application Mail.Send" with a management scope; infra/README.md). It should hold
no Entra Mail.Send consent: Microsoft documents the two as a union, so that consent would let it send as anyone
(https://learn.microsoft.com/en-us/exchange/permissions-exo/application-rbac); a token that carries it is logged. Graph
endpoints come from AUTHWATCH_AUTHORITY_HOST / AUTHWATCH_GRAPH_URL / AUTHWATCH_CA_BUNDLE (the simulator in tests).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import uuid
from typing import Any
from urllib.parse import quote

import httpx
from azure.core.exceptions import ClientAuthenticationError

from shared.alerts.channels.base import Channel, ChannelConfig, SendContext, register_channel
from shared.alerts.content import AlertGroup, Digest, EventView, age, view
from shared.alerts.http import DeliveryError, check_response
from shared.collect.connection import GRAPH_SCOPE
from shared.collect.credentials import CredentialError, CredentialSpec, build_credential
from shared.collect.errors import TOKEN_HINTS

_ADDRESS = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_AADSTS = re.compile(r"AADSTS\d+")
MAX_DIGEST_ALERTS = 100
log = logging.getLogger("authwatch.alerts")
_warned_unscoped: set[str] = set()  # client ids already warned about, once per process
FONT = "font-family:'Segoe UI',Arial,sans-serif;font-size:14px;color:#1b1b1b"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _lines(text: Any) -> str:
    """Escaped, its line breaks kept: a remediation lists one command per line, and HTML would run them together."""
    return _e(text).replace("\n", "<br>")


def _colour(item: EventView) -> str:
    if item.resolution:
        return "#107c10"
    return {"high": "#c50f1f", "medium": "#f7630c"}.get(item.severity, "#616161")


def _event_html(item: EventView) -> str:
    heading = item.label
    rows = "".join(f'<tr><th style="text-align:left;vertical-align:top;padding:2px 12px 2px 0;white-space:nowrap">'
                   f'{_e(label)}</th><td style="padding:2px 0">{_lines(text)}</td></tr>' for label, text in item.facts())
    return (f'<div style="border-left:4px solid {_colour(item)};padding:4px 12px;margin:14px 0">'
            f'<h3 style="margin:0 0 4px">{_e(heading)} <span style="color:#616161;font-weight:normal">'
            f'({_e(item.severity)})</span></h3><p style="margin:0 0 6px">{_e(item.summary)}</p>'
            f'<table style="border-collapse:collapse">{rows}</table></div>')


def _link(url: str | None, text: str) -> str:
    return f'<p><a href="{_e(url)}">{_e(text)}</a></p>' if url else ""


def _request_id(message_id: str) -> str:
    """Graph's client-request-id is a GUID: the alert id (32 hex digits) written as one, so Microsoft's logs and
    authwatch's agree."""
    try:
        return str(uuid.UUID(hex=message_id[:32]))
    except ValueError:
        return str(uuid.uuid4())


def token_roles(token: str) -> list[str]:
    """The app roles a Graph access token carries (its payload, unverified: only to warn, never to decide)."""
    try:
        payload = token.split(".")[1]
        roles = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("roles")
    except (IndexError, ValueError, AttributeError):
        return []
    return [role for role in roles if isinstance(role, str)] if isinstance(roles, list) else []


def _recipients(addresses: list[str]) -> list[dict[str, Any]]:
    return [{"emailAddress": {"address": address}} for address in addresses]


@register_channel("email")
class GraphMail(Channel):
    description = "e-mail through Microsoft Graph sendMail (HTML)"
    fields = ("tenantId", "credential", "from", "to", "cc", "saveToSentItems")

    def __init__(self, name: str, *, tenant_id: str, credential: CredentialSpec, sender: str, to: list[str],
                 cc: list[str], save_to_sent_items: bool) -> None:
        super().__init__(name)
        self.tenant_id = tenant_id
        self.credential = credential
        self.sender = sender
        self.to = to
        self.cc = cc
        self.save_to_sent_items = save_to_sent_items

    @classmethod
    def from_config(cls, config: ChannelConfig) -> GraphMail:
        tenant_id = config.text("tenantId")
        if not _GUID.match(tenant_id or ""):
            raise config.error("tenantId", "expected the operator tenant's id (a GUID)")
        raw = config.raw("credential")
        if raw is None:
            raise config.error("credential", "required (mode and clientId, plus the setting its mode needs)")
        try:
            spec = CredentialSpec.from_json(raw)
        except CredentialError as error:
            raise config.error("credential", str(error)) from None
        needed = spec.secret_setting or spec.certificate_setting
        if needed and not config.env.get(needed):
            raise config.error("credential", f"app setting {needed} is not set (credential mode {spec.mode})")
        sender = config.text("from")
        if not (_ADDRESS.match(sender or "") or _GUID.match(sender or "")):
            raise config.error("from", "expected the sending mailbox's address (or its user id)")
        addresses = {}
        for field_name in ("to", "cc"):
            addresses[field_name] = config.texts(field_name, required=field_name == "to")
            for index, address in enumerate(addresses[field_name]):
                if not _ADDRESS.match(address):
                    raise config.error(f"{field_name}[{index}]", "expected an e-mail address")
        return cls(config.name, tenant_id=tenant_id.lower(), credential=spec, sender=sender or "",
                   to=addresses["to"], cc=addresses["cc"],
                   save_to_sent_items=config.flag("saveToSentItems", False))

    def _message(self, subject: str, content: str, message_id: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "subject": subject[:250], "body": {"contentType": "HTML", "content": content},
            "toRecipients": _recipients(self.to),
            "internetMessageHeaders": [{"name": "X-Authwatch-Alert-Id", "value": message_id}],
        }
        if self.cc:
            message["ccRecipients"] = _recipients(self.cc)
        return {"message": message, "saveToSentItems": self.save_to_sent_items}

    def render_alert(self, group: AlertGroup) -> dict[str, Any]:
        views = group.views()
        content = (f'<div style="{FONT}"><h2 style="margin:0 0 6px">{_e(group.title())}</h2>'
                   f'<p style="color:#616161;margin:0">Tenant <b>{_e(group.tenant_name)}</b> ({_e(group.tenant_id)})'
                   f' · severity <b>{_e(group.severity.upper())}</b> · detected {_e(group.lead.get("at"))}</p>'
                   + "".join(_event_html(item) for item in views)
                   + _link(group.dashboard, "Open in authwatch")
                   + f'<p style="color:#8a8a8a;font-size:12px">authwatch alert {_e(group.id)}</p></div>')
        subject = f"[authwatch] {group.severity.upper()}: {group.title()}"
        return self._message(subject, content, group.id)

    def render_digest(self, digest: Digest) -> dict[str, Any]:
        parts = [f'<div style="{FONT}"><h2 style="margin:0 0 6px">{_e(digest.title())}</h2>'
                 '<p style="color:#616161;margin:0">Still open, not acknowledged, not snoozed.</p>']
        shown = 0
        for entry in digest.entries:
            if shown >= MAX_DIGEST_ALERTS:
                break
            parts.append(f'<h3 style="margin:16px 0 4px">{_e(entry.tenant_name)}</h3><ul>')
            for alert in entry.alerts[:MAX_DIGEST_ALERTS - shown]:
                item = view(alert, digest.now)
                fix = f'<br><span style="color:#616161">Fix: {_lines(item.remediation)}</span>' if item.remediation \
                    else ""
                parts.append(f"<li><b>{_e(item.severity.upper())}</b> {_e(item.label)}: {_e(item.summary)} "
                             f"<i>({_e(age(item.at, digest.now))})</i>{fix}</li>")
                shown += 1
            parts.append("</ul>" + _link(entry.dashboard, f"Open {entry.tenant_name} in authwatch"))
        if digest.total > shown:
            parts.append(f"<p>…and {digest.total - shown} more in the dashboard.</p>")
        parts.append(f'<p style="color:#8a8a8a;font-size:12px">authwatch digest {_e(digest.id)}</p></div>')
        return self._message(digest.title(), "".join(parts), digest.id)

    async def send_once(self, payload: dict[str, Any], *, message_id: str, context: SendContext) -> None:
        try:
            credential = build_credential(self.tenant_id, self.credential, context.endpoints, context.env)
        except CredentialError as error:
            raise DeliveryError(f"credential: {error}", permanent=True) from None
        try:
            token = await credential.get_token(GRAPH_SCOPE)
        except (ClientAuthenticationError, ValueError) as error:
            code = _AADSTS.search(str(error))
            # A wrong, expired or unconsented credential is not fixed by retrying (nor by parking the alert for a
            # day): it is recorded at once, with what to do.
            hint = TOKEN_HINTS.get(code.group(0)) if code else None
            raise DeliveryError(f"token request failed ({type(error).__name__}"
                                f"{': ' + code.group(0) if code else ''}{': ' + hint if hint else ''})",
                                permanent=hint is not None) from None
        finally:
            await credential.close()
        if "Mail.Send" in token_roles(token.token) and self.credential.client_id not in _warned_unscoped:
            _warned_unscoped.add(self.credential.client_id)
            log.warning("e-mail channel %s: the app %s holds the Entra Mail.Send application permission, which lets "
                        "it send as every mailbox of the tenant; remove that consent and keep only Exchange's "
                        "'Application Mail.Send' scoped to %s (infra/README.md, E-mail alerts)",
                        self.name, self.credential.client_id, self.sender)
        url = f"{context.endpoints.graph.rstrip('/')}/users/{quote(self.sender, safe='@')}/sendMail"
        try:
            async with httpx.AsyncClient(verify=context.endpoints.ssl_context(), timeout=context.policy.timeout_s,
                                         trust_env=False) as http:
                response = await http.post(url, json=payload, headers={
                    "Authorization": f"Bearer {token.token}", "client-request-id": _request_id(message_id)})
        except httpx.TimeoutException as error:
            raise DeliveryError(f"Graph sendMail timed out ({type(error).__name__})") from None
        except httpx.TransportError as error:
            raise DeliveryError(f"Graph sendMail connection failed ({type(error).__name__})") from None
        if response.status_code == 403:
            # No right to send as this mailbox: the RBAC for Applications assignment is missing, scoped elsewhere, or
            # not applied yet (Microsoft: 30 minutes to 2 hours).
            raise DeliveryError(f"Graph sendMail 403: the app may not send as {self.sender}; assign it Exchange's "
                                "'Application Mail.Send' scoped to that mailbox (infra/README.md, E-mail alerts)",
                                permanent=True, status=403)
        check_response(response.status_code, response.headers, what="Graph sendMail")
