"""Onboarding at a glance (issue 20): every GDAP customer's onboarding state and the one fix for it, for the
dashboard's Onboarding page (GET /api/onboarding) and the report's Onboarding section.

The rows are the ones `authwatch tenants discover|onboard` writes (shared/tenants/onboarding_records.py, where the
states are defined); this only reads them, orders them (those needing a fix first, worst first) and counts them.
"""

from __future__ import annotations

from typing import Any


from shared.tenants.onboarding_records import MAX_RECORDS, STATES, OnboardingRecord, OnboardingRecords

# Worst first: what needs the operator most comes first, ready last (a customer watched, nothing to do).
ORDER = ("failed", "lacks_role", "missing_exchange_role", "relationship_ended", "in_progress", "ready", "removed")
# What the dashboard, the report and the CLI's readers call each state.
LABELS = {"ready": "Ready", "missing_exchange_role": "Needs the Exchange role",
          "lacks_role": "Relationship lacks a role", "failed": "Failed", "in_progress": "In progress",
          "relationship_ended": "Relationship ended", "removed": "Removed (not watched)"}
EMPTY = "No GDAP onboarding yet: run `authwatch tenants discover`."
assert set(ORDER) == set(STATES) == set(LABELS), "every onboarding state needs its place and its label"


def one_fix(record: OnboardingRecord) -> str:
    """The one thing to do for this customer ("" when it is ready and clean). A row written without a fix (an attempt that
    never finished is saved `in_progress` with none) still gets one: nobody is left with a state and no next step."""
    if record.state in ("ready", "removed"):
        return record.fix  # usually none; a leftover onboarding grant onboarding could not withdraw has one
    if record.fix:
        return record.fix
    if record.state == "in_progress":
        return (f"An onboarding attempt started and did not finish: run `authwatch tenants onboard --tenant "
                f"{record.tenant_id}` again (the steps already done are not repeated).")
    return (f"Run `authwatch tenants onboard --tenant {record.tenant_id}` again; `authwatch tenants onboarding` "
            "shows what it says.")


def overview_of(records: list[OnboardingRecord], *, truncated: bool = False) -> dict[str, Any]:
    """The overview from stored records. Pure."""
    rank = {state: index for index, state in enumerate(ORDER)}
    ordered = sorted(records, key=lambda r: (rank[r.state], r.name.lower(), r.tenant_id))
    counts = {state: 0 for state in ORDER}
    for record in records:
        counts[record.state] += 1
    rows = [{**record.to_json(), "fix": one_fix(record), "label": LABELS[record.state],
             "needsFix": record.state not in ("ready", "removed") or bool(record.fix)} for record in ordered]
    return {
        "customers": rows,
        "counts": counts,
        "needsFix": sum(row["needsFix"] for row in rows),
        # The records module stops reading at MAX_RECORDS (more customers than any partner has): say so, never
        # present a cut list as the whole.
        "truncated": truncated,
    }


async def onboarding_overview(fleet: Any) -> dict[str, Any]:
    """Every customer's onboarding state with its one fix, those needing a fix first (ORDER), then by name:
    {"customers": [record.to_json() + "label", "needsFix"], "counts": {state: n}, "needsFix": n, "truncated"}.
    Reads the registry's table in the storage account the fleet's settings name (as shared/views/api.py does)."""
    from shared.settings import Settings

    async with OnboardingRecords.from_connection_string(Settings.from_env(fleet.env).storage) as records:
        found = await records.all()
    return overview_of(found, truncated=len(found) >= MAX_RECORDS)
