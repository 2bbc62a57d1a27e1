"""The enforcement window: a new legacy-auth block may take up to H hours (default 24) to bite (controls.md §2).

The window is `[E, E + H)`. A successful legacy sign-in at or after `E + H` is an enforcement gap; until then,
successes are expected and the verdict is pending. Pure arithmetic, no clock: every "now" is passed in, so the
same code serves control 2 (now = the snapshot's collectedAt) and the compare/state code.

`started_at=None` means "long ago": the block has been in force since before anything we can see (security defaults,
or policies without dates). Such a window has already closed at every moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from shared.controls.conditional_access import PolicyAssessment
from shared.model import format_time

# How long a new block may take to bite before legacy sign-ins count against it: Exchange documents "up to 24 hours"
# for authentication policy changes (https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/disable-basic-authentication-in-exchange-online);
# Microsoft publishes no figure for Conditional Access, where tokens issued before the block live on, so the same
# bound is authwatch's (per tenant: settings.enforcementWindowHours).
DEFAULT_WINDOW_HOURS = 24.0


def _utc(moment: datetime) -> datetime:
    # Naive datetimes are taken as UTC, as everywhere in authwatch; comparing naive with aware would raise.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class EnforcementWindow:
    started_at: datetime | None  # E; None = long ago
    hours: float = DEFAULT_WINDOW_HOURS

    def __post_init__(self) -> None:
        if self.started_at is not None:
            object.__setattr__(self, "started_at", _utc(self.started_at))

    @property
    def closes_at(self) -> datetime | None:
        """E + H, the first moment a successful legacy sign-in counts as a gap; None when the window is long gone."""
        if self.started_at is None:
            return None
        try:
            return self.started_at + timedelta(hours=self.hours)
        except OverflowError:  # a block "modified" at the end of time (bad data): its window never closes
            return datetime.max.replace(tzinfo=timezone.utc)

    def contains(self, moment: datetime) -> bool:
        """E <= moment < E + H."""
        if self.started_at is None:
            return False
        return self.started_at <= _utc(moment) < self.closes_at  # type: ignore[operator]

    def has_closed(self, moment: datetime) -> bool:
        """moment >= E + H: from here on a successful legacy sign-in is an enforcement gap."""
        closes = self.closes_at
        return closes is None or _utc(moment) >= closes

    def time_left(self, moment: datetime) -> timedelta:
        """How long until the window closes, seen from `moment` (zero once closed; more than H before E)."""
        closes = self.closes_at
        if closes is None:
            return timedelta(0)
        return max(closes - _utc(moment), timedelta(0))

    def to_json(self) -> dict[str, Any]:
        return {
            "windowStartedAt": format_time(self.started_at) if self.started_at else None,
            "windowClosesAt": format_time(self.closes_at) if self.closes_at else None,
            "windowHours": self.hours,
        }


def offline_block_start(qualifying: Iterable[PolicyAssessment]) -> datetime | None:
    """E without stored state: the newest qualifying policy's modifiedDateTime, else its createdDateTime
    (`PolicyAssessment.effective_since`), else long ago (None). A policy without readable dates counts as long ago:
    its last change cannot be placed, so it cannot hold the window open."""
    dates = [policy.effective_since for policy in qualifying if policy.effective_since is not None]
    return max(dates) if dates else None


def describe_duration(span: timedelta) -> str:
    """'5h 12m' — how a person reads time left."""
    minutes = int(span.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"
