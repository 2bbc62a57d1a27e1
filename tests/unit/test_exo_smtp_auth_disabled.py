"""Control 3 (controls.md §3): true passes, false fails, missing is unknown; string booleans accepted."""

from __future__ import annotations

import pytest

from shared.controls.exo_smtp_auth_disabled import check
from tests.builders import snapshot


@pytest.mark.parametrize(("value", "status"), [(True, "pass"), ("True", "pass"), ("true", "pass"),
                                               (False, "fail"), ("False", "fail"),
                                               (None, "unknown"), ("maybe", "unknown"), (1, "unknown")])
def test_transport_setting_decides(value, status):
    result = check(snapshot(transport=value))
    assert result.status == status
    assert result.evidence["SmtpClientAuthenticationDisabled"] == value


def test_failure_tells_how_to_fix():
    result = check(snapshot(transport=False))
    assert "Set-TransportConfig -SmtpClientAuthenticationDisabled $true" in result.remediation
    assert "enabled for the whole organisation" in result.summary


def test_not_collected_is_unknown_and_says_why():
    errors = {"exchange.transportConfig": {"status": 403, "code": "HTTP403", "message": ""}}
    result = check(snapshot(errors=errors))
    assert result.status == "unknown"
    assert "403" in result.summary


def test_missing_source_is_unknown():
    assert check(snapshot(drop=("exchange.transportConfig",))).status == "unknown"


def test_list_shaped_answer_is_read_like_the_cmdlet_output():
    document = snapshot(transport=False)
    listed = type(document)(document.tenant_id, document.collected_at, document.settings, document.graph,
                            {"transportConfig": [{"SmtpClientAuthenticationDisabled": True}]}, {})
    assert check(listed).status == "pass"
