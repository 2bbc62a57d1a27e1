"""Evaluate a snapshot: one result per control. Pure: no I/O and no clock reads."""

from __future__ import annotations

from shared.controls import controls
from shared.controls.base import Control
from shared.model import ControlResult, Status, TenantSnapshot


def evaluate(snapshot: TenantSnapshot) -> list[ControlResult]:
    return [_run(control, snapshot) for control in controls()]


def _run(control: Control, snapshot: TenantSnapshot) -> ControlResult:
    try:
        return control.check(snapshot)
    except Exception as error:  # noqa: BLE001 - a control must answer, never crash the cycle
        # Controls read defensively; reaching here means data shaped in a way nobody foresaw. Say so, don't crash.
        return control.metadata.result(
            Status.UNKNOWN,
            f"Cannot evaluate: the collected data has an unexpected shape ({type(error).__name__}).",
            {"error": type(error).__name__},
        )
