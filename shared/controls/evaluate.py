"""Evaluate a snapshot: one result per control, then the tenant's live exceptions on top (shared/controls/
exceptions.py). Pure: no I/O and no clock reads — an exception is live or not at the snapshot's collectedAt, so
`authwatch evaluate`, `authwatch replay` and the timer agree on the same snapshot."""

from __future__ import annotations

from shared.controls import controls
from shared.controls.base import Control
from shared.controls.exceptions import apply_exceptions, snapshot_exceptions
from shared.model import ControlResult, EvaluationContext, Status, TenantSnapshot


def evaluate(snapshot: TenantSnapshot, context: EvaluationContext | None = None) -> list[ControlResult]:
    context = context or EvaluationContext()
    results = [_run(control, snapshot, context) for control in controls()]
    # Records that cannot be read are left out by snapshot_exceptions: they cover nothing (fail closed).
    return apply_exceptions(results, snapshot_exceptions(snapshot), snapshot.collected_at)


def _run(control: Control, snapshot: TenantSnapshot, context: EvaluationContext) -> ControlResult:
    try:
        return control.check(snapshot, context)
    except Exception as error:  # noqa: BLE001 - a control must answer, never crash the cycle
        # Controls read defensively; reaching here means data shaped in a way nobody foresaw. Say so, don't crash.
        return control.metadata.result(
            Status.UNKNOWN,
            f"Cannot evaluate: the collected data has an unexpected shape ({type(error).__name__}).",
            {"error": type(error).__name__},
        )
