"""One app registration's reports budget (122 requests per 10 s across all tenants), divided between every instance
of the deployment, so that a Functions app scaled out to many instances stays under it as one process does.

**The ledger.** One row per budget in the deployment's storage account (shared/storage/budget_ledger.py), changed
only with optimistic concurrency. It says who holds how many slots until when (`holders`), and which slots were given
back but may still be counted by Microsoft (`cooling`: slots and the moment they are free). Free slots are the total
less both. An instance may send on its slots only while its lease runs; it renews the lease every few seconds.

**The rule.** Every instance with work asks for a fair part (total ÷ instances with work). One that holds more than
its part gives the rest back: what it has not used within the window is free at once, what it has used cools for a
window (those requests may still be in Microsoft's count). One that holds less takes from the free slots. So at any
moment the slots held plus the slots cooling never exceed the total, and every request sent in the last window was
sent on a slot that is still held or still cooling: the deployment never sends more than the total in any window.

**Failure modes.** An instance that crashes stops renewing: its slots cool from its lease's end and are free a
window later (≤ LEASE_S + 10.5 s). An instance that cannot reach storage keeps its slots until its lease ends and
then sends nothing on the app budget (its collections wait, then end at their deadline with DeadlineExceeded: never
PASS); the others go on. Two instances writing at once: one write wins, the other reads again (If-Match). Clocks:
leases are wall-clock times compared by other instances; CLOCK_SKEW_S of slack is added to every cooling time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from shared.collect.budget import SlidingWindowLimiter, padded
from shared.collect.deadline import Deadline

log = logging.getLogger("authwatch.budget")

# Every 7 s, a write every other beat: about 0.21 storage transactions a second per instance with work, against the
# ~12 Microsoft requests a second the budget allows. Measured per steady tenant with four instances (benchmarks.fleet
# --instances 4): a beat of 3 s cost 0.18 transactions, 5 s 0.13 (over the 2.1 a tenant may cost with its own two).
HEARTBEAT_S = 7.0  # how often an instance with work reads the ledger (and sees newcomers and leavers)
# A renewal that storage does not answer (up to its 10 s backstop) still has a second beat before the lease ends.
LEASE_S = 24.0  # how long a lease runs without renewal: a crashed instance's slots start cooling after this
RENEW_BEFORE_S = 12.0  # a lease with less than this left is renewed (every other heartbeat)
STOP_BEFORE_S = 1.0  # a lease with less than this left is not spent on: a late request may still arrive after it
IDLE_S = 6.0  # an instance that sent nothing and waits for nothing this long leaves (its slots go back)
CLOCK_SKEW_S = 1.0
LEAVE_TIMEOUT_S = 3.0  # a shutdown's leave that storage does not answer in time: the lease lapses on its own


class Ledger(Protocol):
    async def read(self, pool: str) -> tuple[dict[str, Any], str | None]: ...

    async def write(self, pool: str, document: dict[str, Any], etag: str | None) -> str: ...


def allocate(document: dict[str, Any], me: str, *, now: float, total: int, window_s: float, used: int,
             wants: bool) -> tuple[dict[str, Any], int]:
    """The ledger after `me` took its turn, and the slots it holds. Pure: `now` is the wall clock in seconds, `used`
    how many of its slots it used within the window (in flight included), `wants` whether it has work."""
    cooling_until = window_s + CLOCK_SKEW_S
    holders: dict[str, list[float]] = {}
    cooling: list[list[float]] = []
    unreadable = bool(document.get("unreadable"))
    for entry in document.get("cooling", []):
        unreadable = unreadable or not _pair(entry)
        if _pair(entry) and entry[1] > now:
            cooling.append([int(entry[0]), float(entry[1])])
    for instance, entry in (document.get("holders") or {}).items():
        if not _pair(entry):
            unreadable = True
            continue
        slots, until = int(entry[0]), float(entry[1])
        if until > now:
            holders[str(instance)] = [slots, until]
        elif slots:  # a lapsed lease (a crash, or lost storage): its last requests may be in flight until `until`
            cooling.append([slots, until + cooling_until])
    if unreadable:
        # Fail closed: slots authwatch cannot account for may be in use; the whole budget cools for a window.
        cooling.append([total, now + cooling_until])
    mine = int(holders.pop(me, [0, 0.0])[0])
    if wants:
        members = sorted([*holders, me])
        fair = total // len(members) + (1 if members.index(me) < total % len(members) else 0)
    else:
        fair = 0
    if mine > fair:
        # What was not used within the window is free at once; what was used may still be counted: it cools.
        cools = min(mine - fair, max(0, used - fair))
        if cools:
            cooling.append([cools, now + cooling_until])
        mine = fair
    elif mine < fair:
        free = total - sum(int(slots) for slots, _ in holders.values()) - sum(slots for slots, _ in cooling) - mine
        mine += max(0, min(fair - mine, free))
    if wants:
        holders[me] = [mine, round(now + LEASE_S, 3)]
    return {"holders": holders, "cooling": _merged(cooling)}, mine


def _pair(entry: Any) -> bool:
    return (isinstance(entry, list) and len(entry) == 2
            and all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in entry))


def _merged(cooling: list[list[float]]) -> list[list[float]]:
    """Cooling slots merged per whole second (rounded up: later is safe), so the document stays small."""
    by_second: dict[int, int] = {}
    for slots, until in cooling:
        second = math.ceil(until)
        by_second[second] = by_second.get(second, 0) + int(slots)
    return [[slots, float(second)] for second, slots in sorted(by_second.items()) if slots]


class SharedShare:
    """This instance's share of one app's budget: a limiter whose limit is the slots it holds in the ledger, kept up
    to date by a heartbeat that runs while there is work and leaves the ledger when there is none."""

    def __init__(self, ledger: Ledger, pool: str, limit: tuple[int, float], *, instance: str | None = None,
                 clock: Any = time.time) -> None:
        self.ledger, self.pool, self.total = ledger, pool, limit[0]
        self.window_s = padded(limit[1])
        self.instance = instance or uuid.uuid4().hex
        self.limiter = SlidingWindowLimiter(0, limit[1])
        self._clock = clock
        self._until = 0.0
        self._waiting = 0
        self._last_used = 0.0
        self._task: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def slot(self, deadline: Deadline | None = None) -> AsyncIterator[float]:
        self._waiting += 1
        self._ensure_heartbeat()
        try:
            waited = await self.limiter.acquire(deadline)
        finally:
            self._waiting -= 1
        try:
            yield waited
        finally:
            self.limiter.release()
            self._last_used = time.monotonic()

    def throttled(self) -> None:
        self.limiter.throttled()

    def _ensure_heartbeat(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._heartbeat())

    def _wants(self) -> bool:
        return bool(self._waiting or self.limiter.used() or time.monotonic() - self._last_used < IDLE_S)

    async def _heartbeat(self) -> None:
        try:
            while True:
                wants = self._wants()
                await self._beat(wants)
                if not wants:
                    if self._waiting:
                        continue  # work arrived while it was leaving: join again, or that waiter waits forever
                    return
                await asyncio.sleep(HEARTBEAT_S)
        except asyncio.CancelledError:
            # Cancelled by aclose(), or by the event loop's shutdown (asyncio.run cancels what is left and lets it
            # unwind): give the slots back now rather than leave them to lapse and cool (~20 s of nobody's budget).
            if self.limiter.limit:
                self.limiter.set_limit(0)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._beat(False), LEAVE_TIMEOUT_S)
            raise
        except Exception:  # noqa: BLE001 - never let the loop die silently with slots in hand
            log.exception("request budget heartbeat failed", extra={"pool": self.pool})
            self.limiter.set_limit(0)

    async def _beat(self, wants: bool) -> None:
        """Read the ledger, take this instance's turn, write it back; on a conflict read again (bounded)."""
        for _ in range(3):
            try:
                document, etag = await self.ledger.read(self.pool)
                now = self._clock()
                mine_before = self.limiter.limit
                new, mine = allocate(document, self.instance, now=now, total=self.total, window_s=self.window_s,
                                     used=self.limiter.used(), wants=wants)
                recorded = (document.get("holders") or {}).get(self.instance)
                unchanged = _pair(recorded) and int(recorded[0]) == mine == mine_before
                if wants and unchanged and self._until - now >= RENEW_BEFORE_S:
                    return  # nothing to change and the lease runs on: no write
                if mine < mine_before:
                    self.limiter.set_limit(mine)  # shrink before the write: never spend slots already given back
                await self.ledger.write(self.pool, new, etag)
                self._until = now + LEASE_S if wants else 0.0
                # Spent on only until shortly before the lease ends unrenewed (the limiter's own clock).
                self.limiter.valid_until = time.monotonic() + (self._until - self._clock()) - STOP_BEFORE_S
                self.limiter.set_limit(mine if wants else 0)
                return
            except Exception as error:  # noqa: BLE001 - a conflict reads again; storage trouble waits a heartbeat
                if type(error).__name__ != "LedgerConflict":
                    log.warning("request budget ledger unavailable: %s: %s", type(error).__name__, str(error)[:200],
                                extra={"pool": self.pool, "error": type(error).__name__})
                    return

    async def aclose(self) -> None:
        """Leave the ledger (the slots go back) and stop the heartbeat: a graceful shutdown, a benchmark's end."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._until:
            self._waiting, self._last_used = 0, 0.0
            self.limiter.set_limit(0)
            with contextlib.suppress(Exception):  # the lease lapses on its own
                await asyncio.wait_for(self._beat(False), LEAVE_TIMEOUT_S)
