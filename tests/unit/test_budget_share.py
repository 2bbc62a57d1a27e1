"""The division of an app's reports budget between instances (shared/collect/budget_share.py): pure rules."""

from __future__ import annotations

import asyncio
import random

from shared.collect.budget_share import CLOCK_SKEW_S, LEASE_S, allocate

W = 10.5
NOW = 1_000_000.0


def held(document: dict, instance: str) -> int:
    return int(document["holders"].get(instance, [0, 0])[0])


def test_the_first_instance_takes_the_whole_budget_and_a_lease() -> None:
    document, mine = allocate({}, "a", now=NOW, total=122, window_s=W, used=0, wants=True)
    assert mine == 122
    assert document["holders"]["a"] == [122, NOW + LEASE_S]


def test_a_newcomer_gets_nothing_until_the_holder_gives_back_and_unused_slots_come_back_at_once() -> None:
    document, _ = allocate({}, "a", now=NOW, total=122, window_s=W, used=0, wants=True)
    document, b = allocate(document, "b", now=NOW + 1, total=122, window_s=W, used=0, wants=True)
    assert b == 0  # a holds everything: taking any now could exceed 122 in a window
    # a used 40 of its slots in the window: 61 are its part, so it keeps 61 and gives 61 back, all unused: free now
    document, a = allocate(document, "a", now=NOW + 2, total=122, window_s=W, used=40, wants=True)
    assert a == 61 and document["cooling"] == []
    document, b = allocate(document, "b", now=NOW + 3, total=122, window_s=W, used=0, wants=True)
    assert b == 61


def test_slots_given_back_after_use_cool_for_a_window() -> None:
    document, _ = allocate({}, "a", now=NOW, total=100, window_s=W, used=0, wants=True)
    document, _ = allocate(document, "b", now=NOW, total=100, window_s=W, used=0, wants=True)
    document, a = allocate(document, "a", now=NOW + 1, total=100, window_s=W, used=90, wants=True)
    assert a == 50
    assert document["cooling"] == [[40, float(int(NOW + 1 + W + CLOCK_SKEW_S) + 1)]]  # 90 used, 50 kept: 40 cool
    document, b = allocate(document, "b", now=NOW + 2, total=100, window_s=W, used=0, wants=True)
    assert b == 10  # only the 10 slots a never used
    document, b = allocate(document, "b", now=NOW + 1 + W + CLOCK_SKEW_S + 1, total=100, window_s=W, used=0,
                           wants=True)
    assert b == 50


def test_a_crashed_instance_s_slots_cool_from_its_lease_end_then_return() -> None:
    document, _ = allocate({}, "crashed", now=NOW, total=122, window_s=W, used=0, wants=True)
    document, b = allocate(document, "b", now=NOW + LEASE_S - 1, total=122, window_s=W, used=0, wants=True)
    assert b == 0
    document, b = allocate(document, "b", now=NOW + LEASE_S + 1, total=122, window_s=W, used=0, wants=True)
    assert b == 0 and "crashed" not in document["holders"]  # lapsed: its last requests may still be counted
    back = NOW + LEASE_S + W + CLOCK_SKEW_S + 1
    document, b = allocate(document, "b", now=back, total=122, window_s=W, used=0, wants=True)
    assert b == 122 and document["cooling"] == []


def test_an_instance_without_work_leaves_and_its_unused_slots_are_free() -> None:
    document, _ = allocate({}, "a", now=NOW, total=122, window_s=W, used=0, wants=True)
    document, a = allocate(document, "a", now=NOW + 1, total=122, window_s=W, used=3, wants=False)
    assert a == 0 and document["holders"] == {}
    assert sum(slots for slots, _ in document["cooling"]) == 3


def test_a_document_authwatch_cannot_read_gives_nothing_away_for_a_window() -> None:
    """Slots it cannot account for may be in use: the whole budget cools for a window, then it is shared again."""
    for odd in ({"holders": {"x": "lots", "z": [50, NOW + 5]}}, {"holders": {"y": [True, 5]}},
                {"cooling": [["a", 1]]}, {"unreadable": True}):
        document, mine = allocate(odd, "me", now=NOW, total=100, window_s=W, used=0, wants=True)
        assert mine == 0, odd
        document, mine = allocate(document, "me", now=NOW + W + CLOCK_SKEW_S + 1, total=100, window_s=W, used=0,
                                  wants=True)
        cooling = sum(slots for slots, _ in document["cooling"])
        assert mine > 0 and mine + cooling <= 100, (odd, document)


def test_no_interleaving_ever_holds_more_than_the_budget() -> None:
    """Instances joining, working, leaving and crashing in random order: the slots held plus the slots cooling never
    exceed the total, and each holder's share never exceeds its fair part once everyone has taken a turn."""
    rng = random.Random(19)
    for _ in range(200):
        total, document, now = rng.randint(1, 150), {}, NOW
        used: dict[str, int] = {}
        for _ in range(60):
            now += rng.choice([0.1, 0.5, 1, 3, 7, 13])
            instance = rng.choice("abcdef")
            wants = rng.random() < 0.8
            mine = held(document, instance) if document else 0
            used[instance] = rng.randint(0, max(0, mine))
            document, mine = allocate(document, instance, now=now, total=total, window_s=W,
                                      used=used[instance], wants=wants)
            live = sum(int(slots) for slots, until in document["holders"].values())
            cooling = sum(int(slots) for slots, until in document["cooling"])
            assert live + cooling <= total, document
            assert mine >= 0


class SlowLedger:
    """An in-memory ledger whose writes take a while (a storage round trip)."""

    def __init__(self) -> None:
        self.document: dict = {}
        self.version = 0

    async def read(self, pool: str) -> tuple[dict, str | None]:
        return dict(self.document), str(self.version)

    async def write(self, pool: str, document: dict, etag: str | None) -> str:
        await asyncio.sleep(0.2)
        self.document, self.version = document, self.version + 1
        return str(self.version)


def test_work_that_arrives_while_the_share_is_leaving_rejoins(monkeypatch) -> None:
    """An idle instance leaves the ledger; a request that comes while that leave is being written must not wait
    forever for a heartbeat that has just ended (found by the four-instance benchmark: a steady cycle that hung)."""
    from shared.collect import budget_share
    from shared.collect.budget_share import SharedShare

    monkeypatch.setattr(budget_share, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(budget_share, "IDLE_S", 0.1)

    async def scenario() -> int:
        share = SharedShare(SlowLedger(), "reports.x", (10, 1.0))
        async with share.slot():
            pass
        while share.limiter.limit:  # wait until the idle instance starts leaving (its limit drops first)
            await asyncio.sleep(0.01)
        async with asyncio.timeout(5):
            async with share.slot():
                granted = share.limiter.limit
        await share.aclose()
        return granted

    assert asyncio.run(scenario()) == 10
