"""What an alert says, whatever the channel: what changed (before → after), who changed it, what it exposes, the
enforcement window's time left, and the exact remediation. Pure: events in, plain text pieces out; each channel
only lays them out (Adaptive Card, Block Kit, HTML, JSON).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.alerts.wrap import wrap
from shared.controls.enforcement_window import describe_duration
from shared.model import format_time, parse_time_or_none
from shared.state import events as ev

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}
OPENING = (ev.CONTROL_FAILED, ev.DRIFT_WEAKENED, ev.BASIC_AUTH_REENABLED, ev.ENFORCEMENT_GAP, ev.TENANT_UNREACHABLE)
RESOLUTIONS = (ev.CONTROL_RECOVERED, ev.TENANT_RECOVERED)
INFORMATIONAL = (ev.WINDOW_STARTED, ev.WINDOW_CONFIRMED, ev.DRIFT_STRENGTHENED)
CONTRACT_FIELDS = ("id", "at", "tenantId", "type", "control", "severity", "summary", "details")
MAX_VALUE_CHARS = 200
MAX_TITLE_SUMMARY = 110

TYPE_LABELS = {
    ev.CONTROL_FAILED: "Control failing",
    ev.CONTROL_RECOVERED: "Resolved",
    ev.CONTROL_UNKNOWN: "Control cannot be evaluated",
    ev.DRIFT_WEAKENED: "Protection weakened",
    ev.DRIFT_STRENGTHENED: "Protection strengthened",
    ev.BASIC_AUTH_REENABLED: "Basic authentication re-enabled",
    ev.WINDOW_STARTED: "Enforcement window started",
    ev.WINDOW_CONFIRMED: "Enforcement confirmed",
    ev.ENFORCEMENT_GAP: "Legacy sign-ins after the enforcement window",
    ev.TENANT_UNREACHABLE: "Tenant unreachable",
    ev.TENANT_RECOVERED: "Resolved: tenant reachable again",
    ev.EXCEPTION_EXPIRING: "Exception expiring soon",
    ev.EXCEPTION_EXPIRED: "Exception expired",
}

# What a failing control leaves open, in the words a responder needs.
EXPOSURE = {
    "entra_legacy_auth_blocked": "Without a Conditional Access block (or security defaults) every legacy protocol - "
    "Exchange ActiveSync and 'other clients' such as POP, IMAP, SMTP AUTH and old Office clients - signs in with a "
    "password alone, bypassing MFA: password spray and credential stuffing reach every account.",
    "entra_legacy_signins_blocked": "Legacy clients are still signing in successfully after the block should have "
    "taken effect: an exclusion, a report-only policy or an uncovered client type leaves password-only access open.",
    "exo_smtp_auth_disabled": "SMTP AUTH on for the organisation lets every mailbox without its own override send "
    "mail with a password alone (basic authentication, no MFA): a sprayed password becomes phishing from a trusted "
    "mailbox.",
    "exo_smtp_auth_mailbox_overrides": "These mailboxes accept password-only SMTP submission although the "
    "organisation has SMTP AUTH off.",
    "exo_basic_auth_policy": "An applied Exchange authentication policy allows basic authentication: Exchange "
    "accepts password-only sign-ins for the users it covers.",
    "exo_pop_imap_disabled": "POP and IMAP let a client download whole mailboxes; wherever legacy authentication is "
    "open they are the usual exfiltration path.",
    "exo_modern_auth_enabled": "With modern authentication off, Outlook falls back to basic authentication prompts: "
    "users keep typing passwords that bypass MFA.",
    "spo_legacy_auth_disabled": "SharePoint and OneDrive accept legacy (password-only) protocols from old Office "
    "clients and tools, bypassing MFA and Conditional Access for file access.",
    "legacy_auth_exposure": "These mailboxes have every layer open at once - SMTP AUTH on, a policy allowing basic "
    "SMTP and no Entra block: a sprayed password is enough to send mail as them now.",
}
TENANT_EXPOSURE = ("authwatch cannot read this tenant: any change there goes unnoticed until access is restored.")
TENANT_REMEDIATION = ("Check that the authwatch app still has admin consent in the tenant, that its credential "
                      "(secret, certificate or federated credential) is valid, and that it still holds the Exchange "
                      "role; the error above names the failing call.")


def severity_rank(severity: Any) -> int:
    return SEVERITY_RANK.get(str(severity or "").lower(), 0)


def event_order(event: dict[str, Any]) -> tuple:
    """Most important first: severity, then alerts before resolutions before information, then a stable tail."""
    kind = event.get("type")
    category = 0 if kind in OPENING else 1 if kind not in INFORMATIONAL else 2
    return (-severity_rank(event.get("severity")), category, str(kind or ""), str(event.get("control") or ""),
            str(event.get("id") or ""))


def contract_event(record: dict[str, Any]) -> dict[str, Any]:
    """The contract fields of a stored or queued event (history rows carry annotations besides)."""
    return {key: record.get(key) for key in CONTRACT_FIELDS}


def stable_id(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _catalogue() -> dict[str, Any]:
    from shared.controls import controls  # the catalogue registers itself on import

    return {control.id: control.metadata for control in controls()}


def control_title(control: str | None) -> str | None:
    if not control:
        return None
    metadata = _catalogue().get(control)
    return metadata.title if metadata else control


def _value(value: Any) -> str:
    if value is None:
        return "(not set)"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 1] + "…"


def changes(event: dict[str, Any]) -> list[str]:
    """What changed, before → after, one line each."""
    details = event.get("details") or {}
    kind = event.get("type")
    lines: list[str] = []
    for change in details.get("changes") or []:  # drift: field-level
        if isinstance(change, dict):
            line = f"{change.get('field')}: {_value(change.get('before'))} → {_value(change.get('after'))}"
            lines.append(line + (f" ({change['note']})" if change.get("note") else ""))
    if lines:
        return lines
    if kind in (ev.CONTROL_FAILED, ev.CONTROL_RECOVERED, ev.CONTROL_UNKNOWN):
        before = details.get("before") or "not evaluated"
        return [f"status: {before} → {details.get('after') or kind.split('.')[-1]}"]
    if kind == ev.TENANT_UNREACHABLE:
        errors = details.get("errors") or {}
        first = next(iter(errors.values()), {}) if isinstance(errors, dict) else {}
        cause = " ".join(str(part) for part in (first.get("status"), first.get("code")) if part)
        return [f"collection: working → failing ({cause or 'error'}; {len(errors)} source(s) failed)"]
    if kind == ev.TENANT_RECOVERED:
        return [f"collection: failing → working (after {details.get('failedCycles', '?')} failed cycle(s))"]
    if kind == ev.ENFORCEMENT_GAP:
        return [f"legacy sign-ins after the window closed: none → {details.get('gapCount', 'some')}"]
    if kind == ev.WINDOW_STARTED:
        return ["legacy-auth block: not in force → in force (enforcement window started)"]
    if kind == ev.WINDOW_CONFIRMED:
        return ["enforcement: pending → confirmed"]
    return []


def changed_by(event: dict[str, Any]) -> str | None:
    details = event.get("details") or {}
    who = details.get("changedBy")
    if not who:
        return None
    when = details.get("changedAt")
    return f"{who} at {when}" if when else str(who)


def exposes(event: dict[str, Any]) -> str | None:
    kind = event.get("type")
    if kind in RESOLUTIONS or kind in INFORMATIONAL:
        return None
    if kind == ev.TENANT_UNREACHABLE:
        return TENANT_EXPOSURE
    return EXPOSURE.get(str(event.get("control") or ""))


def window(event: dict[str, Any], now: datetime) -> str | None:
    """The enforcement window's time left, seen from `now`, while one is open."""
    details = event.get("details") or {}
    closes = parse_time_or_none(details.get("windowClosesAt"))
    if closes is not None:
        if closes <= now:
            return f"enforcement window closed at {format_time(closes)}"
        return f"{describe_duration(closes - now)} left (the window closes {format_time(closes)})"
    left = details.get("secondsLeft")
    if isinstance(left, (int, float)) and left > 0:
        return f"{describe_duration(timedelta(seconds=left))} left when detected"
    return None


def remediation(event: dict[str, Any]) -> str | None:
    details = event.get("details") or {}
    if details.get("remediation"):
        return str(details["remediation"])
    kind = event.get("type")
    if kind in RESOLUTIONS or kind in INFORMATIONAL:
        return None
    if kind == ev.TENANT_UNREACHABLE:
        return TENANT_REMEDIATION
    metadata = _catalogue().get(str(event.get("control") or ""))
    return metadata.remediation if metadata else None


@dataclass(frozen=True)
class EventView:
    """One event as a person reads it."""

    id: str
    type: str
    label: str
    severity: str
    at: str
    control: str | None
    control_title: str | None
    summary: str
    changes: list[str]
    changed_by: str | None
    exposes: str | None
    window: str | None
    remediation: str | None

    @property
    def resolution(self) -> bool:
        return self.type in RESOLUTIONS

    def facts(self) -> list[tuple[str, str]]:
        """(label, text) pairs in reading order, only those that say something."""
        control = f"{self.control_title} ({self.control})" if self.control_title else ""
        pairs = [("Control", control), ("What changed", "; ".join(self.changes)), ("Changed by", self.changed_by or ""),
                 ("Exposes", self.exposes or ""), ("Enforcement window", self.window or ""),
                 ("Fix", self.remediation or "")]
        return [(label, text) for label, text in pairs if text]


def view(event: dict[str, Any], now: datetime) -> EventView:
    kind = str(event.get("type") or "")
    return EventView(
        id=str(event.get("id") or ""), type=kind, label=TYPE_LABELS.get(kind, kind),
        severity=str(event.get("severity") or "low"), at=str(event.get("at") or ""), control=event.get("control"),
        control_title=control_title(event.get("control")), summary=str(event.get("summary") or ""),
        changes=changes(event), changed_by=changed_by(event), exposes=exposes(event), window=window(event, now),
        remediation=remediation(event))


@dataclass(frozen=True)
class AlertGroup:
    """Everything one cycle raised for one tenant that goes to one channel: one message. `events` are ordered,
    the most important first; its id is the message's idempotency key (stable: same events, same lead)."""

    tenant_id: str
    tenant_name: str
    events: tuple[dict[str, Any], ...]
    dashboard: str | None
    now: datetime

    def __post_init__(self) -> None:
        if not self.events:
            raise ValueError("an alert group needs at least one event")
        object.__setattr__(self, "events", tuple(sorted(self.events, key=event_order)))

    @property
    def lead(self) -> dict[str, Any]:
        return self.events[0]

    @property
    def id(self) -> str:
        return str(self.lead["id"])

    @property
    def severity(self) -> str:
        return str(self.lead.get("severity") or "low")

    def views(self) -> list[EventView]:
        return [view(event, self.now) for event in self.events]

    def title(self) -> str:
        """'<tenant>: <the lead event's summary>' (clipped), '(+N more)' when the cycle raised several."""
        lead = self.lead
        summary = " ".join(str(lead.get("summary") or TYPE_LABELS.get(str(lead.get("type")), "")).split())
        if lead.get("type") in RESOLUTIONS and not summary.lower().startswith("resolved"):
            summary = f"Resolved: {summary}"
        if len(summary) > MAX_TITLE_SUMMARY:
            summary = summary[:MAX_TITLE_SUMMARY - 1].rstrip() + "…"
        more = f" (+{len(self.events) - 1} more)" if len(self.events) > 1 else ""
        return f"{self.tenant_name}: {summary}{more}"

    def payload(self) -> dict[str, Any]:
        """The generic webhook body (product.md "Alert payload"): the lead event object plus id, tenantName and
        links; when the cycle raised several events, `events` lists all of them (the lead included), each with its
        own id."""
        body = {**contract_event(self.lead), "id": self.id, "tenantName": self.tenant_name,
                "links": {"dashboard": self.dashboard}}
        if len(self.events) > 1:
            body["events"] = [contract_event(event) for event in self.events]
        return body


@dataclass(frozen=True)
class DigestEntry:
    tenant_id: str
    tenant_name: str
    dashboard: str | None
    alerts: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Digest:
    """A reminder of still-open alerts for one channel: one message for every tenant routed to it."""

    id: str
    now: datetime
    min_severity: str
    entries: tuple[DigestEntry, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return sum(len(entry.alerts) for entry in self.entries)

    def title(self) -> str:
        tenants = len(self.entries)
        return (f"authwatch reminder: {self.total} open {self.min_severity}-severity alert"
                f"{'s' if self.total != 1 else ''} in {tenants} tenant{'s' if tenants != 1 else ''}")

    def payload(self) -> dict[str, Any]:
        return {"id": self.id, "type": "authwatch.digest", "at": format_time(self.now), "summary": self.title(),
                "tenants": [{"tenantId": entry.tenant_id, "tenantName": entry.tenant_name,
                             "links": {"dashboard": entry.dashboard},
                             "alerts": [{**contract_event(alert), "openSince": alert.get("at")}
                                        for alert in entry.alerts]}
                            for entry in self.entries]}


def age(at: str, now: datetime) -> str:
    """'open for 2d 4h' / 'open for 3h 05m'."""
    moment = parse_time_or_none(at)
    if moment is None or moment > now:
        return ""
    span = now - moment
    if span >= timedelta(days=1):
        return f"open for {span.days}d {span.seconds // 3600}h"
    return f"open for {describe_duration(span)}"


def group_by_cycle(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Queued event records grouped as delivery groups them: one group per (tenant, cycle time), most important
    event first, groups in the order their first record came."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((str(record.get("tenantId")), str(record.get("at"))), []).append(record)
    return [sorted(group, key=event_order) for group in groups.values()]


def render_text(group: AlertGroup, *, width: int = 110) -> str:
    """One grouped alert as plain text, as a person reads it (the CLI demo, logs of a dry run)."""
    lines = [f"■ {group.title()}", f"  {group.severity.upper()} · detected {group.lead.get('at')} · alert {group.id}"]
    for item in group.views():
        same = item.summary.lower().startswith(item.label.lower())
        lines.append(f"  ▸ {item.summary}" if same else f"  ▸ {item.label}: {item.summary}")
        for label, text in item.facts():
            lines += wrap(text, width, first=f"      {label + ':':<20}", rest=" " * 26)
    if group.dashboard:
        lines.append(f"  → {group.dashboard}")
    return "\n".join(lines)
