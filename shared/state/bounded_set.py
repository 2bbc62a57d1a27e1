"""A set of names that can grow with the tenant (the mailboxes that switch SMTP AUTH on for themselves), stored in a
bounded shape: its size, a digest of the whole set, and the first names in sorted order.

A 50,000-mailbox tenant with every override on would otherwise put ~1.5 million characters into one state document
(a Table entity holds 1 MiB), and the tenant could never be evaluated again. What the shape still proves:
- the set changed at all (the digest);
- a name in the new sample that sorts within the old sample's range and is missing from it was added (the old sample
  holds every old name up to its last one), and the reverse for removals;
- the same size with a different digest means at least one name was added.
What it cannot prove (a big set that lost some names and gained fewer) is said in words, never guessed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SAMPLE_SIZE = 100  # names kept verbatim; 100 addresses are ~4,000 characters


def bounded(names: Iterable[str]) -> dict[str, Any]:
    ordered = sorted(set(names))
    digest = hashlib.sha256("\n".join(ordered).encode("utf-8")).hexdigest()[:32]
    return {"count": len(ordered), "digest": digest, "sample": ordered[:SAMPLE_SIZE]}


def as_bounded(value: Any) -> dict[str, Any]:
    """The bounded shape of a stored value: states written before the shape existed hold the whole list."""
    if isinstance(value, dict) and {"count", "digest", "sample"} <= set(value):
        return value
    return bounded(str(name) for name in value) if isinstance(value, list) else bounded(())


@dataclass(frozen=True)
class SetChange:
    before: int
    after: int
    added: list[str]  # names proven new (all of them when both sets fit the sample)
    removed: list[str]  # names proven gone
    more_added: bool  # some addition is proven but not every added name is known
    unsure: bool  # the set changed in a way the stored shape cannot fully explain


def _within(name: str, sample: list[str], count: int) -> bool:
    """Whether the sample is complete up to `name`: every member of the set that sorts at or before it is there."""
    return count <= len(sample) or (bool(sample) and name <= sample[-1])


def change(old_value: Any, new_value: Any) -> SetChange | None:
    """What changed between two stored sets; None when nothing did."""
    old, new = as_bounded(old_value), as_bounded(new_value)
    if old["digest"] == new["digest"]:
        return None
    old_sample, new_sample = list(old["sample"]), list(new["sample"])
    old_names, new_names = set(old_sample), set(new_sample)
    added = [n for n in new_sample if n not in old_names and _within(n, old_sample, old["count"])]
    removed = [n for n in old_sample if n not in new_names and _within(n, new_sample, new["count"])]
    complete = old["count"] <= len(old_sample) and new["count"] <= len(new_sample)
    # Size arithmetic proves additions the samples cannot name: at most count - removed old names remain, so any
    # name beyond those is new; and a different set that did not shrink gained at least one name.
    proven_added = max(len(added), new["count"] - old["count"] + len(removed))
    if new["count"] >= old["count"]:
        proven_added = max(proven_added, 1)
    # It shrank and no addition is proven: one may still hide behind the removals, unless every new name is known
    # and none of them could be new (names the old sample cannot place).
    ambiguous = [n for n in new_sample if n not in old_names and not _within(n, old_sample, old["count"])]
    hidden = bool(ambiguous) or new["count"] > len(new_sample)
    return SetChange(old["count"], new["count"], added, removed, more_added=proven_added > len(added),
                     unsure=not complete and proven_added == 0 and hidden)
