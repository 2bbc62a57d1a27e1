"""The catalogue is consistent: ids, module names and metadata agree (the Prowler id discipline)."""

from __future__ import annotations

import re

from shared.controls import CATALOGUE, controls
from shared.model import SOURCES, EvaluationContext
from tests.builders import snapshot


def test_every_catalogued_control_is_registered_under_its_own_module_name():
    registered = controls()
    assert [control.id for control in registered] == list(CATALOGUE)
    for control in registered:
        assert control.module == f"shared.controls.{control.id}"
        assert re.fullmatch(r"[a-z0-9_]+", control.id)


def test_metadata_is_complete():
    for control in controls():
        meta = control.metadata
        assert meta.title and meta.remediation and meta.permissions
        assert set(meta.sources) <= set(SOURCES), meta.id


def test_results_carry_their_control_metadata():
    document = snapshot()
    for control in controls():
        result = control.check(document, EvaluationContext())
        assert result.control == control.id
        assert result.severity == control.metadata.severity
        assert result.frameworks == control.metadata.frameworks
