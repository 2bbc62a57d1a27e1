"""What a live exception does to a verdict: a FAIL it fully covers shows as PASS *with* the exception (never dropped),
a FAIL it covers in part stays FAIL naming what is not covered. Pure: results, records and a time in, results out.

The exception is monitored against what it accepted: the objects a FAIL is about are read again every evaluation
(shared/controls/exception_scope.py), so a second mailbox, a wider exclusion or one more policy is a finding of its
own. Only FAIL is ever changed: UNKNOWN, PENDING, NOT_APPLICABLE and PASS stay exactly as the control answered, so an
exception never turns "could not tell" into pass. settings.approvedExclusions are read by the Conditional Access
controls as before; exceptions come on top.

A result an exception touched carries `evidence["exception"]`:
- accepted (status PASS): {"ids", "owner", "expiresAt", "wholeControl", "covered": {kind: [ids]},
  "acceptedStatus": "fail", "acceptedSummary": the control's own summary, "records": [{id, owner, reason, createdBy,
  expiresAt}]}; the summary starts "Accepted by exception <id> (owner …, until YYYY-MM-DD): ".
- not (fully) covered (status FAIL): {"ids", "owner", "expiresAt", "covered", "notCovered": {kind: [ids]}} or, when
  the failing objects cannot be told, {"ids", "owner", "expiresAt", "notCoveredBecause": why}; the summary goes on to
  say which objects are not covered, or why nothing is.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Iterable

from shared.controls import CATALOGUE
from shared.controls.exception_scope import Coverage, coverage, key
from shared.controls.exchange_objects import name_some
from shared.exceptions import (MAX_EXCEPTIONS, REMINDER_DAYS_RANGE, SCOPE_KINDS, ExceptionError, ExceptionRecord,
                               parse_exception, parse_exceptions)
from shared.model import ControlResult, SnapshotError, Status, TenantSnapshot, format_time

EVIDENCE_KEY = "exception"
# How a sentence counts each kind of object: (one, many).
_NOUNS = {"users": ("user", "users"), "groups": ("group", "groups"), "roles": ("role", "roles"),
          "applications": ("application", "applications"), "locations": ("named location", "named locations"),
          "guestOrExternalUserTypes": ("guest or external user type", "guest or external user types"),
          "mailboxes": ("mailbox", "mailboxes"),
          "authenticationPolicies": ("authentication policy", "authentication policies")}


# ---------------------------------------------------------------- reading the records


def snapshot_exceptions(snapshot: TenantSnapshot) -> list[ExceptionRecord]:
    """The usable records of `settings.exceptions`, read leniently: a record that cannot be parsed (or repeats an
    id already read) is left out, so it covers nothing (fail closed) and evaluation never stops on it. The CLI
    rejects such input instead (check_snapshot_exceptions)."""
    raw = snapshot.settings.get("exceptions")
    if not isinstance(raw, list):
        return []
    records: dict[str, ExceptionRecord] = {}
    for index, item in enumerate(raw[:MAX_EXCEPTIONS]):
        try:
            record = parse_exception(item, f"settings.exceptions[{index}]")
        except ExceptionError:
            continue
        records.setdefault(record.id, record)
    return list(records.values())


def check_snapshot_exceptions(snapshot: TenantSnapshot) -> None:
    """Bad input for `authwatch evaluate` / `replay`: SnapshotError naming the field (exit 2), as the envelope's own
    checks do. Exceptions naming a control authwatch does not have are not an error here (see unknown_controls)."""
    try:
        parse_exceptions(snapshot.settings.get("exceptions"), "settings.exceptions")
    except ExceptionError as error:
        raise SnapshotError(str(error)) from None
    days = snapshot.settings.get("exceptionReminderDays")
    low, high = REMINDER_DAYS_RANGE
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not low <= days <= high):
        raise SnapshotError(f"settings.exceptionReminderDays: expected whole days between {low} and {high}, "
                            f"got {days!r}")


def unknown_controls(exceptions: Iterable[ExceptionRecord]) -> list[ExceptionRecord]:
    """Records naming a control id authwatch does not have: they cover nothing, and a person should hear so."""
    return [record for record in exceptions if record.control not in CATALOGUE]


def accepted(result: ControlResult) -> bool:
    """A PASS that is a FAIL accepted by exception, not a fixed one."""
    detail = result.evidence.get(EVIDENCE_KEY) if isinstance(result.evidence, dict) else None
    return result.status == Status.PASS and isinstance(detail, dict) and "acceptedStatus" in detail


def verdict_before_exceptions(result: ControlResult) -> Status:
    """What the control itself answered: FAIL for one accepted by exception. For logic that must not treat an
    accepted deviation as a protection in force (the enforcement window, security-defaults drift)."""
    return Status.FAIL if accepted(result) else result.status


# ---------------------------------------------------------------- the overlay


def apply_exceptions(results: list[ControlResult], exceptions: Iterable[ExceptionRecord],
                     now: datetime) -> list[ControlResult]:
    """Each result with the live exceptions of its control applied (see the module doc). Deterministic: records are
    taken in (expiresAt, id) order whatever order they arrive in."""
    by_control: dict[str, list[ExceptionRecord]] = {}
    for record in sorted((r for r in exceptions if r.live(now)), key=lambda r: (r.expires_at, r.id)):
        by_control.setdefault(record.control, []).append(record)
    return [_overlay(result, by_control.get(result.control, [])) for result in results]


def _overlay(result: ControlResult, records: list[ExceptionRecord]) -> ControlResult:
    if result.status != Status.FAIL or not records:
        return result
    whole = [record for record in records if record.covers_whole_control()]
    if whole:
        return _accept(result, whole, Coverage(), whole_control=True)
    scope: dict[str, set[str]] = {}
    for record in records:
        for kind, ids in record.scope.items():
            scope.setdefault(kind, set()).update(key(item) for item in ids)
    found = coverage(result, {kind: frozenset(ids) for kind, ids in scope.items()})
    if found.complete:
        used = [record for record in records
                if any((kind, key(item)) in found.matched for kind, ids in record.scope.items() for item in ids)]
        return _accept(result, used or records, found, whole_control=False)
    return _not_covered(result, records, found)


def _who(records: list[ExceptionRecord]) -> dict[str, Any]:
    """ids, owner(s) and the earliest expiry: when the finding comes back (at least in part)."""
    return {"ids": [record.id for record in records],
            "owner": ", ".join(dict.fromkeys(record.owner for record in records)),
            "expiresAt": format_time(min(record.expires_at for record in records))}


def _named(records: list[ExceptionRecord]) -> str:
    return ", ".join(f"{r.id} (owner {r.owner}, until {r.expires_at:%Y-%m-%d})" for r in records)


def _accept(result: ControlResult, records: list[ExceptionRecord], found: Coverage, *,
            whole_control: bool) -> ControlResult:
    plural = "s" if len(records) > 1 else ""
    detail = {**_who(records), "wholeControl": whole_control, "covered": _ordered(found.covered),
              "acceptedStatus": str(result.status), "acceptedSummary": result.summary,
              "records": [{"id": r.id, "owner": r.owner, "reason": r.reason, "createdBy": r.created_by,
                           "expiresAt": format_time(r.expires_at)} for r in records]}
    return replace(result, status=Status.PASS,
                   summary=f"Accepted by exception{plural} {_named(records)}: {result.summary}",
                   evidence={**result.evidence, EVIDENCE_KEY: detail})


def _not_covered(result: ControlResult, records: list[ExceptionRecord], found: Coverage) -> ControlResult:
    ids = ", ".join(record.id for record in records)
    plural = "s" if len(records) > 1 else ""
    detail: dict[str, Any] = _who(records)
    if found.unclear is not None:
        detail["notCoveredBecause"] = found.unclear
        tail = f"Exception{plural} {ids} cover{'' if plural else 's'} none of it: {found.unclear}."
    else:
        detail.update(covered=_ordered(found.covered), notCovered=_ordered(found.not_covered))
        parts = []
        for kind, labels in _ordered(found.not_covered).items():
            one, many = _NOUNS.get(kind, (kind, kind))
            count = len(labels)
            parts.append(f"{count} {one if count == 1 else many} {'is' if count == 1 else 'are'} not covered by "
                         f"exception{plural} {ids}: {name_some(labels, count)}")
        tail = "; ".join(parts) + "."
    summary = result.summary if result.summary.rstrip().endswith((".", "!", "?")) else f"{result.summary}."
    return replace(result, summary=f"{summary} {tail}", evidence={**result.evidence, EVIDENCE_KEY: detail})


def _ordered(by_kind: dict[str, list[str]]) -> dict[str, list[str]]:
    """Kinds in SCOPE_KINDS order, so the same input always gives the same JSON."""
    return {kind: list(by_kind[kind]) for kind in SCOPE_KINDS if by_kind.get(kind)}


def exceptions_covering(snapshot: TenantSnapshot, control: str, objects: Iterable[str],
                        kind: str = "mailboxes") -> list[str]:
    """The live exceptions that accept a configuration change outright: a whole-control one, or ones whose scopes
    (of `kind`) name every object the change turned on. [] when any object is left out, or nothing is live."""
    live = [r for r in snapshot_exceptions(snapshot) if r.control == control and r.live(snapshot.collected_at)]
    whole = [r.id for r in live if r.covers_whole_control()]
    if whole:
        return whole
    names = {str(name).lower() for name in objects}
    ids: list[str] = []
    covered: set[str] = set()
    for record in live:
        hit = names & {item.lower() for item in record.scope.get(kind, ())}
        if hit:
            ids.append(record.id)
            covered |= hit
    return ids if names and covered >= names else []
