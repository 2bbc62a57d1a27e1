"""Request budgets: Microsoft's documented throttling limits, respected before a request is sent
(https://learn.microsoft.com/en-us/graph/throttling-limits#identity-protection-and-conditional-access-service-limits and
#identity-and-access-reports-service-limits).

The real ceiling of authwatch is Graph throttling, not CPU: Conditional Access answers 1 request per second per
tenant (and its 429s carry no Retry-After), the reports service (sign-ins + audits) 5 requests per 10 s per tenant
and 122 per 10 s per app across all tenants. One `RequestBudget` is shared by every collection in a process, so a
fleet swept concurrently stays under the limits instead of discovering them through 429s.

A sliding log (not a token bucket) is used because it guarantees "at most N in ANY window of W seconds", which is
what a fixed-window server counts; a bucket that refills continuously could put 2N into one server window.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from shared.collect.deadline import Deadline
from shared.collect.errors import DeadlineExceeded

# Requests arrive at the server a little after we send them and not always in order (the connection pool queues
# them under load); keep a margin: 0.15 s, or 5 % of a longer window (2.5 % let a few 429s through).
SAFETY_MARGIN_S = 0.15
SAFETY_MARGIN_SHARE = 0.05


class SlidingWindowLimiter:
    """At most `limit` acquisitions in any `window_s` seconds."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        margin = max(SAFETY_MARGIN_S, window_s * SAFETY_MARGIN_SHARE)
        self.limit, self.window_s, self._clock = limit, window_s + margin, clock
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self, deadline: Deadline | None = None) -> float:
        """Wait for a slot; returns how long we waited (for the benchmark's accounting). With a `deadline`, a wait
        (in the queue of waiters, or for the window to free a slot) that would end past it raises DeadlineExceeded:
        the request is not sent at all, rather than sent after the function has been killed."""
        if deadline is None:
            return await self._acquire(None)
        try:
            async with asyncio.timeout(deadline.remaining()):
                return await self._acquire(deadline)
        except TimeoutError:
            raise DeadlineExceeded(f"waiting behind other requests for a throttling budget slot ({self.limit} per "
                                   f"{self.window_s:g} s) ran into {deadline.describe()}") from None

    async def _acquire(self, deadline: Deadline | None) -> float:
        waited = 0.0
        async with self._lock:  # FIFO: waiters are served in arrival order
            while True:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self.window_s:
                    self._sent.popleft()
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return waited
                pause = self.window_s - (now - self._sent[0])
                if deadline is not None and not deadline.allows(pause):
                    raise DeadlineExceeded(f"the next throttling budget slot ({self.limit} per {self.window_s:g} s) "
                                           f"is {pause:.1f} s away: past {deadline.describe()}")
                waited += pause
                await asyncio.sleep(pause)


@dataclass
class RequestBudget:
    """The limits of platform-facts.md, per tenant and per app. Limiters are created lazily per tenant."""

    ca_per_tenant: tuple[int, float] = (1, 1.0)
    reports_per_tenant: tuple[int, float] = (5, 10.0)
    reports_per_app: tuple[int, float] = (122, 10.0)
    _tenants: dict[tuple[str, str], SlidingWindowLimiter] = field(default_factory=dict)
    _apps: dict[str, SlidingWindowLimiter] = field(default_factory=dict)

    def _tenant(self, kind: str, tenant_id: str, limit: tuple[int, float]) -> SlidingWindowLimiter:
        key = (kind, tenant_id)
        if key not in self._tenants:
            self._tenants[key] = SlidingWindowLimiter(*limit)
        return self._tenants[key]

    async def conditional_access(self, tenant_id: str, deadline: Deadline | None = None) -> None:
        await self._tenant("ca", tenant_id, self.ca_per_tenant).acquire(deadline)

    async def reports(self, tenant_id: str, app_id: str = "", deadline: Deadline | None = None) -> None:
        """A reports slot for `tenant_id` read by the app registration `app_id`. Both limits are per app, so tenants
        sharded across app registrations draw on separate fleet-wide budgets."""
        app = app_id.lower()
        # The tenant's own slot (5 per 10 s per app per tenant) first: waiting for it must not hold a fleet-wide
        # slot idle.
        await self._tenant(f"reports:{app}", tenant_id, self.reports_per_tenant).acquire(deadline)
        if app not in self._apps:
            self._apps[app] = SlidingWindowLimiter(*self.reports_per_app)
        await self._apps[app].acquire(deadline)


UNLIMITED = None  # callers pass None to collect without budgets (single snapshots, tests of raw behaviour)
