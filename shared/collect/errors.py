"""Turning failures at the edge into `SourceError` values: status, Microsoft's code, a message; never a token."""

from __future__ import annotations

import re

from shared.model import SourceError

_AADSTS = re.compile(r"AADSTS\d+")
_MAX_MESSAGE = 300


def _trim(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


# What the common sign-in failures mean for an operator, and what to do about each.
TOKEN_HINTS = {
    "AADSTS7000215": "the client secret is wrong: put the current secret in the tenant's credential",
    "AADSTS7000222": "the client secret has expired: create a new one and update the tenant's credential",
    "AADSTS700016": "the app is not installed in this tenant: admin consent is missing or was revoked; "
                    "send the tenant's admin the consent link again",
    "AADSTS90002": "no such tenant: check the tenant id",
    "AADSTS7000112": "the app is disabled in this tenant: ask its admin to enable the enterprise application",
    "AADSTS700027": "the client assertion (certificate or federated credential) was rejected",
    "AADSTS70021": "no federated credential on the app matches the managed identity (issuer, subject = its "
                   "principal id, audience api://AzureADTokenExchange)",
    "AADSTS700024": "the client assertion has expired or is not yet valid (check the clock)",
}


def token_error(error: Exception) -> SourceError:
    """azure-identity failed to get a token: keep the AADSTS code, which says what is wrong (secret, consent…)."""
    message = str(getattr(error, "message", None) or error)
    found = _AADSTS.search(message)
    status = getattr(getattr(error, "response", None), "status_code", None)
    if not found:
        return SourceError(status=status, code=type(error).__name__, message=_trim(message))
    code = found.group(0)
    # Entra's description runs on with trace and correlation ids; its first sentence is the part worth keeping.
    first_sentence = message[found.end():].lstrip(": ").split(". ")[0].rstrip(".'")
    return SourceError(status=status, code=code, message=_trim(TOKEN_HINTS.get(code) or first_sentence))


def http_error(status: int | None, code: str, message: str) -> SourceError:
    return SourceError(status=status, code=code or (f"HTTP{status}" if status else "Error"), message=_trim(message))


class IncompleteRead(Exception):
    """Paging ended before the answer did: the page cap was reached with a nextLink still to follow, or a nextLink
    came back that was already followed (a loop). The source is recorded as not collected, never as complete."""

    def __init__(self, source: str, code: str, reason: str, items: list | None = None) -> None:
        super().__init__(f"{source}: {reason}; the rest was not read")
        self.code = code  # PageLimitReached or NextLinkLoop
        self.items = items or []  # what was read before paging stopped (newest first for the audit logs)


def transport_error(error: Exception) -> SourceError:
    if isinstance(error, IncompleteRead):
        return SourceError(status=None, code=error.code, message=_trim(str(error)))
    return SourceError(status=None, code=type(error).__name__, message=_trim(str(error) or type(error).__name__))
