"""compare: previous state + baseline + a new snapshot → the new state and the events a person must hear about.

Pure (no I/O; the only time is the snapshot's own collectedAt and the `now` handed in). The same function serves the
queue worker and `authwatch replay`, so what replay prints is what the timer path would have alerted on.

Rules that keep it quiet and exact:
- a snapshot not newer than the state is stale and changes nothing (a retry or a replayed file raises nothing new);
- events fire on transitions only, never per cycle; a flapping setting gives one event per real change;
- a tenant that cannot be reached at all raises `tenant.unreachable` once and keeps its last verdicts, so coming
  back raises `tenant.recovered` and no storm of control events.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from shared.controls import controls
from shared.controls.conditional_access import legacy_block
from shared.controls.enforcement_window import EnforcementWindow, describe_duration, offline_block_start
from shared.controls.evaluate import evaluate
from shared.controls.exceptions import accepted, exceptions_covering, verdict_before_exceptions
from shared.model import (
    LICENCE_ERROR_CODE,
    ControlResult,
    EvaluationContext,
    SourceError,
    Status,
    TenantSnapshot,
    format_time,
    parse_time_or_none,
)
from shared.state import events as ev
from shared.state.attribution import find_author, policy_modified_in
from shared.state.config import Config, control_config, merge
from shared.state.drift import NEUTRAL, REENABLED, STRENGTHENED, WEAKENED, Change, diff
from shared.state.events import Event
from shared.state.exception_events import exception_events
from shared.state.windows import advance

BLOCK_CONTROL = "entra_legacy_auth_blocked"
SIGNINS_CONTROL = "entra_legacy_signins_blocked"
STATE_VERSION = 1
_SEVERITY = {control.id: str(control.metadata.severity) for control in controls()}


@dataclass
class Comparison:
    state: dict[str, Any]
    results: list[ControlResult]
    events: list[Event]  # the contract's events, to history and to alerting
    notes: list[Event] = field(default_factory=list)  # neutral changes: history only, alert nobody
    baseline: Config | None = None  # set when this comparison captured the tenant's first baseline
    stale: bool = False
    clock_ahead: timedelta | None = None  # the stored state's time was this far in the future: not trusted


# Two instances' clocks (or the host's and a snapshot file's) may disagree by a little; a stored lastCollectedAt up
# to this far ahead still makes an older snapshot stale (the safe reading of a retry). Further ahead, the stored
# time is wrong, not a newer evaluation: trusting it would freeze the tenant (no verdicts, no events) until the
# wall clock caught up, so it is ignored, said, and replaced.
CLOCK_SKEW_TOLERANCE = timedelta(minutes=5)


# Sign-ins are collected incrementally (since the last success); control 2 judges the last EVIDENCE_HOURS of them,
# so the legacy ones already seen ride along in the state (compact, capped) and are merged back in each cycle.
EVIDENCE_HOURS = 48
MAX_REMEMBERED_SIGNINS = 500
# Read from the watermark: when either fails (on any page), the stretch since the last complete read is read again.
INCREMENTAL_SOURCES = ("graph.signIns", "graph.directoryAudits")
_SIGNIN_FIELDS = ("id", "createdDateTime", "userId", "userPrincipalName", "clientAppUsed", "ipAddress", "status")


def with_recent_signins(snapshot: TenantSnapshot, previous: dict[str, Any] | None) -> tuple[TenantSnapshot, list]:
    """The snapshot with the remembered legacy sign-ins of the evidence window merged in (deduplicated by id), and
    the list to remember next time. A snapshot without sign-ins (not collected) is left as it is."""
    current = snapshot.get("graph.signIns")
    if current is None:
        current = snapshot.partial("graph.signIns")  # cut short: what was read still counts
    remembered = (previous or {}).get("recentLegacySignIns") or []
    if not isinstance(current, list):
        return snapshot, remembered
    horizon = snapshot.collected_at - timedelta(hours=EVIDENCE_HOURS)
    merged: dict[str, dict[str, Any]] = {}
    for signin in [*remembered, *current]:
        if not isinstance(signin, dict):
            continue
        moment = parse_time_or_none(signin.get("createdDateTime"))
        if moment is not None and moment < horizon:
            continue
        key = str(signin.get("id") or f"{signin.get('createdDateTime')}|{signin.get('userPrincipalName')}")
        merged[key] = {field: signin.get(field) for field in _SIGNIN_FIELDS}
    signins = sorted(merged.values(), key=lambda s: str(s.get("createdDateTime")), reverse=True)
    merged_snapshot = replace(snapshot, graph={**snapshot.graph, "signIns": signins})
    return merged_snapshot, signins[:MAX_REMEMBERED_SIGNINS]


def _time(value: Any) -> datetime | None:
    return parse_time_or_none(value) if value else None


def _read_through(previous: dict[str, Any] | None, snapshot: TenantSnapshot) -> str | None:
    """Where sign-ins and audits were last read in full (the watermark's base; None: never)."""
    # A read cut short by its page budget read the newest stretch in full; the part it did not reach is owed
    # separately (unread_signins), so it does not hold the watermark back.
    failed = [snapshot.errors[source] for source in INCREMENTAL_SOURCES
              if source in snapshot.errors and not snapshot.errors[source].partial]
    if all(error.code == LICENCE_ERROR_CODE for error in failed):
        return format_time(snapshot.collected_at)  # read in full, or nothing to read without the licence
    kept = _time((previous or {}).get("readThrough", (previous or {}).get("lastSuccessAt")))
    # Evidence older than EVIDENCE_HOURS no longer counts: a long outage never makes a read reach further back.
    return format_time(max(kept, snapshot.collected_at - timedelta(hours=EVIDENCE_HOURS))) if kept else None


def _policies_by_id(snapshot: TenantSnapshot) -> dict[str, dict[str, Any]]:
    policies = snapshot.get("graph.conditionalAccessPolicies")
    return {str(p.get("id")): p for p in policies if isinstance(p, dict)} if isinstance(policies, list) else {}


# How a person names each configuration item in an alert.
_ITEM_NAMES = {
    "smtpAuthEnabledMailboxes": "Exchange mailboxes",
    "transport.SmtpClientAuthenticationDisabled": "Exchange transport config",
    "securityDefaults.isEnabled": "Security defaults",
    "organization.OAuth2ClientProfileEnabled": "Exchange organization config",
    "sharepoint.isLegacyAuthProtocolsEnabled": "SharePoint settings",
    "defaultPolicy": "Exchange default authentication policy",
    "popEnabledMailboxes": "Exchange mailboxes (POP)",
    "imapEnabledMailboxes": "Exchange mailboxes (IMAP)",
}


class _Cycle:
    """One comparison's working set, so each rule below reads as a short method."""

    def __init__(self, previous: dict[str, Any] | None, baseline: Config | None, snapshot: TenantSnapshot) -> None:
        self.previous = previous
        self.baseline = baseline
        self.snapshot = snapshot
        self.at = snapshot.collected_at
        self.since = _time(previous.get("lastCollectedAt")) if previous else None
        self.events: list[Event] = []
        self.notes: list[Event] = []

    def event(self, kind: str, control: str | None, severity: str, summary: str, details: dict[str, Any],
              subject: str = "") -> None:
        target = self.notes if kind == ev.CONFIG_CHANGED else self.events
        target.append(Event(self.at, self.snapshot.tenant_id, kind, control, severity, summary, details, subject))

    # --- enforcement window ---------------------------------------------------------------------------------
    def block_start(self, results: list[ControlResult]) -> tuple[datetime | None, str]:
        """When the block that passes control 1 now became effective, as best known (controls.md §2)."""
        policies = self.snapshot.get("graph.conditionalAccessPolicies")
        qualifying = legacy_block(policies, self.snapshot).qualifying if isinstance(policies, list) else ()
        if self.previous is None or not self.previous.get("lastSuccessAt"):
            # First sight of the tenant (or first since it became readable): we did not observe the change, so
            # take the policies' own dates.
            return offline_block_start(qualifying), "policy dates (first observation)"
        by_id = _policies_by_id(self.snapshot)
        inside = [moment for policy in qualifying
                  if (moment := policy_modified_in(by_id.get(policy.id), self.since, self.at)) is not None]
        if inside:
            return max(inside), "policy modifiedDateTime inside the observation interval"
        return self.at, "observation time"

    def enforcement(self, results: list[ControlResult]) -> tuple[dict[str, Any] | None, list[ControlResult]]:
        # A block accepted by exception is not a block in force: control 2 reads control 1 before exceptions too.
        status = {r.control: verdict_before_exceptions(r) for r in results}
        kept = (self.previous or {}).get("enforcement")
        if status.get(BLOCK_CONTROL) == Status.UNKNOWN:
            return kept, results  # cannot tell this time: the window we track stays as it was
        if status.get(BLOCK_CONTROL) != Status.PASS:
            return None, results
        if kept is not None:
            return kept, results
        started, origin = self.block_start(results)
        hours = self.snapshot.enforcement_window_hours
        window = EnforcementWindow(started, hours)
        # Control 2 must judge against the start we just fixed, not its offline guess.
        results = evaluate(self.snapshot, EvaluationContext(block_effective_at=started)) if started else results
        tracked = {"startedAt": format_time(started) if started else None, "hours": hours, "origin": origin,
                   "confirmed": window.has_closed(self.at), "gapReported": False}
        if started is not None and not window.has_closed(self.at):
            left = window.time_left(self.at)
            self.event(ev.WINDOW_STARTED, SIGNINS_CONTROL, "low",
                       f"Legacy authentication is now blocked in configuration; enforcement can take up to "
                       f"{hours:g} hours: the window closes {format_time(window.closes_at)} ({describe_duration(left)} "
                       "left).", {**window.to_json(), "origin": origin, "secondsLeft": int(left.total_seconds())})
        return tracked, results

    def enforcement_outcome(self, tracked: dict[str, Any] | None, results: list[ControlResult]) -> set[str]:
        """Gap or confirmation, each at most once per window. Returns controls whose own event it replaces."""
        if not tracked or tracked.get("startedAt") is None:
            return set()
        signins = next(r for r in results if r.control == SIGNINS_CONTROL)
        window = EnforcementWindow(_time(tracked["startedAt"]), float(tracked.get("hours", 24)))
        if signins.status == Status.FAIL and "gapCount" in signins.evidence:
            if not tracked.get("gapReported"):
                tracked["gapReported"] = True
                self.event(ev.ENFORCEMENT_GAP, SIGNINS_CONTROL, "high", signins.summary,
                           {**window.to_json(), "gapCount": signins.evidence.get("gapCount"),
                            "gaps": signins.evidence.get("gaps"), "remediation": signins.remediation})
            return {SIGNINS_CONTROL}
        if (window.has_closed(self.at) and not tracked.get("confirmed") and not tracked.get("gapReported")
                and signins.status == Status.PASS):
            tracked["confirmed"] = True
            self.event(ev.WINDOW_CONFIRMED, SIGNINS_CONTROL, "low",
                       f"Enforcement confirmed: no successful legacy sign-in since the window closed at "
                       f"{format_time(window.closes_at)}.", window.to_json())
        return set()

    # --- control transitions --------------------------------------------------------------------------------
    def transitions(self, results: list[ControlResult], replaced: set[str]) -> dict[str, Any]:
        before = (self.previous or {}).get("controls", {})
        after: dict[str, Any] = {}
        for result in results:
            old = before.get(result.control, {}).get("status")
            new = str(result.status)
            after[result.control] = {"status": new, "since": before.get(result.control, {}).get("since")
                                     if old == new else format_time(self.at)}
            if old == new or result.control in replaced:
                continue
            details = {"before": old, "after": new, "evidence": result.evidence, "remediation": result.remediation}
            if new == Status.FAIL:
                self.event(ev.CONTROL_FAILED, result.control, str(result.severity), result.summary, details)
            elif new == Status.PASS and old == Status.FAIL:
                # Accepted by exception is not fixed, but the open alert is answered: it closes, saying by what
                # (its summary starts "Accepted by exception …"), rather than staying open for as long as it lasts.
                if accepted(result):
                    details["acceptedByException"] = result.evidence.get("exception", {}).get("ids", [])
                self.event(ev.CONTROL_RECOVERED, result.control, str(result.severity), result.summary, details)
            elif new == Status.UNKNOWN and old is not None and old != Status.UNKNOWN:
                self.event(ev.CONTROL_UNKNOWN, result.control, str(result.severity), result.summary, details)
        return after

    # --- drift ----------------------------------------------------------------------------------------------
    def author(self, change: Change) -> dict[str, Any]:
        if change.section == "conditionalAccess":
            policy_id = change.key.removeprefix("ca:")
            found = find_author(self.snapshot, target_id=policy_id, activity_words=(), since=self.since)
            if not found:
                modified = policy_modified_in(_policies_by_id(self.snapshot).get(policy_id), self.since, self.at)
                found = {"changedBy": None, "changedAt": format_time(modified)} if modified else {}
            return found
        if change.section == "securityDefaults":
            return find_author(self.snapshot, target_id=None, activity_words=("security defaults",), since=self.since)
        return {}

    def changes(self, current: Config) -> list[Change]:
        """What changed since the last cycle (or, on first sight, against the approved baseline)."""
        reference = self.previous.get("config") if self.previous else self.baseline
        return diff(reference, current) if reference else []

    def drift(self, changes: list[Change], current: Config, results: list[ControlResult]) -> None:
        blocked = verdict_before_exceptions(next(r for r in results if r.control == BLOCK_CONTROL)) == Status.PASS
        for change in changes:
            effect = change.effect
            if change.key == "securityDefaults.isEnabled" and effect == WEAKENED and not blocked:
                effect = REENABLED  # security defaults off and no CA block: legacy auth is open again
            elif change.key == "securityDefaults.isEnabled" and effect == WEAKENED:
                effect = NEUTRAL  # a CA block still holds legacy auth shut
            self.drift_event(change, effect, current)

    def drift_event(self, change: Change, effect: str, current: Config) -> None:
        listed = "; ".join(field.describe() for field in change.fields)
        name = _ITEM_NAMES.get(change.key, change.key.removeprefix("ca:").replace("authPolicy:", "authentication "
                                                                                             "policy ")
                               .replace("assigned:", "the users of authentication policy "))
        if change.section == "conditionalAccess":
            policy = (current.get("conditionalAccess", {}).get(change.key) or {}).get("displayName")
            old = ((self.previous or {}).get("config", {}).get("conditionalAccess", {}).get(change.key) or {})
            name = f"Conditional Access policy '{policy or old.get('displayName') or name}'"
        baseline_value = (self.baseline or {}).get(change.section, {}).get(change.key)
        details = {"section": change.section, "item": change.key,
                   "changes": [{"field": f.field, "before": f.before, "after": f.after, "effect": f.effect,
                                "note": f.note, **({"objects": list(f.objects)} if f.objects else {})}
                               for f in change.fields],
                   "matchesBaseline": baseline_value == current.get(change.section, {}).get(change.key),
                   **self.author(change)}
        if effect == REENABLED:
            # The same documented lag runs the other way: clients may work again as soon as the change propagates,
            # and at the latest by then (state/windows.py).
            details["canWorkAgainBy"] = format_time(self.at + timedelta(hours=self.snapshot.enforcement_window_hours))
        accepted_by = exceptions_covering(self.snapshot, change.control, [o for f in change.fields for o in f.objects])
        if accepted_by and effect in (REENABLED, WEAKENED):
            details["coveredByException"] = accepted_by  # still said (it is a change), but as one accepted
        who = f" by {details['changedBy']}" if details.get("changedBy") else ""
        kind, severity, verb = {
            REENABLED: (ev.BASIC_AUTH_REENABLED, "high", "Basic authentication re-enabled"),
            WEAKENED: (ev.DRIFT_WEAKENED, _SEVERITY.get(change.control, "medium"), "Protection weakened"),
            STRENGTHENED: (ev.DRIFT_STRENGTHENED, "low", "Protection strengthened (consider accepting a new "
                                                         "baseline)"),
            NEUTRAL: (ev.CONFIG_CHANGED, "low", "Configuration changed"),
        }[effect]
        when = (f" Clients may authenticate with a password again as soon as it propagates, within "
                f"{self.snapshot.enforcement_window_hours:g} h (by {details['canWorkAgainBy']}).") \
            if effect == REENABLED else ""
        accepted = f" Accepted by exception {', '.join(details['coveredByException'])}." \
            if details.get("coveredByException") else ""
        self.event(kind, change.control, severity, f"{verb}{who}: {name}: {listed}.{when}{accepted}", details,
                   subject=change.key)


def _telling_error(snapshot: TenantSnapshot) -> SourceError:
    """The error that best says why a tenant cannot be read: a named code (AADSTS…, InvalidAuthenticationToken) over
    a bare HTTP status, Graph's over Exchange's (whose error bodies say less)."""
    return min(snapshot.errors.items(), key=lambda item: (item[1].code.upper().startswith("HTTP"),
                                                           not item[0].startswith("graph."), item[0]))[1]


def _unreachable(previous: dict[str, Any] | None, snapshot: TenantSnapshot, results: list[ControlResult],
                 cycle: _Cycle) -> dict[str, Any]:
    error = _telling_error(snapshot)
    if not (previous or {}).get("unreachable"):
        cycle.event(ev.TENANT_UNREACHABLE, None, "high",
                    f"authwatch cannot read this tenant: {error.code}: {error.message}",
                    {"errors": {source: e.to_json() for source, e in snapshot.errors.items()}})
    state = dict(previous or {"version": STATE_VERSION, "tenantId": snapshot.tenant_id, "controls": {},
                              "config": {}, "enforcement": None})
    # The last known verdicts stay: when the tenant comes back, only real changes raise events.
    state.update(lastCollectedAt=format_time(snapshot.collected_at), unreachable=True,
                 consecutiveFailures=int(state.get("consecutiveFailures", 0)) + 1, lastError=error.to_json())
    return state


def _exceptions(previous: dict[str, Any] | None, snapshot: TenantSnapshot, results: list[ControlResult],
                cycle: _Cycle) -> dict[str, Any]:
    """Reminders and expiries of the tenant's exceptions; the state key only while something was said (a tenant
    without exceptions keeps the state it always had)."""
    raised, notified = exception_events(snapshot, results, (previous or {}).get("exceptionNotices"))
    cycle.events.extend(raised)
    return {"exceptionNotices": notified} if notified else {}


def compare(previous: dict[str, Any] | None, baseline: Config | None, snapshot: TenantSnapshot, *,
            now: datetime) -> Comparison:
    """The heart of authwatch. `previous` is the stored state (None: never seen), `baseline` the approved config."""
    last = _time(previous.get("lastCollectedAt")) if previous else None
    ahead = last - now if last is not None and last > now + CLOCK_SKEW_TOLERANCE else None
    if previous is not None and last is not None and ahead is None and snapshot.collected_at <= last:
        return Comparison(state=previous, results=[], events=[], stale=True)
    if ahead is not None:
        # Times derived from the future one cannot be trusted either: the next read of sign-ins starts afresh
        # (the whole evidence window) instead of after a watermark nobody reached.
        previous = {**(previous or {}), "readThrough": None, "lastCollectedAt": None}

    if not snapshot.unreachable:
        snapshot, remembered = with_recent_signins(snapshot, previous)
    cycle = _Cycle(previous, baseline, snapshot)
    tracked_start = _time(((previous or {}).get("enforcement") or {}).get("startedAt"))
    results = evaluate(snapshot, EvaluationContext(block_effective_at=tracked_start))
    if snapshot.unreachable:
        state = _unreachable(previous, snapshot, results, cycle)
        state.pop("exceptionNotices", None)  # only what the tenant's settings still hold is remembered
        state.update(_exceptions(previous, snapshot, results, cycle))  # an expiry does not wait for Microsoft
        return Comparison(state=state, results=results, events=cycle.events, clock_ahead=ahead)

    if (previous or {}).get("unreachable"):
        cycle.event(ev.TENANT_RECOVERED, None, "low", "authwatch can read this tenant again.",
                    {"unreachableSince": (previous or {}).get("lastSuccessAt"),
                     "failedCycles": (previous or {}).get("consecutiveFailures", 0)})
    tracked, results = cycle.enforcement(results)
    replaced = cycle.enforcement_outcome(tracked, results)
    controls_state = cycle.transitions(results, replaced)
    current = control_config(snapshot)
    changes = cycle.changes(current)
    cycle.drift(changes, current, results)
    # Exchange's windows open on a change seen between two cycles, never on first sight (state/windows.py).
    seen = (previous or {}).get("config") or {}
    windows = advance((previous or {}).get("windows") or [], changes if seen else [], seen, current, snapshot,
                      at=snapshot.collected_at, hours=snapshot.enforcement_window_hours, emit=cycle.event)
    notified = _exceptions(previous, snapshot, results, cycle)
    new_baseline = None if baseline is not None else current
    state = {
        "version": STATE_VERSION,
        "tenantId": snapshot.tenant_id,
        "lastCollectedAt": format_time(snapshot.collected_at),
        "lastSuccessAt": format_time(snapshot.collected_at),
        # After a clock ran ahead, this cycle read sign-ins from a watermark in the future: nothing is read through.
        "readThrough": None if ahead is not None else _read_through(previous, snapshot),
        "evaluatedAt": format_time(now),
        "unreachable": False,
        "consecutiveFailures": 0,
        "lastError": None,
        "controls": controls_state,
        "config": merge((previous or {}).get("config"), current),
        "enforcement": tracked,
        "windows": windows,
        "partialErrors": {source: e.to_json() for source, e in snapshot.errors.items()},
        "recentLegacySignIns": remembered,
        **_unread_signins(snapshot),
        **notified,
    }
    return Comparison(state=state, results=results, events=cycle.events, notes=cycle.notes, baseline=new_baseline,
                      clock_ahead=ahead)


# Entra documents typical sign-in log latency (minutes) but no upper bound on how late a sign-in reaches the log
# (Microsoft Entra monitoring and health FAQ, https://learn.microsoft.com/en-us/entra/identity/monitoring-health/reports-faq),
# so each read goes back this far before the last complete read. Sign-ins are merged by id (with_recent_signins) and gaps are raised once per
# window, so the overlap never counts a sign-in twice. AUTHWATCH_SIGNIN_OVERLAP_HOURS changes it.
DEFAULT_SIGNIN_OVERLAP = timedelta(hours=3)


def _unread_signins(snapshot: TenantSnapshot) -> dict[str, Any]:
    """The stretch of sign-ins a cut-short read did not reach, as far as it still matters (the evidence window)."""
    error = snapshot.errors.get("graph.signIns")
    start, end = (_time(error.unread_from), _time(error.unread_until)) if error and error.partial else (None, None)
    horizon = snapshot.collected_at - timedelta(hours=EVIDENCE_HOURS)
    if start is None or end is None or end <= horizon:
        return {}
    return {"unreadSignIns": {"from": format_time(max(start, horizon)), "until": format_time(end)}}


def unread_signins(state: dict[str, Any] | None) -> tuple[datetime, datetime] | None:
    """The stretch of sign-ins the next collection still owes (read after the new ones), or None."""
    stretch = (state or {}).get("unreadSignIns")
    if not isinstance(stretch, dict):
        return None
    start, end = _time(stretch.get("from")), _time(stretch.get("until"))
    return (start, end) if start and end and start < end else None


def watermark(state: dict[str, Any] | None, overlap: timedelta = DEFAULT_SIGNIN_OVERLAP) -> datetime | None:
    """Where the next collection of sign-ins and audits starts: the last success that read them in full, minus the
    overlap, so an item logged late is still seen (and the once-per-window flags keep it from raising a second
    event). A cycle whose sign-ins or audits failed does not move it: the next one reads that stretch again."""
    state = state or {}
    last = _time(state.get("readThrough", state.get("lastSuccessAt")))
    return last - overlap if last else None
