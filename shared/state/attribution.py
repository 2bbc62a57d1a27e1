"""Who changed it, and when: Conditional Access directory audits and policy timestamps matched to a change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.model import TenantSnapshot, format_time, parse_time_or_none


def _initiator(audit: dict[str, Any]) -> str | None:
    initiated = audit.get("initiatedBy") if isinstance(audit.get("initiatedBy"), dict) else {}
    user = initiated.get("user") if isinstance(initiated.get("user"), dict) else None
    if user:
        return user.get("userPrincipalName") or user.get("displayName") or user.get("id")
    app = initiated.get("app") if isinstance(initiated.get("app"), dict) else None
    if app:
        return f"app {app.get('displayName') or app.get('appId') or app.get('servicePrincipalId')}"
    return None


def _targets(audit: dict[str, Any]) -> set[str]:
    resources = audit.get("targetResources") if isinstance(audit.get("targetResources"), list) else []
    return {str(resource.get("id")) for resource in resources if isinstance(resource, dict) and resource.get("id")}


def _in_interval(moment: datetime | None, start: datetime | None, end: datetime) -> bool:
    return moment is not None and (start is None or moment > start) and moment <= end


def find_author(snapshot: TenantSnapshot, *, target_id: str | None, activity_words: tuple[str, ...],
                since: datetime | None) -> dict[str, Any]:
    """The newest audit entry inside the observation interval (since, collectedAt] for this target (or, without a
    target id, whose activity names it, e.g. "security defaults"); {} when the audit log does not say."""
    audits = snapshot.get("graph.directoryAudits")
    best: tuple[datetime, dict[str, Any]] | None = None
    for audit in audits if isinstance(audits, list) else []:
        if not isinstance(audit, dict):
            continue
        activity = str(audit.get("activityDisplayName") or "")
        if target_id is not None and target_id not in _targets(audit):
            continue
        if target_id is None and not all(word in activity.lower() for word in activity_words):
            continue
        moment = parse_time_or_none(audit.get("activityDateTime"))
        if _in_interval(moment, since, snapshot.collected_at) and (best is None or moment > best[0]):  # type: ignore[operator]
            best = (moment, audit)  # type: ignore[assignment]
    if best is None:
        return {}
    moment, audit = best
    return {"changedBy": _initiator(audit), "changedAt": format_time(moment), "activity": audit.get("activityDisplayName")}


def policy_modified_in(policy: dict[str, Any] | None, since: datetime | None, until: datetime) -> datetime | None:
    """The policy's modifiedDateTime (else createdDateTime) when it falls inside the observation interval."""
    if not isinstance(policy, dict):
        return None
    moment = parse_time_or_none(policy.get("modifiedDateTime")) or parse_time_or_none(policy.get("createdDateTime"))
    return moment if _in_interval(moment, since, until) else None
