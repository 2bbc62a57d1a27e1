"""Control 8 (controls.md §8): isLegacyAuthProtocolsEnabled false passes, true fails, missing/empty is unknown."""

from __future__ import annotations

import pytest

from shared.controls.spo_legacy_auth_disabled import METADATA, check
from shared.model import SOURCES
from tests.builders import snapshot

SOURCE = "graph.sharepointSettings"


def verdict(settings: object):
    return check(snapshot(graph_sources={"sharepointSettings": settings}))


def test_metadata_matches_the_module_and_known_sources():
    assert METADATA.id == "spo_legacy_auth_disabled" and METADATA.severity == "medium"
    assert METADATA.frameworks == ("CIS 7.2.1",) and set(METADATA.sources) <= set(SOURCES)


@pytest.mark.parametrize(("value", "status"), [(False, "pass"), ("false", "pass"), ("False", "pass"),
                                               (True, "fail"), ("True", "fail"),
                                               (None, "unknown"), ("yes", "unknown"), (1, "unknown")])
def test_legacy_flag_decides(value, status):
    result = verdict({"isLegacyAuthProtocolsEnabled": value, "sharingCapability": "disabled"})
    assert result.status == status
    assert result.evidence["isLegacyAuthProtocolsEnabled"] == value


def test_failure_names_sharepoint_and_the_fix():
    result = verdict({"isLegacyAuthProtocolsEnabled": True})
    assert "SharePoint Online accepts legacy authentication" in result.summary
    assert "Set-SPOTenant -LegacyAuthProtocolsEnabled $false" in result.remediation


def test_the_documented_payload_shape_is_read():
    # Trimmed from the GET /admin/sharepoint/settings reference: the entity's fields at top level.
    payload = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#admin/sharepoint/settings/$entity",
               "allowedDomainGuidsForSyncApp": [], "idleSessionSignOut": {"isEnabled": False},
               "isLegacyAuthProtocolsEnabled": False, "sharingCapability": "externalUserAndGuestSharing"}
    assert verdict(payload).status == "pass"


def test_docs_style_value_wrapper_is_read_too():
    assert verdict({"value": {"isLegacyAuthProtocolsEnabled": True}}).status == "fail"


def test_empty_settings_are_unknown():
    result = verdict({})
    assert result.status == "unknown" and "missing" in result.summary


def test_missing_source_is_unknown():
    result = check(snapshot(drop=(SOURCE,)))
    assert result.status == "unknown" and SOURCE in result.summary


def test_failed_collection_is_unknown_and_says_why():
    errors = {SOURCE: {"status": 403, "code": "Authorization_RequestDenied", "message": "Insufficient privileges"}}
    result = check(snapshot(errors=errors))
    assert result.status == "unknown"
    assert "Authorization_RequestDenied" in result.summary and "Insufficient privileges" in result.summary


@pytest.mark.parametrize("settings", ["on", 5, [], [{"isLegacyAuthProtocolsEnabled": False}], {"value": "x"}])
def test_malformed_settings_are_unknown(settings):
    assert verdict(settings).status == "unknown"
