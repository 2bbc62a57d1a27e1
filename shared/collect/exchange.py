"""Exchange Online reads through the admin REST `InvokeCommand` endpoint (what ExchangeOnlineManagement v3 uses).

It is undocumented; the request shape, anchor header and paging rule follow platform-facts.md. Paging re-posts the
same body to `@odata.nextLink`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from kiota_http.middleware import REQUEST_OPTIONS_KEY

from shared.collect.errors import IncompleteRead, http_error, origin, same_origin, transport_error
from shared.model import SourceError

MAX_PAGES = 1000


@dataclass(frozen=True)
class ExchangeSource:
    name: str  # snapshot key under "exchange"
    cmdlet: str
    select: tuple[str, ...] = ()  # ask only for what the controls read
    parameters: dict[str, Any] = field(default_factory=dict)
    singleton: bool = False  # Get-TransportConfig answers a one-item list; the snapshot keeps the object


ALLOW_BASIC_AUTH = tuple(f"AllowBasicAuth{protocol}" for protocol in (
    "ActiveSync", "Autodiscover", "Imap", "Mapi", "OfflineAddressBook", "OutlookService", "Pop", "Powershell",
    "ReportingWebServices", "Rpc", "Smtp", "WebServices"))
# Without ResultSize, Get-CASMailbox and Get-User stop at 1000 objects (with only a warning).
UNLIMITED = {"ResultSize": "Unlimited"}

EXCHANGE_SOURCES: tuple[ExchangeSource, ...] = (
    ExchangeSource("organizationConfig", "Get-OrganizationConfig",
                   select=("Name", "Identity", "DefaultAuthenticationPolicy", "OAuth2ClientProfileEnabled"),
                   singleton=True),
    ExchangeSource("transportConfig", "Get-TransportConfig", select=("Identity", "SmtpClientAuthenticationDisabled"),
                   singleton=True),
    ExchangeSource("authenticationPolicies", "Get-AuthenticationPolicy", select=("Name", "Identity") + ALLOW_BASIC_AUTH),
    ExchangeSource("casMailboxes", "Get-CASMailbox", parameters=UNLIMITED,
                   select=("Identity", "PrimarySmtpAddress", "ExternalDirectoryObjectId",
                           "SmtpClientAuthenticationDisabled", "PopEnabled", "ImapEnabled", "ActiveSyncEnabled")),
    ExchangeSource("casMailboxPlans", "Get-CASMailboxPlan",
                   select=("Name", "Identity", "PopEnabled", "ImapEnabled", "ActiveSyncEnabled")),
    # Only users with a policy of their own matter: everyone else gets the organisation's default.
    ExchangeSource("users", "Get-User", parameters={**UNLIMITED, "Filter": "AuthenticationPolicy -ne $null"},
                   # StsRefreshTokensValidFrom: a revocation (Set-User -STSRefreshTokensValidFrom) makes a policy
                   # change bite in about 30 minutes instead of 24 hours for that user (state/windows.py).
                   select=("Identity", "UserPrincipalName", "ExternalDirectoryObjectId", "AuthenticationPolicy",
                           "StsRefreshTokensValidFrom")),
)


# Exchange's 401/403 are usually bare; what they mean is known (platform-facts.md), so say it.
_HINTS = {
    401: "Exchange rejected the token: grant the app the Office 365 Exchange Online application permission "
         "Exchange.ManageAsApp and admin-consent it in this tenant",
    403: "Exchange refused the request: the app's service principal needs the Exchange roles View-Only "
         "Configuration and View-Only Recipients (a role group) or the Entra role Global Reader in this tenant "
         "(Exchange.ManageAsApp alone is not enough)",
}


def _error_message(body: Any) -> tuple[str, str]:
    """Exchange hides the useful text in details[], then the inner exception, then the top-level message."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    code = str(error.get("code") or "")
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("message"):
            return code, str(detail["message"])
    inner = ((error.get("innererror") or {}).get("internalException") or {}).get("message")
    return code, str(inner or error.get("message") or "")


async def read_source(http: httpx.AsyncClient, base_url: str, tenant_id: str, token: str,
                      source: ExchangeSource) -> tuple[Any, SourceError | None]:
    url = f"{base_url.rstrip('/')}/adminapi/beta/{tenant_id}/InvokeCommand"
    params = {"$select": ",".join(source.select)} if source.select else None
    headers = {
        "Authorization": f"Bearer {token}",
        # Never `omit-values=nulls`: OData then drops null-valued properties, and for SmtpClientAuthenticationDisabled
        # null means "inherits the organisation" while a missing property means "not read" (unsure, fail closed).
        # Without that preference OData sends nulls (OData 4.01 Protocol §8.2.8.6,
        # https://learn.microsoft.com/en-us/powerquery-m/odataomitvalues-type).
        "Prefer": "odata.maxpagesize=1000",
        "X-AnchorMailbox": f"APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{tenant_id}",
        "X-CmdletName": source.cmdlet,
        "Accept": "application/json",
    }
    body = {"CmdletInput": {"CmdletName": source.cmdlet, "Parameters": source.parameters}}
    items: list[Any] = []
    followed: set[str] = set()
    try:
        while True:  # bounded: each turn follows a new nextLink, at most MAX_PAGES of them
            # msgraph's transport runs its middleware (the retry of 429/503/504 honouring Retry-After) only for
            # requests that carry kiota request options: without them one 429 from Exchange lost the source.
            response = await http.post(url, params=params, json=body, headers=headers,
                                       extensions={REQUEST_OPTIONS_KEY: {}})
            if response.status_code >= 400:
                try:
                    payload = response.json()
                except ValueError:
                    payload = None  # 403s from Exchange are often bare
                code, message = _error_message(payload)
                hint = _HINTS.get(response.status_code, response.reason_phrase)
                return None, http_error(response.status_code, code, message or hint)
            payload = response.json()
            items.extend(payload.get("value") or [])
            next_link = payload.get("@odata.nextLink")
            if not next_link:
                break
            if len(followed) >= MAX_PAGES:
                raise IncompleteRead(f"exchange.{source.name}", "PageLimitReached",
                                     f"stopped at the page cap ({MAX_PAGES} pages)")
            if next_link in followed:
                raise IncompleteRead(f"exchange.{source.name}", "NextLinkLoop",
                                     "Exchange returned a nextLink already followed (a paging loop)")
            if not same_origin(next_link, base_url):
                raise IncompleteRead(f"exchange.{source.name}", "ForeignNextLink",
                                     f"Exchange returned a nextLink to {origin(next_link)}, not to its own endpoint "
                                     f"{origin(base_url)}: not followed, the token was not sent there")
            followed.add(next_link)
            url, params = next_link, None  # the nextLink already carries the query
    except Exception as error:  # noqa: BLE001 - errors are values at the edge
        return None, transport_error(error)
    if source.singleton:
        return (items[0] if items else {}), None
    return items, None
