"""A tenant's timeline: every protection change, when it is in force by, what the evidence said, and the platform's
own dates, newest first. Pure: a tenant's history events, its state row and its current results in, entries out (no
storage, no clock: `now` is passed in). GET /api/tenants/{id}/timeline, `authwatch timeline` and the dashboard's
tenant page show it; `timeline_rows` flattens it into one printable row per entry (for tables and the HTML report).

An entry (JSON):

    at          ISO time the entry sits at (a change: when it was made, else when authwatch saw it; a window: when it
                opened / closes; a platform date: the date)
    kind        change | window_opened | in_force | confirmed | gap | platform | managed_policy
    title       one line saying what happened or happens
    effect      change: weakened | strengthened | reenabled | neutral; otherwise null
    protection  which protection ("smtpAuth:tenant", "authPolicy:<name>", …; null for the Conditional Access /
                security defaults block of older data)
    control     the control id it concerns, when one does
    by          who made the change, when the audit log says (else null)
    changes     change: [{field, before, after, effect, note}]; otherwise []
    inForce     "at once" (a weakening or re-enable: assume the worst), "by <time>" (the window's close), or null
    inForceBy   the window's close (a re-enable: when it works again at the latest) as an ISO time, when known
    detail      platform dates: what it means and what to do; otherwise null
    status      window/in_force: open | confirmed | gap | cancelled | awaiting evidence; platform: upcoming | past
    scope       {count, sample} of the users or mailboxes in scope, when the data has it
    source      platform dates: {id, url}; otherwise null
    eventId     the history event the entry comes from (null for state windows and platform dates)
    detectedAt  when authwatch saw it (the event's time)

Event and state shapes are read generically: a key that is missing is older data, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from shared.model import format_time, parse_time_or_none

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


@dataclass(frozen=True)
class PlatformDate:
    """A date Microsoft set for every tenant, with the public announcement it comes from."""

    id: str
    at: datetime
    when: str  # how precise Microsoft is ("end of December 2026")
    title: str
    detail: str
    control: str
    protection: str | None
    source_id: str
    source_url: str


PLATFORM_DATES = (
    # Microsoft 365 message center MC786329, "Exchange Online to retire Basic auth for Client Submission (SMTP AUTH)",
    # as updated by the Exchange Team on 27 January 2026 ("Updated Exchange Online SMTP AUTH Basic Authentication
    # Deprecation Timeline", https://techcommunity.microsoft.com/blog/exchange/updated-exchange-online-smtp-auth-basic-authentication-deprecation-timeline/4489835):
    # unchanged through December 2026; at the end of December 2026 disabled by default for existing tenants, which
    # administrators can still enable; the final removal date is to be announced in the second half of 2027.
    # "End of December" has no day: the entry sits on 31 December.
    PlatformDate(
        id="smtp-auth-basic-default-off", at=datetime(2026, 12, 31, tzinfo=timezone.utc),
        when="end of December 2026",
        title="SMTP AUTH Basic authentication off by default for existing tenants",
        detail="Scanners and apps that send with SMTP AUTH and a password stop unless an admin turns Basic back on; "
               "move them to OAuth, High Volume Email, Azure Communication Services or a connector-based relay. "
               "Microsoft announces the final removal date in the second half of 2027.",
        control="exo_smtp_auth_disabled", protection="smtpAuth:tenant", source_id="MC786329",
        source_url="https://techcommunity.microsoft.com/blog/exchange/updated-exchange-online-smtp-auth-basic-"
                   "authentication-deprecation-timeline/4489835"),
    # Microsoft 365 message center MC1184649, "Microsoft SharePoint: Retirement of IDCRL authentication protocol and
    # enforcement of OpenID Connect and OAuth protocols" (updated 5 February 2026): legacy client authentication
    # blocked by default from 16 February 2026, re-enable possible until 30 April 2026, "Starting May 1, 2026: Legacy
    # client authentication will be permanently blocked and cannot be re-enabled."
    PlatformDate(
        id="spo-idcrl-off", at=datetime(2026, 5, 1, tzinfo=timezone.utc), when="1 May 2026",
        title="SharePoint and OneDrive legacy authentication (IDCRL) permanently off",
        detail="Legacy client authentication to SharePoint Online and OneDrive is blocked and cannot be re-enabled.",
        control="spo_legacy_auth_disabled", protection=None, source_id="MC1184649",
        source_url="https://admin.microsoft.com/#/MessageCenter/:/messages/MC1184649"),
)

# Microsoft-managed Conditional Access policies: "enables these policies no less than 45 days after they're introduced
# in your tenant if they're left in the Report-only state" (shared/controls/managed_policies.py); control 1's evidence
# carries the date for each such policy (microsoftEnablesFrom, from managed_policies.enforcement_from).
MANAGED_POLICIES_URL = "https://learn.microsoft.com/en-us/entra/identity/conditional-access/managed-policies"

CHANGE_TYPES = {"drift.weakened": "weakened", "drift.strengthened": "strengthened",
                "basic_auth.reenabled": "reenabled", "config.changed": "neutral"}
WINDOW_STARTED, CONFIRMED, GAP = "enforcement.window_started", "enforcement.confirmed", "enforcement.gap"

_SECTIONS = {"conditionalAccess": "Conditional Access policy", "securityDefaults": "Security defaults",
             "transport": "Exchange SMTP AUTH (tenant)", "mailboxOverrides": "Mailbox SMTP AUTH overrides",
             "authenticationPolicies": "Exchange authentication policy", "organization": "Exchange organization",
             "sharepoint": "SharePoint settings", "mailboxProtocols": "Mailbox POP / IMAP"}
_BLOCK_SECTIONS = ("conditionalAccess", "securityDefaults")  # the legacy-auth block's window (older data: unnamed)
_VERBS = {"weakened": "Protection weakened", "strengthened": "Protection strengthened",
          "reenabled": "Basic authentication re-enabled", "neutral": "Configuration changed"}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _iso(value: Any) -> str | None:
    moment = parse_time_or_none(value)
    return format_time(moment) if moment is not None else None


def protection_label(protection: str | None) -> str:
    """A protection id as people say it."""
    if not protection:
        return "legacy-auth block (Conditional Access / security defaults)"
    kind, _, name = protection.partition(":")
    return {"smtpAuth": "SMTP AUTH turned off for the organisation" if name == "tenant"
            else f"SMTP AUTH turned off for {name or 'mailboxes'}",
            "authPolicy": f"authentication policy '{name}'",
            "defaultPolicy": "the organisation's default authentication policy",
            "mailboxOverrides": "mailbox SMTP AUTH overrides", "conditionalAccess": "Conditional Access block",
            "securityDefaults": "security defaults"}.get(kind, protection)


def _change_protection(details: dict[str, Any]) -> str | None:
    section, item = details.get("section"), str(details.get("item") or "")
    if section == "transport":
        return "smtpAuth:tenant"
    if section == "authenticationPolicies":  # keys as shared/state/windows.py names them
        return item if item.startswith("authPolicy:") or item == "defaultPolicy" else None
    if section == "mailboxOverrides":
        return "smtpAuth:mailboxes"
    return None


def _change_name(details: dict[str, Any], summary: str) -> str:
    section = details.get("section")
    item = str(details.get("item") or "")
    if section == "conditionalAccess" and "'" in summary:
        start = summary.find("Conditional Access policy '")
        if start >= 0:
            end = summary.find("'", start + 27)
            if end > 0:
                return summary[start:end + 1]
    name = _SECTIONS.get(str(section), str(section or "configuration"))
    item = item.removeprefix("ca:").removeprefix("authPolicy:")
    return f"{name} {item}" if item and "." not in item else name


def _changes(details: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"field": str(c.get("field") or ""), "before": c.get("before"), "after": c.get("after"),
             "effect": c.get("effect"), "note": c.get("note") or ""}
            for c in details.get("changes") or [] if isinstance(c, dict)]


def _entry(at: str | None, kind: str, title: str, **fields: Any) -> dict[str, Any]:
    return {"at": at, "kind": kind, "title": title, "effect": None, "protection": None, "control": None,
            "by": None, "changes": [], "inForce": None, "inForceBy": None, "detail": None, "status": None, "scope": None,
            "source": None, "eventId": None, "detectedAt": None, **fields}


@dataclass
class _Window:
    protection: str | None
    started: str | None
    closes: str | None
    hours: Any
    control: str | None
    scope: dict[str, Any] | None
    label: str | None = None  # what was switched on, in words (windows of Exchange protections)
    cancelled: bool = False  # switched off again before it closed
    event: dict[str, Any] | None = None  # its window_started event, when history still has it
    confirmed: dict[str, Any] | None = None
    gap: dict[str, Any] | None = None
    state_confirmed: bool = False
    state_gap: bool = False

    @property
    def key(self) -> tuple[str | None, str | None]:
        return self.protection, self.started


def _window_of(details: dict[str, Any], control: Any) -> _Window:
    return _Window(protection=_text(details.get("protection")), started=_iso(details.get("windowStartedAt")),
                   closes=_iso(details.get("windowClosesAt")), hours=details.get("windowHours"),
                   control=_text(control), scope=_scope(details.get("scope")), label=_text(details.get("label")))


def _scope(value: Any) -> dict[str, Any] | None:
    scope = _dict(value)
    if not scope:
        return None
    sample = scope.get("sample")
    return {"count": scope.get("count"), "everyone": bool(scope.get("everyone")),
            "sample": [str(s) for s in sample][:10] if isinstance(sample, list) else []}


def _state_windows(state: dict[str, Any] | None) -> list[_Window]:
    """The windows the state row tracks: state["enforcement"] (the block's) and state["windows"] (each protection)."""
    found = []
    tracked = _dict(_dict(state).get("enforcement"))
    rows = ([{**tracked, "protection": tracked.get("protection")}] if tracked.get("startedAt") else []) + \
        [row for row in _dict(state).get("windows") or [] if isinstance(row, dict) and row.get("startedAt")]
    for row in rows:
        started = _iso(row.get("startedAt"))
        closes = _iso(row.get("closesAt")) or _closes(started, row.get("hours"))
        found.append(_Window(protection=_text(row.get("protection")), started=started, closes=closes,
                             hours=row.get("hours"), control=_text(row.get("control")), scope=_scope(row.get("scope")),
                             label=_text(row.get("label")), cancelled=bool(row.get("cancelled")),
                             state_confirmed=bool(row.get("confirmed")), state_gap=bool(row.get("gapReported"))))
    return found


def _closes(started: str | None, hours: Any) -> str | None:
    from datetime import timedelta

    moment = parse_time_or_none(started)
    try:
        return format_time(moment + timedelta(hours=float(hours if hours is not None else 24))) if moment else None
    except (TypeError, ValueError, OverflowError):
        return None


def _windows(events: list[dict[str, Any]], state: dict[str, Any] | None) -> list[_Window]:
    windows: dict[tuple[str | None, str | None], _Window] = {}
    for event in events:
        if event.get("type") == WINDOW_STARTED:
            window = _window_of(_dict(event.get("details")), event.get("control"))
            window.event = event
            windows.setdefault(window.key, window)
    for window in _state_windows(state):
        known = windows.setdefault(window.key, window)
        known.state_confirmed, known.state_gap = window.state_confirmed, window.state_gap
        known.cancelled = window.cancelled
        known.scope = known.scope or window.scope
        known.control, known.label = known.control or window.control, known.label or window.label
    for event in events:
        kind = event.get("type")
        if kind in (CONFIRMED, GAP):
            outcome = _window_of(_dict(event.get("details")), event.get("control"))
            window = windows.setdefault(outcome.key, outcome)
            setattr(window, "confirmed" if kind == CONFIRMED else "gap", event)
    return list(windows.values())


def _status(window: _Window, now: datetime) -> str:
    if window.gap is not None or window.state_gap:
        return "gap"
    if window.confirmed is not None or window.state_confirmed:
        return "confirmed"
    if window.cancelled:
        return "cancelled"
    closes = parse_time_or_none(window.closes)
    return "open" if closes is not None and closes > now else "awaiting evidence"


def _window_entries(window: _Window, now: datetime) -> list[dict[str, Any]]:
    label = window.label or protection_label(window.protection)
    status = _status(window, now)
    common = {"protection": window.protection, "control": window.control, "scope": window.scope,
              "inForceBy": window.closes, "status": status}
    started_event = window.event or {}
    entries = []
    if window.started is not None or window.event is not None:
        what = window.label or f"{label} switched on"
        lag = f"; enforcement can take up to {float(window.hours):g} h" \
            if isinstance(window.hours, (int, float)) and not isinstance(window.hours, bool) else ""
        entries.append(_entry(window.started or _iso(started_event.get("at")), "window_opened",
                              f"Enforcement window opened: {what}{lag}",
                              inForce=f"by {window.closes}" if window.closes else None,
                              eventId=started_event.get("id"), detectedAt=_iso(started_event.get("at")), **common))
    if window.closes is not None:
        said = {"open": "in force by this time (window closes)", "confirmed": "in force (the evidence confirmed it)",
                "gap": "should be in force, but the evidence shows legacy sign-ins after the window closed",
                "awaiting evidence": "window closed; the next evaluation confirms enforcement or reports a gap",
                "cancelled": "switched off again before the window closed, so never in force"}
        entries.append(_entry(window.closes, "in_force", f"{label[0].upper()}{label[1:]}: {said[status]}",
                              inForce=None if status == "cancelled" else f"by {window.closes}", **common))
    for kind, event in (("confirmed", window.confirmed), ("gap", window.gap)):
        if event is not None:
            details = _dict(event.get("details"))
            entries.append(_entry(_iso(event.get("at")), kind, str(event.get("summary") or kind),
                                  eventId=event.get("id"), detectedAt=_iso(event.get("at")),
                                  **{**common, "scope": window.scope or _scope(details.get("scope"))}))
    return entries


def _linked_window(event: dict[str, Any], protection: str | None, windows: list[_Window]) -> _Window | None:
    """The window a strengthening opened: one started in the same cycle (same event time) for the same protection."""
    same_cycle = [w for w in windows if w.event is not None and w.event.get("at") == event.get("at")]
    section = _dict(event.get("details")).get("section")
    for window in same_cycle:
        if window.protection == protection and (protection is not None or section in _BLOCK_SECTIONS):
            return window
        if protection is None and section in _BLOCK_SECTIONS and str(window.protection or "").startswith(
                _BLOCK_SECTIONS):
            return window
    return None


def _change_entry(event: dict[str, Any], windows: list[_Window]) -> dict[str, Any]:
    details = _dict(event.get("details"))
    effect = CHANGE_TYPES[str(event.get("type"))]
    summary = str(event.get("summary") or "")
    protection = _text(details.get("protection")) or _change_protection(details)
    in_force, in_force_by = None, None
    if effect == "weakened":
        in_force = "at once"
    elif effect == "reenabled":
        # Exchange's lag runs both ways: assume it works again now; it does at the latest by canWorkAgainBy.
        in_force_by = _iso(details.get("canWorkAgainBy"))
        in_force = "at once" + (f" (at the latest by {in_force_by})" if in_force_by else "")
    elif effect == "strengthened":
        window = _linked_window(event, protection, windows)
        if window is not None and window.closes:
            in_force, in_force_by = f"by {window.closes}", window.closes
        else:
            in_force = "no enforcement window tracked for it"
    return _entry(_iso(details.get("changedAt")) or _iso(event.get("at")), "change",
                  f"{_VERBS[effect]}: {_change_name(details, summary)}", effect=effect, protection=protection,
                  control=_text(event.get("control")), by=_text(details.get("changedBy")), changes=_changes(details),
                  inForce=in_force, inForceBy=in_force_by, scope=_scope(details.get("scope")),
                  eventId=event.get("id"), detectedAt=_iso(event.get("at")))


def _platform_entries(now: datetime) -> list[dict[str, Any]]:
    return [_entry(format_time(date.at), "platform", f"Microsoft: {date.title} ({date.when})", control=date.control,
                   protection=date.protection, detail=date.detail,
                   status="upcoming" if date.at > now else "past",
                   source={"id": date.source_id, "url": date.source_url}) for date in PLATFORM_DATES]


def _managed_policy_entries(controls: Iterable[Any], now: datetime) -> list[dict[str, Any]]:
    """Per tenant: each report-only Microsoft-managed policy's switch-on date, from control 1's evidence."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for result in controls:
        evidence = _dict(_dict(result).get("evidence"))
        for listing in ("policies", "candidates"):
            for policy in evidence.get(listing) or []:
                policy = _dict(policy)
                when = _iso(policy.get("microsoftEnablesFrom"))
                if not policy.get("microsoftManaged") or when is None:
                    continue
                name = str(policy.get("displayName") or policy.get("id") or "Microsoft-managed policy")
                moment = parse_time_or_none(when)
                seen.setdefault((name, when), _entry(
                    when, "managed_policy",
                    f"Microsoft turns on '{name}' {'on or after' if moment > now else 'at any time since'} this date "
                    "unless it is set to Off", control=_text(_dict(result).get("control")),
                    detail="Report-only until then: Microsoft turns these policies on no less than 45 days after "
                           "they appear, with notice in the message center.",
                    status="upcoming" if moment > now else "past",
                    source={"id": "Microsoft-managed policies", "url": MANAGED_POLICIES_URL}))
    return list(seen.values())


def build_timeline(events: Iterable[Any], state: dict[str, Any] | None = None, *, controls: Iterable[Any] = (),
                   now: datetime, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """{"entries": [...] newest first, at most `limit`; "omitted": how many more there were}. `events` are history
    events (any order; other types are ignored), `state` the tenant's state row (or None), `controls` its current
    results as JSON (control 1's evidence names the Microsoft-managed policies' switch-on dates)."""
    events = [event for event in events if isinstance(event, dict)]
    windows = _windows(events, state)
    entries = [_change_entry(event, windows) for event in events if event.get("type") in CHANGE_TYPES]
    for window in windows:
        entries.extend(_window_entries(window, now))
    entries.extend(_platform_entries(now))
    entries.extend(_managed_policy_entries(controls, now))
    order = {"platform": 0, "managed_policy": 1, "gap": 2, "confirmed": 3, "in_force": 4, "window_opened": 5,
             "change": 6}  # at the same moment: the outcome above its cause (newest first)
    entries.sort(key=lambda entry: (entry["at"] or "", -order.get(entry["kind"], 9)), reverse=True)
    limit = max(0, min(int(limit), MAX_LIMIT))
    return {"entries": entries[:limit], "omitted": max(0, len(entries) - limit)}


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, dict):
        return "{…}"
    return str(value)


def entry_row(entry: dict[str, Any]) -> dict[str, str]:
    """One entry as printable cells: when, what, by, change (before → after), in force, evidence/source."""
    changes = "; ".join(f"{c['field']}: {_show(c['before'])} → {_show(c['after'])}" for c in entry.get("changes") or [])
    scope = entry.get("scope") or {}
    outcome = {"confirmed": "confirmed", "gap": "contradicted (gap)"}.get(str(entry.get("status")), "")
    source = entry.get("source") or {}
    notes = [outcome if entry.get("kind") in ("window_opened", "in_force") else "",
             "every user in scope" if scope.get("everyone") else
             f"{scope.get('count')} user(s) in scope" if scope.get("count") is not None else "", entry.get("detail") or "",
             f"{source.get('id')}: {source.get('url')}" if source else ""]
    return {"when": str(entry.get("at") or "(unknown)"), "kind": str(entry.get("kind")), "what": str(entry["title"]),
            "by": str(entry.get("by") or ""), "change": changes, "inForce": str(entry.get("inForce") or ""),
            "notes": " · ".join(note for note in notes if note)}


def timeline_rows(events: Iterable[Any], state: dict[str, Any] | None = None, *, controls: Iterable[Any] = (),
                  now: datetime, limit: int = DEFAULT_LIMIT) -> list[dict[str, str]]:
    """The timeline as flat rows of text (columns: when, kind, what, by, change, inForce, notes), newest first: for
    tables and the HTML report, e.g. timeline_rows(detail["history"], controls=detail["controls"], now=now) from a
    tenant_detail answer (without the state row, windows come from the history events alone)."""
    return [entry_row(entry) for entry in build_timeline(events, state, controls=controls, now=now,
                                                         limit=limit)["entries"]]
