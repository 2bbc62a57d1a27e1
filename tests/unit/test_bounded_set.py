"""The mailboxes that switch SMTP AUTH on for themselves are kept in a bounded shape (count, digest, first names):
what a drift between two such shapes proves, and what it only says it cannot tell."""

from __future__ import annotations

import json

from shared.state.bounded_set import SAMPLE_SIZE, as_bounded, bounded, change
from shared.state.drift import NEUTRAL, REENABLED, STRENGTHENED, diff

NAMES = [f"user{i:05d}@contoso.example" for i in range(20_000)]


def config(names: list[str]) -> dict:
    return {"mailboxOverrides": {"smtpAuthEnabledMailboxes": bounded(names)}}


def effects(before: list[str], after: list[str]) -> list[tuple[str, str]]:
    [found] = diff(config(before), config(after)) or [None]
    return [(field.effect, field.note) for field in found.fields] if found else []


def test_the_stored_shape_stays_small_whatever_the_tenant_size():
    stored = json.dumps(bounded(NAMES))
    assert len(stored) < 6_000 and bounded(NAMES)["count"] == 20_000
    assert bounded(NAMES)["sample"] == NAMES[:SAMPLE_SIZE]
    assert bounded(reversed(NAMES))["digest"] == bounded(NAMES)["digest"]  # order does not matter


def test_small_sets_are_diffed_exactly():
    [(effect, note)] = effects(NAMES[:3], NAMES[:3] + ["printer@contoso.example"])
    assert effect == REENABLED and note == "turned on for printer@contoso.example"
    [(effect, note)] = effects(NAMES[:3], NAMES[:2])
    assert effect == STRENGTHENED and NAMES[2] in note


def test_a_new_override_in_a_big_tenant_is_a_reenable_even_past_the_sample():
    """20,000 overrides, one more that sorts after the first 100: no name to show, but the count proves it."""
    [(effect, note)] = effects(NAMES, NAMES + ["zz-printer@contoso.example"])
    assert effect == REENABLED and "past the first 100" in note
    # One swapped for another (same count, different set): at least one is new.
    [(effect, _), *_] = effects(NAMES, NAMES[:-1] + ["zz-printer@contoso.example"])
    assert effect == REENABLED


def test_a_new_override_within_the_sample_range_is_named():
    [(effect, note)] = effects(NAMES, NAMES + ["user00000a@contoso.example"])
    assert effect == REENABLED and "user00000a@contoso.example" in note


def test_a_shrinking_big_set_says_it_cannot_rule_out_a_new_one():
    found = effects(NAMES, NAMES[5:])
    assert (STRENGTHENED, found[0][1]) == found[0] and NAMES[0] in found[0][1]
    assert found[1][0] == NEUTRAL and "too long to tell" in found[1][1]
    # Every override removed: nothing can hide, so no doubt is raised.
    assert [effect for effect, _ in effects(NAMES, [])] == [STRENGTHENED]


def test_unchanged_sets_and_states_written_before_the_shape_existed():
    assert change(NAMES[:10], bounded(NAMES[:10])) is None  # a stored full list reads as the same set
    assert as_bounded(NAMES[:2]) == bounded(NAMES[:2]) and as_bounded(None)["count"] == 0
    assert diff({"mailboxOverrides": {"smtpAuthEnabledMailboxes": NAMES[:10]}}, config(NAMES[:10])) == []
