"""Which Entra sign-ins are legacy authentication, and which of them succeeded (controls.md §2).

`clientAppUsed` is a free string in Graph, not an enum, so it is compared after folding case and whitespace. A
sign-in is read into a small `LegacySignIn`; anything that cannot be read is reported as unreadable rather than
guessed at. Shared by the collector (to keep only legacy sign-ins in the snapshot) and by control 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.model import parse_time_or_none

# controls.md §2, verbatim: the clientAppUsed values of legacy clients
# (https://learn.microsoft.com/en-us/entra/identity/conditional-access/block-legacy-authentication#identify-legacy-authentication-use; the field is
# a free string, https://learn.microsoft.com/en-us/graph/api/resources/signin). Entra's docs also show "Universal Outlook"; the spec does not list
# it, so neither do we.
LEGACY_CLIENT_APPS: frozenset[str] = frozenset({
    "Authenticated SMTP", "AutoDiscover", "Exchange ActiveSync", "Exchange Online PowerShell",
    "Exchange Web Services", "IMAP4", "MAPI Over HTTP", "Offline Address Book", "Outlook Anywhere (RPC over HTTP)",
    "Outlook Service", "POP3", "Reporting Web Services", "Other clients",
})


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


# Folded spelling -> the spec's spelling, so evidence groups "imap4" and "IMAP4" under one protocol name.
_CANONICAL: dict[str, str] = {_fold(name): name for name in LEGACY_CLIENT_APPS}


def legacy_protocol(client_app: Any) -> str | None:
    """The canonical legacy client app name for a `clientAppUsed` value, or None when it is not legacy."""
    return _CANONICAL.get(_fold(client_app)) if isinstance(client_app, str) else None


def is_legacy_signin(signin: Any) -> bool:
    """True for a sign-in object whose client app is legacy (successful or not)."""
    return isinstance(signin, dict) and legacy_protocol(signin.get("clientAppUsed")) is not None


def succeeded(signin: dict[str, Any]) -> bool | None:
    """status.errorCode == 0 means success; any other number is a failure; None when it cannot be read."""
    status = signin.get("status")
    code = status.get("errorCode") if isinstance(status, dict) else None
    if isinstance(code, bool):  # bool is an int in Python; true/false is not an error code
        return None
    if isinstance(code, int):
        return code == 0
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():
        return int(code) == 0
    return None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True)
class LegacySignIn:
    protocol: str  # canonical clientAppUsed
    user: str  # userPrincipalName, else userId, else userDisplayName
    user_id: str | None  # the Entra object id, for Set-User
    ip_address: str | None
    at: datetime | None  # None when createdDateTime is missing or unparseable
    succeeded: bool | None  # None when status.errorCode is unreadable


def read_legacy_signin(signin: Any) -> LegacySignIn | None:
    """The legacy sign-in in a Graph signIn object, or None when the object is not a legacy sign-in at all."""
    if not is_legacy_signin(signin):
        return None
    user_id = _text(signin.get("userId"))
    return LegacySignIn(
        protocol=legacy_protocol(signin.get("clientAppUsed")) or "",
        user=_text(signin.get("userPrincipalName")) or user_id or _text(signin.get("userDisplayName"))
        or "(unknown user)",
        user_id=user_id,
        ip_address=_text(signin.get("ipAddress")),
        at=parse_time_or_none(signin.get("createdDateTime")),
        succeeded=succeeded(signin),
    )
