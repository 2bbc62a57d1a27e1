"""Request budgets: Microsoft's documented throttling limits, respected before a request is sent
(https://learn.microsoft.com/en-us/graph/throttling-limits#identity-protection-and-conditional-access-service-limits and
#identity-and-access-reports-service-limits).

The real ceiling of authwatch is Graph throttling, not CPU: Conditional Access answers 1 request per second per
tenant (and its 429s carry no Retry-After), the reports service (sign-ins + audits) 5 requests per 10 s per tenant
and 122 per 10 s per app across all tenants. The per-tenant limits are this process's alone: a tenant is evaluated
by one worker at a time (the fan-out's in-flight lease). The per-app limit is the whole deployment's: in a Functions
app scaled out to many instances, each holds a share of it (shared/collect/budget_share.py), or, in one process
(the CLI, the demo, tests), the whole of it.

A slot is taken by the HTTP pipeline right before the request leaves (shared/collect/budget_middleware.py), for every
attempt, the SDK's retries included, and it counts until the answer has arrived plus the window: Microsoft counted
the request somewhere between the two, and a request that waits in the connection pool under load arrives later
than it was allowed. A sliding log (not a token bucket) is used because it guarantees "at most N in ANY window of
W seconds", which is what a fixed-window server counts; a bucket that refills continuously could put 2N into one
server window.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Callable, Protocol

from shared.collect.deadline import Deadline
from shared.collect.errors import DeadlineExceeded

# Clocks of the two ends differ a little and the server's window may start at any moment; keep a margin: 0.15 s,
# or 5 % of a longer window.
SAFETY_MARGIN_S = 0.15
SAFETY_MARGIN_SHARE = 0.05
# Per-tenant limiters kept before the idle ones are dropped.
PRUNE_AT = 1024


def padded(window_s: float) -> float:
    """The window the limiter keeps: Microsoft's plus the safety margin."""
    return window_s + max(SAFETY_MARGIN_S, window_s * SAFETY_MARGIN_SHARE)


class SlidingWindowLimiter:
    """At most `limit` requests in any `window_s` seconds, counting a request from the moment it is allowed (in
    flight) until its answer has arrived plus the window. `limit` may change (a share of a shared budget); a 429
    halves it for a window (`throttled`)."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self._clock = limit, padded(window_s), clock
        self._done: deque[float] = deque()  # when each answer arrived, oldest first
        self._in_flight = 0
        self._penalty_until = 0.0
        self.valid_until = math.inf  # on this limiter's clock; a shared share sets its lease's end
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    def effective_limit(self, now: float | None = None) -> int:
        now = self._clock() if now is None else now
        if now >= self.valid_until:
            return 0  # a share whose lease ran out unrenewed: nothing may be sent on it
        return max(1, self.limit // 2) if self.limit and now < self._penalty_until else self.limit

    def used(self, now: float | None = None) -> int:
        """Requests in flight or answered within the window: what Microsoft may still be counting."""
        now = self._clock() if now is None else now
        while self._done and now - self._done[0] >= self.window_s:
            self._done.popleft()
        return self._in_flight + len(self._done)

    def set_limit(self, limit: int) -> None:
        self.limit = max(0, limit)
        self._changed.set()

    def throttled(self) -> None:
        """Microsoft said 429 although the limit was kept (another client of the same app or tenant, a limit lower
        than documented): take half for a window rather than retrying into the same wall."""
        self._penalty_until = self._clock() + self.window_s
        self._changed.set()

    @asynccontextmanager
    async def slot(self, deadline: Deadline | None = None) -> AsyncIterator[float]:
        """Hold a slot while the request is in flight; yields how long the wait was."""
        waited = await self.acquire(deadline)
        try:
            yield waited
        finally:
            self.release()

    async def acquire(self, deadline: Deadline | None = None) -> float:
        """Wait for a slot (then `release()` when the answer arrived); returns how long we waited. With a
        `deadline`, a wait that would end past it raises DeadlineExceeded: the request is not sent at all, rather
        than sent after the function has been killed."""
        if deadline is None:
            return await self._acquire(None)
        try:
            async with asyncio.timeout(deadline.remaining()):
                return await self._acquire(deadline)
        except TimeoutError:
            raise DeadlineExceeded(f"waiting behind other requests for a throttling budget slot ({self.limit} per "
                                   f"{self.window_s:g} s) ran into {deadline.describe()}") from None

    def release(self) -> None:
        self._in_flight -= 1
        self._done.append(self._clock())
        self._changed.set()

    async def _acquire(self, deadline: Deadline | None) -> float:
        started = self._clock()
        async with self._lock:  # FIFO: waiters are served in arrival order
            while True:
                now = self._clock()
                if self.used(now) < self.effective_limit(now):
                    self._in_flight += 1
                    return self._clock() - started
                # The next slot frees when the oldest answered request leaves the window (or a share grows); with
                # everything still in flight, when one of them is answered.
                pause = self.window_s - (now - self._done[0]) if self._done else None
                if self._penalty_until > now:
                    pause = min(pause, self._penalty_until - now) if pause is not None else self._penalty_until - now
                if pause is not None and deadline is not None and not deadline.allows(pause) and self.limit:
                    raise DeadlineExceeded(f"the next throttling budget slot ({self.limit} per {self.window_s:g} s)"
                                           f" is {pause:.1f} s away: past {deadline.describe()}")
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), pause)
                except TimeoutError:
                    pass


class AppBudget(Protocol):
    """A per-app budget: the whole of it (one process), or this instance's share of the deployment's."""

    def slot(self, deadline: Deadline | None = None) -> AsyncIterator[float]: ...

    def throttled(self) -> None: ...


@dataclass
class RequestBudget:
    """The limits of platform-facts.md, per tenant and per app. Limiters are created lazily per tenant; per app, by
    `app_budget` (default: the whole budget in this process; shared/collect/budget_share.py gives a share)."""

    ca_per_tenant: tuple[int, float] = (1, 1.0)
    reports_per_tenant: tuple[int, float] = (5, 10.0)
    reports_per_app: tuple[int, float] = (122, 10.0)
    app_budget: Callable[[str, tuple[int, float]], AppBudget] | None = None
    _tenants: dict[tuple[str, str], SlidingWindowLimiter] = field(default_factory=dict)
    _apps: dict[str, AppBudget] = field(default_factory=dict)

    def _tenant(self, kind: str, tenant_id: str, limit: tuple[int, float]) -> SlidingWindowLimiter:
        key = (kind, tenant_id)
        if key not in self._tenants:
            if len(self._tenants) >= PRUNE_AT:
                self._prune()
            self._tenants[key] = SlidingWindowLimiter(*limit)
        return self._tenants[key]

    def _prune(self) -> None:
        """A long-lived worker process sees thousands of tenants: a limiter with nothing in its window is dropped
        (a new one for the same tenant starts equally empty)."""
        for key in [key for key, limiter in self._tenants.items() if not limiter.used()]:
            del self._tenants[key]

    def conditional_access_limiter(self, tenant_id: str) -> SlidingWindowLimiter:
        return self._tenant("ca", tenant_id, self.ca_per_tenant)

    def reports_limiters(self, tenant_id: str, app_id: str = "") -> tuple[SlidingWindowLimiter, AppBudget]:
        """The tenant's reports limiter (5 per 10 s per app per tenant) and the app's budget. Both limits are per
        app, so tenants sharded across app registrations draw on separate fleet-wide budgets."""
        app = app_id.lower()
        if app not in self._apps:
            self._apps[app] = (self.app_budget(app, self.reports_per_app) if self.app_budget
                               else SlidingWindowLimiter(*self.reports_per_app))
        return self._tenant(f"reports:{app}", tenant_id, self.reports_per_tenant), self._apps[app]

    async def aclose(self) -> None:
        for app in self._apps.values():
            close = getattr(app, "aclose", None)
            if close is not None:
                await close()


UNLIMITED = None  # callers pass None to collect without budgets (single snapshots, tests of raw behaviour)
