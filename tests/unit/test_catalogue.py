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


def test_framework_map_and_control_metadata_agree():
    from shared.controls.frameworks import framework_tags

    from_metadata: dict[str, set[str]] = {}
    for control in controls():
        for tag in control.metadata.frameworks:
            from_metadata.setdefault(tag, set()).add(control.id)
    from_map = {tag: set(ids) for tag, ids in framework_tags().items()}
    catalogued = {control.id for control in controls()}
    # Every tag a control claims is in the map, and every mapped control that exists claims its tag.
    assert set(from_metadata) <= set(from_map)
    for tag, ids in from_map.items():
        assert ids & catalogued == from_metadata.get(tag, set()), tag
