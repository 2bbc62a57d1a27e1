"""Terminal text a person pastes from: the alert text of `authwatch demo` and the CLI tables never break a command
across lines and keep the remediation's own line breaks (issue: the legacy sign-ins fix printed the generic command
and the real one run together, and `Set-User` split at its hyphen)."""

from __future__ import annotations

from datetime import datetime, timezone

from shared.alerts.content import AlertGroup, render_text
from shared.alerts.wrap import wrap
from shared.controls.entra_legacy_signins_blocked import check
from shared.model import EvaluationContext
from shared.state.events import Event
from tests.unit.test_entra_legacy_signins_blocked import E, block_policy, signin, snapshot

TENANT = "8c1d0f4e-1a2b-4c3d-8e9f-00000000abcd"
NOW = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
SET_USER = "Set-User 'sales@tailspin.example' -STSRefreshTokensValidFrom ([DateTime]::UtcNow)"


def legacy_signins_alert(width: int) -> list[str]:
    signins = [signin(user="sales@tailspin.example", userId=None), signin(user="warehouse@tailspin.example", userId=None)]
    result = check(snapshot(policies=[block_policy(modifiedDateTime=E)], graph_sources={"signIns": signins}),
                   EvaluationContext())
    event = Event(NOW, TENANT, "control.failed", result.control, "high", result.summary,
                  {"before": "pass", "after": "fail", "remediation": result.remediation}).to_record()
    return render_text(AlertGroup(TENANT, "Tailspin Toys", (event,), None, NOW), width=width).splitlines()


def test_each_set_user_command_is_one_whole_line_of_the_alert_text():
    for width in (50, 80, 110):
        lines = legacy_signins_alert(width)
        assert any(line.strip() == SET_USER for line in lines), width
        assert not any(line.rstrip().endswith(("Set-", "Set-User")) for line in lines), width
        steps = next(index for index, line in enumerate(lines) if "force new tokens" in line or "bites now:" in line)
        assert "Set-User" not in lines[steps]  # the steps end their line; the commands follow, one per line


def test_a_command_inside_a_sentence_stays_on_one_line():
    text = "Run Set-CASMailbox 'sales@contoso.com' -PopEnabled $false -ImapEnabled $false, then wait for the window."
    lines = wrap(text, 24)
    assert "Set-CASMailbox 'sales@contoso.com' -PopEnabled $false -ImapEnabled $false," in " | ".join(lines)
    assert any(line.startswith("Set-CASMailbox 'sales@contoso.com' -PopEnabled $false -ImapEnabled $false")
               for line in lines)


def test_prose_wraps_within_the_width_at_spaces_and_keeps_its_own_line_breaks():
    text = "Block legacy authentication with a Conditional Access policy for all users and all cloud apps.\nThen check."
    lines = wrap(text, 30, first="  ", rest="  ")
    assert all(len(line) <= 30 for line in lines)
    assert lines[-1] == "  Then check."
    assert " ".join(line.strip() for line in lines[:-1]) == text.splitlines()[0]


def test_hyphenated_words_are_never_split():
    lines = wrap("report-only enabledForReportingButNotEnforced sign-in sign-ins " * 4, 18)
    assert not any(line.endswith("-") for line in lines)
