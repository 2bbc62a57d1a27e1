"""Turning failures at the edge into `SourceError` values: status, Microsoft's code, a message; never a token."""

from __future__ import annotations

import re

import httpx

from shared.model import SourceError

_AADSTS = re.compile(r"AADSTS\d+")
_MAX_MESSAGE = 300


def _trim(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


# What the common sign-in failures mean for an operator, and what to do about each
# (codes: https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes).
TOKEN_HINTS = {
    "AADSTS7000215": "the client secret is wrong: put the current secret in the tenant's credential",
    "AADSTS7000222": "the client secret has expired: create a new one and update the tenant's credential",
    # An app id Entra cannot resolve: a wrong client id, a deleted app registration, the wrong tenant or cloud.
    "AADSTS700016": "Entra does not know this app id here: check the client id and that the app registration "
                    "still exists",
    # The app exists but has no service principal in the tenant: never consented, or the enterprise app was
    # deleted (https://learn.microsoft.com/en-us/entra/identity/monitoring-health/reports-faq: no access tokens
    # "without a client Service Principal").
    "AADSTS7000229": "the app is not installed in this tenant (no service principal): admin consent was never "
                     "given or the enterprise app was deleted; send the tenant's admin the consent link again",
    "AADSTS90002": "no such tenant: check the tenant id",
    "AADSTS7000112": "the app is disabled in this tenant: ask its admin to enable the enterprise application",
    "AADSTS700027": "the client assertion (certificate or federated credential) was rejected",
    "AADSTS70021": "no federated credential on the app matches the managed identity (issuer, subject = its "
                   "principal id, audience api://AzureADTokenExchange)",
    "AADSTS700024": "the client assertion has expired or is not yet valid (check the clock)",
}


class DeadlineExceeded(Exception):
    """A wait (a Retry-After, a throttling budget slot, a token request, an answer) would end, or did not end, before
    the tenant's collection deadline: the source it was for is recorded as not read, code "DeadlineExceeded".
    `status` is Microsoft's answer that asked for the wait (429, 503), when there was one."""

    code = "DeadlineExceeded"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TokenTimeout(Exception):
    """Entra's token endpoint did not answer within the client timeout (azure-identity's own transport would wait
    minutes): every source that needed the token is recorded with code "TokenTimeout"."""

    code = "TokenTimeout"


def token_error(error: Exception) -> SourceError:
    """azure-identity failed to get a token: keep the AADSTS code, which says what is wrong (secret, consent…)."""
    if isinstance(error, (DeadlineExceeded, TokenTimeout)):
        return SourceError(status=None, code=error.code, message=_trim(str(error)))
    message = str(getattr(error, "message", None) or error)
    found = _AADSTS.search(message)
    status = getattr(getattr(error, "response", None), "status_code", None)
    if not found:
        return SourceError(status=status, code=type(error).__name__, message=_trim(message))
    code = found.group(0)
    # Entra's description runs on with trace and correlation ids; its first sentence is the part worth keeping.
    first_sentence = message[found.end():].lstrip(": ").split(". ")[0].rstrip(".'")
    return SourceError(status=status, code=code, message=_trim(TOKEN_HINTS.get(code) or first_sentence))


# Graph's answers to a token that lacks the app role a request needs. Most say 403 Authorization_RequestDenied; the
# reports API names the permission (403 Authentication_MSGraphPermissionMissing, observed:
# microsoftgraph/microsoft-graph-docs-contrib#3196) or fails its licence check without Directory.Read.All
# (Authentication_ApplicationHasNoDirectoryReadAccess, microsoftgraph/microsoft-graph-docs#2789); SharePoint settings
# answer 401 accessDenied "There has been an error authenticating the request" (observed, undocumented:
# Galvnyz/M365-Assess#116, microsoft/Partner-Center-PowerShell#428). A token whose consent was revoked (the service
# principal stays, the token comes without roles) meets the same answers on every source.
PERMISSION_REFUSALS = frozenset({
    (403, "Authorization_RequestDenied"), (403, "Authentication_MSGraphPermissionMissing"),
    (403, "Authentication_ApplicationHasNoDirectoryReadAccess"), (401, "accessDenied"), (403, "accessDenied"),
})
PERMISSION_HINT = ("an application permission this request needs is not granted in the tenant, or its consent was "
                   "revoked (`authwatch permissions` lists them; `authwatch tenants add --tenant ID --check-only` "
                   "names the one missing)")


def is_permission_refusal(error: SourceError | None) -> bool:
    return error is not None and (error.status, error.code) in PERMISSION_REFUSALS


def http_error(status: int | None, code: str, message: str) -> SourceError:
    return SourceError(status=status, code=code or (f"HTTP{status}" if status else "Error"), message=_trim(message))


class IncompleteRead(Exception):
    """Paging ended before the answer did: the page cap was reached with a nextLink still to follow, a nextLink came
    back that was already followed (a loop) or that points off the endpoint's own origin, a page was no collection
    answer, or the tenant's deadline came first. The source is recorded as not collected, never as complete."""

    def __init__(self, source: str, code: str, reason: str, items: list | None = None) -> None:
        super().__init__(f"{source}: {reason}; the rest was not read")
        # PageLimitReached, NextLinkLoop, ForeignNextLink, MalformedAnswer or DeadlineExceeded
        self.code = code
        self.items = items or []  # what was read before paging stopped (newest first for the audit logs)


_DEFAULT_PORTS = {"https": 443, "http": 80}


def origin(url: str) -> str:
    """scheme://host:port of a URL (never its path or query, which may carry a skiptoken), for messages."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "an unreadable URL"
    return f"{parsed.scheme}://{parsed.host}:{parsed.port or _DEFAULT_PORTS.get(parsed.scheme, '?')}"


def same_origin(link: str, base: str) -> bool:
    """Whether a nextLink stays on the endpoint `base`: https, the same host and port, no user info. Paging follows
    only such links, so the bearer token (sent with every page) never goes anywhere else: not to plain http, not to
    another host an answer happens to name."""
    try:
        url, own = httpx.URL(link), httpx.URL(base)
    except (httpx.InvalidURL, TypeError):
        return False
    return (url.scheme == own.scheme == "https" and not url.userinfo and url.host.lower() == own.host.lower()
            and (url.port or 443) == (own.port or 443))


def graph_http_error(status: int | None, code: str, message: str) -> SourceError:
    """A Graph refusal; one that means a missing app role says so, since SharePoint's 401 does not look like it."""
    error = http_error(status, code, message)
    if not is_permission_refusal(error):
        return error
    return http_error(status, error.code, f"{message.rstrip('. ')}: {PERMISSION_HINT}")


def transport_error(error: Exception) -> SourceError:
    if isinstance(error, IncompleteRead):
        return SourceError(status=None, code=error.code, message=_trim(str(error)))
    if isinstance(error, DeadlineExceeded):
        return SourceError(status=error.status, code=error.code, message=_trim(str(error)))
    return SourceError(status=None, code=type(error).__name__, message=_trim(str(error) or type(error).__name__))
