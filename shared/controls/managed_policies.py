"""Microsoft-managed Conditional Access policies: how to recognise one, and when Microsoft turns it on.

Microsoft creates these policies ("Block legacy authentication", "Block device code flow", ...) in report-only and
"enables these policies no less than 45 days after they're introduced in your tenant if they're left in the
Report-only state", with notice beforehand; admins may change only their state and exclusions, and cannot rename
or delete them: https://learn.microsoft.com/en-us/entra/identity/conditional-access/managed-policies
Graph v1.0 has no property that marks them
(https://learn.microsoft.com/en-us/graph/api/resources/conditionalaccesspolicy). What is observed is the display
name: every one starts with "Microsoft-managed:" (the portal and Microsoft's own screenshots), and because they cannot
be renamed the prefix is a stable mark; their audit entries are initiated by "Microsoft Managed Policy Manager".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.model import parse_time_or_none

MANAGED_PREFIX = "microsoft-managed:"
# "no less than 45 days after they're introduced": the earliest Microsoft turns a report-only one on.
EARLIEST_ENFORCEMENT = timedelta(days=45)


def is_microsoft_managed(policy: dict[str, Any]) -> bool:
    name = policy.get("displayName")
    return isinstance(name, str) and name.strip().lower().startswith(MANAGED_PREFIX)


def enforcement_from(policy: dict[str, Any]) -> datetime | None:
    """The earliest day Microsoft turns this report-only policy on: 45 days after it was created, when known."""
    created = parse_time_or_none(policy.get("createdDateTime"))
    return created + EARLIEST_ENFORCEMENT if created is not None else None


def report_only_reason(start: datetime | None, now: datetime) -> str:
    """Why a report-only Microsoft-managed policy does not count yet, and when (`start`, from `enforcement_from`)
    that changes by itself."""
    if start is None:
        when = "after its notice period (created date unknown)"
    elif start > now:
        when = f"on or after {start:%Y-%m-%d}"
    else:
        when = f"at any time now (its 45 days ran out on {start:%Y-%m-%d}; Microsoft gives notice in Message Center)"
    return (f"is Microsoft-managed and report-only (enabledForReportingButNotEnforced), so it blocks nothing yet: "
            f"Microsoft turns it on {when} unless it is set to Off")
