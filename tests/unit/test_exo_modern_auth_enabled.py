"""Control 7 (controls.md §7): OAuth2ClientProfileEnabled true passes, false fails, missing is unknown."""

from __future__ import annotations

import pytest

from shared.controls.exo_modern_auth_enabled import METADATA, check
from shared.model import SOURCES
from tests.builders import snapshot

SOURCE = "exchange.organizationConfig"


def verdict(config: object):
    return check(snapshot(exchange_sources={"organizationConfig": config}))


def test_metadata_matches_the_module_and_known_sources():
    assert METADATA.id == "exo_modern_auth_enabled" and METADATA.severity == "medium"
    assert METADATA.frameworks == ("CIS 6.5.1",) and set(METADATA.sources) <= set(SOURCES)


@pytest.mark.parametrize(("value", "status"), [(True, "pass"), ("True", "pass"), (False, "fail"), ("False", "fail"),
                                               (None, "unknown"), ("maybe", "unknown"), (0, "unknown")])
def test_oauth2_client_profile_decides(value, status):
    result = verdict({"Identity": "contoso.onmicrosoft.com", "OAuth2ClientProfileEnabled": value})
    assert result.status == status
    assert result.evidence["OAuth2ClientProfileEnabled"] == value


def test_failure_names_the_setting_and_the_fix():
    result = verdict({"Identity": "contoso.onmicrosoft.com", "OAuth2ClientProfileEnabled": False})
    assert "Modern authentication is disabled for Exchange Online" in result.summary
    assert "OAuth2ClientProfileEnabled is False" in result.summary
    assert result.remediation == "Set-OrganizationConfig -OAuth2ClientProfileEnabled $true"
    assert result.evidence["Identity"] == "contoso.onmicrosoft.com"


def test_field_missing_is_unknown():
    assert verdict({"Identity": "contoso.onmicrosoft.com"}).status == "unknown"


def test_one_item_list_is_read_like_the_cmdlet_output():
    assert verdict([{"OAuth2ClientProfileEnabled": "True"}]).status == "pass"


def test_missing_source_is_unknown():
    result = check(snapshot(drop=(SOURCE,)))
    assert result.status == "unknown" and SOURCE in result.summary


def test_failed_collection_is_unknown_and_says_why():
    result = check(snapshot(errors={SOURCE: {"status": 403, "code": "HTTP403", "message": "needs Global Reader"}}))
    assert result.status == "unknown" and "403" in result.summary


@pytest.mark.parametrize("config", ["contoso", 5, [], ["x"], [None]])
def test_unreadable_config_is_unknown(config):
    result = verdict(config)
    assert result.status == "unknown" and "expected an object" in result.summary
