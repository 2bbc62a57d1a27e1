"""The control catalogue: pure checks, a snapshot and a clock in, a verdict out. Importing this package registers
every control module listed in CATALOGUE, in order. May import: shared.model, shared.logs only."""

from __future__ import annotations

import importlib

from shared.controls.base import Control, registered

# Catalogue order is the order results are reported in (controls.md numbering).
CATALOGUE = (
    "entra_legacy_auth_blocked",
    "entra_legacy_signins_blocked",
    "exo_smtp_auth_disabled",
    "exo_smtp_auth_mailbox_overrides",
    "exo_basic_auth_policy",
    "exo_pop_imap_disabled",
    "exo_modern_auth_enabled",
    "spo_legacy_auth_disabled",
    "legacy_auth_exposure",
)

for _module in CATALOGUE:
    importlib.import_module(f"shared.controls.{_module}")


def controls() -> list[Control]:
    """Every registered control, in catalogue order."""
    catalogue = registered()
    return [catalogue[control_id] for control_id in CATALOGUE]
