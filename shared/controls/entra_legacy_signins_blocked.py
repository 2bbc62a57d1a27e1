"""Control 2: once the legacy-auth block has had time to take effect, no legacy sign-in succeeds (controls.md §2).

Control 1 reads configuration; this control reads the evidence. While control 1 passes, successes are tolerated
inside the enforcement window `[E, E + H)` and are a gap after it. While it does not pass, any success is legacy
authentication in use.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from shared.controls import entra_legacy_auth_blocked as blocked_control
from shared.controls.base import ControlMetadata, not_collected, register
from shared.controls.conditional_access import legacy_block
from shared.controls.enforcement_window import EnforcementWindow, describe_duration, offline_block_start
from shared.controls.exchange_objects import ps_quote
from shared.controls.signins import LegacySignIn, read_legacy_signin
from shared.model import (LICENCE_ERROR_CODE, ControlResult, EvaluationContext, Severity, SourceError, Status,
                          TenantSnapshot, format_time)

METADATA = ControlMetadata(
    id="entra_legacy_signins_blocked",
    label="legacy sign-ins",
    title="No legacy sign-in succeeds once the legacy-auth block has taken effect",
    severity=Severity.HIGH,
    # No framework maps sign-in evidence of enforcement (CISA and CIS check configuration only), so none is claimed.
    frameworks=(),
    sources=("graph.signIns", "graph.securityDefaults", "graph.conditionalAccessPolicies"),
    permissions=("AuditLog.Read.All", "Policy.Read.All"),
    remediation=(
        "Find the client in the Entra sign-in logs (Entra admin center > Monitoring & health > Sign-in logs, "
        "filter Client app = the legacy clients and Status = Success), move it to modern authentication (OAuth), "
        "make sure a Conditional Access policy blocks Exchange ActiveSync and Other clients for all users, then "
        "force new tokens so the block bites now:\nSet-User <id> -STSRefreshTokensValidFrom ([DateTime]::UtcNow)"
    ),
)
# The generic text up to the command: a verdict with named users replaces `<id>` with one line per user.
_STEPS = METADATA.remediation.split("\n", 1)[0]

SOURCE = "graph.signIns"
EVIDENCE_LIMIT = 50
TOP_USERS = 20


@dataclass
class SignInTally:
    """The collected sign-ins, sorted into what the verdict needs."""

    total: int = 0
    successes: list[LegacySignIn] = field(default_factory=list)
    blocked_attempts: int = 0  # legacy sign-ins that failed: the block (or a wrong password) stopped them
    unreadable: int = 0  # not an object, or a legacy sign-in whose status.errorCode cannot be read
    not_legacy: int = 0

    def evidence(self) -> dict[str, Any]:
        return {"signInsCollected": self.total, "legacySuccesses": len(self.successes),
                "legacyFailures": self.blocked_attempts, "nonLegacySignIns": self.not_legacy,
                "unreadableSignIns": self.unreadable}


def _tally(signins: list[Any]) -> SignInTally:
    tally = SignInTally(total=len(signins))
    for raw in signins:
        signin = read_legacy_signin(raw)
        if not isinstance(raw, dict) or (signin is not None and signin.succeeded is None):
            tally.unreadable += 1
        elif signin is None:
            tally.not_legacy += 1
        elif signin.succeeded:
            tally.successes.append(signin)
        else:
            tally.blocked_attempts += 1
    return tally


def _grouped(signins: list[LegacySignIn]) -> list[dict[str, Any]]:
    """One row per (user, protocol, ip) with count and first/last time: readable even for thousands of sign-ins."""
    groups: dict[tuple[str, str, str | None], list[LegacySignIn]] = {}
    for signin in signins:
        groups.setdefault((signin.user, signin.protocol, signin.ip_address), []).append(signin)
    rows = []
    for (user, protocol, ip), members in groups.items():
        times = sorted(s.at for s in members if s.at is not None)
        rows.append({"user": user, "protocol": protocol, "ipAddress": ip, "count": len(members),
                     "firstAt": format_time(times[0]) if times else None,
                     "lastAt": format_time(times[-1]) if times else None})
    rows.sort(key=lambda row: row["lastAt"] or "", reverse=True)  # newest first within equal counts (stable)
    rows.sort(key=lambda row: -row["count"])
    return rows[:EVIDENCE_LIMIT]


def _force_new_tokens(signins: list[LegacySignIn]) -> str:
    """One remediation: the steps, then one pasteable Set-User line per busiest user (each command on its own line,
    never the generic `<id>` form beside the real one)."""
    users = Counter(s.user_id or s.user for s in signins if s.user_id or s.user)
    if not users:
        return METADATA.remediation
    lines = [f"Set-User {ps_quote(user)} -STSRefreshTokensValidFrom ([DateTime]::UtcNow)"
             for user, _count in users.most_common(5)]
    more = len(users) - len(lines)
    tail = [f"(and the same for {more} more user(s) in the evidence)"] if more > 0 else []
    return "\n".join([_STEPS, *lines, *tail])


def _read_signins(snapshot: TenantSnapshot) -> list[Any] | None:
    raw = snapshot.get(SOURCE)
    if isinstance(raw, dict) and isinstance(raw.get("value"), list):
        return raw["value"]  # a Graph page pasted as-is
    return raw if isinstance(raw, list) else None


@register(METADATA)
def check(snapshot: TenantSnapshot, context: EvaluationContext = EvaluationContext()) -> ControlResult:
    error = snapshot.error(SOURCE)
    if error is not None and error.code == LICENCE_ERROR_CODE:
        return METADATA.result(
            Status.NOT_APPLICABLE,
            "Sign-in logs are not available: reading them needs Entra ID P1 or P2, which this tenant does not have.",
            {"missingSource": SOURCE, "error": error.to_json()},
        )
    partial = snapshot.partial(SOURCE)
    if not snapshot.collected(SOURCE) and not isinstance(partial, list):
        return not_collected(METADATA, snapshot, SOURCE)
    signins = _read_signins(snapshot) if partial is None else partial
    if signins is None:
        return METADATA.result(
            Status.UNKNOWN,
            f"Cannot evaluate: {SOURCE} is {type(snapshot.get(SOURCE)).__name__}, expected a list of sign-ins.",
            {"unreadableSource": SOURCE},
        )
    tally = _tally(signins)
    blocked = blocked_control.check(snapshot, context)
    verdict = (_judge_enforcement(snapshot, context, blocked, tally) if blocked.status == Status.PASS
               else _judge_usage(blocked, tally))
    return verdict if partial is None or error is None else _on_part_read(verdict, error)


def _on_part_read(verdict: ControlResult, error: SourceError) -> ControlResult:
    """A read cut short: a gap found in what was read is true as it stands, and so is a window still open; a PASS
    could change once the unread stretch is read, so it is not given (fail closed): the verdict names what is
    missing instead."""
    unread = {"unreadFrom": error.unread_from, "unreadUntil": error.unread_until}
    evidence = {**verdict.evidence, "partialRead": unread}
    if verdict.status != Status.PASS:
        return replace(verdict, summary=f"{verdict.summary} (More may follow: {error.message}.)", evidence=evidence)
    return METADATA.result(
        Status.UNKNOWN,
        f"Cannot evaluate yet: {error.message}. Of the {verdict.evidence.get('signInsCollected', 0)} sign-in(s) "
        "read so far, none is a successful legacy sign-in that counts against the block.",
        {**evidence, "missingSource": SOURCE, "error": error.to_json()},
    )


def _block_start(snapshot: TenantSnapshot, context: EvaluationContext, mechanism: Any) -> tuple[datetime | None, str]:
    """E and where it came from: stored state wins; offline, the newest qualifying policy; security defaults and
    undated policies leave no date, so the block counts as effective long ago."""
    if context.block_effective_at is not None:
        return context.block_effective_at, "state"
    if mechanism != "conditionalAccess":
        return None, "securityDefaults"
    policies = snapshot.get("graph.conditionalAccessPolicies")
    start = offline_block_start(legacy_block(policies if isinstance(policies, list) else [], snapshot).qualifying)
    return start, "policyDates" if start else "undatedPolicies"


def _block_label(blocked: ControlResult) -> str:
    """How to name the block in a sentence: security defaults, or the qualifying policies by name."""
    policies = blocked.evidence.get("policies")
    names = [str(p.get("displayName")) for p in policies if isinstance(p, dict)] if isinstance(policies, list) else []
    return f"policy {', '.join(repr(name) for name in names)}" if names else "security defaults"


def _judge_enforcement(snapshot: TenantSnapshot, context: EvaluationContext, blocked: ControlResult,
                       tally: SignInTally) -> ControlResult:
    mechanism = blocked.evidence.get("mechanism")
    started, origin = _block_start(snapshot, context, mechanism)
    window = EnforcementWindow(started, snapshot.enforcement_window_hours)
    if window.started_at is None:
        # Every real sign-in happened after "long ago", even one whose time cannot be read.
        gaps, undated = list(tally.successes), []
    else:
        gaps = [s for s in tally.successes if s.at is not None and window.has_closed(s.at)]
        undated = [s for s in tally.successes if s.at is None]
    in_window = [s for s in tally.successes if s.at is not None and window.contains(s.at)]
    evidence: dict[str, Any] = {"mechanism": mechanism, "windowStartOrigin": origin, **window.to_json(),
                                **tally.evidence(), "successesWithUnreadableTime": len(undated)}

    if gaps:
        latest = max(gaps, key=lambda s: s.at.timestamp() if s.at else float("-inf"))
        when = (f"after the enforcement window closed at {format_time(window.closes_at)}" if window.closes_at
                else "although the block has been in force since before the collected logs begin")
        return METADATA.result(
            Status.FAIL,
            f"Enforcement gap in the legacy-auth block by {_block_label(blocked)}: {len(gaps)} successful legacy "
            f"sign-in(s) {when} (latest: {latest.user} via {latest.protocol}).",
            {**evidence, "gapCount": len(gaps), "gaps": _grouped(gaps)},
            remediation=_force_new_tokens(gaps),
        )

    opened, closes = window.started_at, window.closes_at
    if opened is not None and closes is not None and not window.has_closed(snapshot.collected_at):
        # Also covers a collection made before E (a clock behind the policy change): the block has not bitten yet.
        left = window.time_left(snapshot.collected_at)
        evidence.update(secondsLeft=int(left.total_seconds()), successesInWindow=len(in_window),
                        successesInWindowDetail=_grouped(in_window))
        return METADATA.result(
            Status.PENDING,
            f"The legacy-auth block by {_block_label(blocked)}, effective since {format_time(opened)}, is still "
            f"inside its {window.hours:g}-hour "
            f"enforcement window ({describe_duration(left)} left, closes {format_time(closes)}); "
            f"{len(in_window)} successful legacy sign-in(s) so far.",
            evidence,
        )

    evidence.update(successesInWindow=len(in_window))
    since = (f"after its enforcement window closed at {format_time(closes)}" if closes
             else f"among the {tally.total} collected sign-in(s) (in force since before the logs begin)")
    note = (f"; {len(undated)} successful legacy sign-in(s) with an unreadable time could not be placed"
            if undated else "")
    return METADATA.result(
        Status.PASS,
        f"The legacy-auth block by {_block_label(blocked)} holds: no legacy sign-in succeeded {since}; "
        f"{tally.blocked_attempts} legacy attempt(s) failed{note}.",
        evidence,
    )


def _judge_usage(blocked: ControlResult, tally: SignInTally) -> ControlResult:
    evidence: dict[str, Any] = {"legacyAuthBlocked": str(blocked.status), **tally.evidence()}
    if not tally.successes:
        return METADATA.result(
            Status.PASS,
            f"No successful legacy sign-in in the {tally.total} collected sign-in(s), although legacy authentication "
            f"is not known to be blocked (entra_legacy_auth_blocked is {blocked.status}).",
            evidence,
        )
    protocols = Counter(s.protocol for s in tally.successes)
    users = Counter(s.user for s in tally.successes)
    evidence.update(
        byProtocol=dict(protocols.most_common()),
        distinctUsers=len(users),
        topUsers=[{"user": user, "count": count} for user, count in users.most_common(TOP_USERS)],
        signIns=_grouped(tally.successes),
    )
    top_protocols = ", ".join(f"{name} {count}" for name, count in protocols.most_common(3))
    return METADATA.result(
        Status.FAIL,
        f"Legacy authentication is in use and not blocked: {len(tally.successes)} successful legacy sign-in(s) by "
        f"{len(users)} user(s) ({top_protocols}; top user {users.most_common(1)[0][0]}).",
        evidence,
        remediation=_force_new_tokens(tally.successes),
    )
