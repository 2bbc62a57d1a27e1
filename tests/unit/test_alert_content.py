"""What every alert says and how each channel lays it out: before → after, who, what it exposes, the window's time
left and the exact fix; Teams Adaptive Card, Slack Block Kit, HTML e-mail, the webhook contract; one grouped message
per cycle; the limits of each format."""

from __future__ import annotations

import json
from functools import partial
from datetime import datetime, timedelta, timezone

import httpx

dumps = partial(json.dumps, ensure_ascii=False)

from shared.alerts.channels.email import GraphMail
from shared.alerts.channels.slack import SlackWebhook
from shared.alerts.channels.teams import TeamsWorkflow
from shared.alerts.channels.webhook import GenericWebhook
from shared.alerts.content import AlertGroup, Digest, DigestEntry, view
from shared.collect.credentials import CredentialSpec
from shared.state.events import Event

TENANT = "8c1d0f4e-1a2b-4c3d-8e9f-00000000abcd"
T1 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
LINK = f"https://authwatch.example/app#/tenants/{TENANT}"


def record(kind, control, severity, summary, details, subject=""):
    return Event(T1, TENANT, kind, control, severity, summary, details, subject).to_record()


FAILED = record("control.failed", "exo_smtp_auth_disabled", "high", "SMTP AUTH is enabled for the organisation.",
                {"before": "pass", "after": "fail", "remediation": "Set-TransportConfig -SmtpClientAuthenticationDisabled "
                                                                   "$true"})
DRIFT = record("drift.weakened", "entra_legacy_auth_blocked", "high",
               "Protection weakened by admin@contoso.example: Conditional Access policy 'Block legacy auth': state: "
               "enabled → enabledForReportingButNotEnforced.",
               {"section": "conditionalAccess", "item": "ca:1111",
                "changes": [{"field": "state", "before": "enabled", "after": "enabledForReportingButNotEnforced",
                             "effect": "weakened", "note": "report-only does not block"}],
                "changedBy": "admin@contoso.example", "changedAt": "2026-11-23T07:41:00Z"}, subject="ca:1111")
WINDOW = record("enforcement.window_started", "entra_legacy_signins_blocked", "low",
                "Legacy authentication is now blocked in configuration; enforcement can take up to 24 hours.",
                {"windowStartedAt": "2026-11-23T08:00:00Z", "windowClosesAt": "2026-11-24T08:00:00Z",
                 "windowHours": 24.0, "secondsLeft": 86400})
UNREACHABLE = record("tenant.unreachable", None, "high", "authwatch cannot read this tenant: AADSTS7000215: bad "
                     "secret", {"errors": {"token": {"status": 401, "code": "AADSTS7000215", "message": "x"}}})
RECOVERED = record("control.recovered", "exo_smtp_auth_disabled", "high", "SMTP AUTH is disabled for the "
                   "organisation.", {"before": "fail", "after": "pass"})


def group(*events, now=T1 + timedelta(hours=2)):
    return AlertGroup(TENANT, "Contoso <Ltd> & Co", tuple(events), LINK, now)


# --- the words ------------------------------------------------------------------------------------------------------------

def test_a_control_alert_says_what_changed_what_it_exposes_and_the_fix():
    item = view(FAILED, T1)
    facts = dict(item.facts())
    assert facts["Control"] == "SMTP AUTH is disabled for the organisation (exo_smtp_auth_disabled)"
    assert facts["What changed"] == "status: pass → fail"
    assert "password alone" in facts["Exposes"]
    assert facts["Fix"] == "Set-TransportConfig -SmtpClientAuthenticationDisabled $true"
    assert "Changed by" not in facts and "Enforcement window" not in facts


def test_a_drift_alert_says_who_and_before_after_and_falls_back_to_the_catalogue_fix():
    facts = dict(view(DRIFT, T1).facts())
    assert facts["What changed"] == "state: enabled → enabledForReportingButNotEnforced (report-only does not block)"
    assert facts["Changed by"] == "admin@contoso.example at 2026-11-23T07:41:00Z"
    assert "Conditional Access" in facts["Exposes"]
    assert facts["Fix"]  # the control's catalogue remediation, not nothing


def test_the_window_time_left_is_counted_from_delivery():
    assert dict(view(WINDOW, T1 + timedelta(hours=5, minutes=12)).facts())["Enforcement window"] == \
        "18h 48m left (the window closes 2026-11-24T08:00:00Z)"
    assert "closed at" in dict(view(WINDOW, T1 + timedelta(days=2)).facts())["Enforcement window"]
    assert view(WINDOW, T1).exposes is None  # information, not an exposure


def test_unreachable_and_resolved():
    facts = dict(view(UNREACHABLE, T1).facts())
    assert facts["What changed"] == "collection: working → failing (401 AADSTS7000215; 1 source(s) failed)"
    assert "unnoticed" in facts["Exposes"] and "consent" in facts["Fix"]
    resolved = view(RECOVERED, T1)
    assert resolved.resolution and resolved.exposes is None and dict(resolved.facts())["What changed"] == \
        "status: fail → pass"
    assert group(RECOVERED).title() == "Contoso <Ltd> & Co: Resolved: SMTP AUTH is disabled for the organisation."


def test_a_group_leads_with_its_most_important_event_whatever_the_order():
    forward, backward = group(WINDOW, FAILED, DRIFT), group(DRIFT, FAILED, WINDOW)
    assert forward.id == backward.id and forward.lead["type"] in ("control.failed", "drift.weakened")
    assert forward.events[-1]["type"] == "enforcement.window_started"
    assert forward.title().endswith("(+2 more)")


# --- the webhook contract ---------------------------------------------------------------------------------------------------

def test_webhook_payload_is_the_event_plus_id_tenant_name_and_links():
    single = group(FAILED).payload()
    assert single == {**{k: FAILED[k] for k in ("at", "tenantId", "type", "control", "severity", "summary",
                                                  "details")},
                      "id": FAILED["id"], "tenantName": "Contoso <Ltd> & Co", "links": {"dashboard": LINK}}
    grouped = group(FAILED, DRIFT).payload()
    assert [e["id"] for e in grouped["events"]] == [grouped["id"], *[e["id"] for e in grouped["events"][1:]]]
    assert {e["id"] for e in grouped["events"]} == {FAILED["id"], DRIFT["id"]}
    hook = GenericWebhook("siem", httpx.URL("https://siem.example.com/x"), "0123456789abcdef")
    assert hook.render_alert(group(FAILED)) == single


# --- Teams ----------------------------------------------------------------------------------------------------------------

def test_teams_gets_one_adaptive_card_with_every_fact_and_a_link():
    message = TeamsWorkflow("soc", httpx.URL("https://x.logic.azure.com/w")).render_alert(group(FAILED, DRIFT, WINDOW))
    assert message["type"] == "message" and len(message["attachments"]) == 1
    attachment = message["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4" and card["$schema"].endswith(
        "adaptive-card.json")
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open in authwatch", "url": LINK}]
    text = dumps(card)
    for expected in ("enabled → enabledForReportingButNotEnforced", "admin@contoso.example", "status: pass → fail",
                     "Set-TransportConfig -SmtpClientAuthenticationDisabled $true", "22h 00m left", "password alone"):
        assert expected in text
    assert len([item for item in card["body"] if item["type"] == "Container"]) == 3
    assert len(dumps(message)) < 28_000


def test_teams_card_stays_small_with_many_events():
    many = [record("control.failed", f"c{i}", "medium", "x" * 2000, {"before": "pass", "after": "fail",
                                                                      "remediation": "y" * 3000})
            for i in range(30)]
    card = TeamsWorkflow("soc", httpx.URL("https://x/w")).render_alert(group(*many))["attachments"][0]["content"]
    assert 1 <= len([item for item in card["body"] if item["type"] == "Container"]) <= 10
    assert "more in the dashboard" in dumps(card) and len(dumps(card).encode()) < 28_000


# --- Slack ----------------------------------------------------------------------------------------------------------------

def test_slack_gets_block_kit_within_its_limits_and_escaped():
    slack = SlackWebhook("ops", httpx.URL("https://hooks.slack.com/services/x"))
    message = slack.render_alert(group(FAILED, DRIFT, WINDOW))
    assert message["text"].startswith("Contoso &lt;Ltd&gt; &amp; Co:") or message["text"].startswith("Contoso <Ltd>")
    blocks = message["blocks"]
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150
    assert blocks[-1] == {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text",
                                                                                       "text": "Open in authwatch"},
                                                            "url": LINK}]}
    text = dumps(blocks)
    assert "Contoso &lt;Ltd&gt; &amp; Co" in text  # mrkdwn control characters escaped
    assert "*Changed by:* admin@contoso.example" in text and "*What changed:* status: pass → fail" in text
    many = [record("control.failed", f"c{i}", "high", "z" * 5000, {"before": "pass", "after": "fail"})
            for i in range(40)]
    big = slack.render_alert(group(*many))["blocks"]
    assert len(big) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in big if b["type"] == "section")


# --- e-mail ---------------------------------------------------------------------------------------------------------------

def mail_channel():
    return GraphMail("mail", tenant_id=TENANT, credential=CredentialSpec.from_json(
        {"mode": "federated", "clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50",
         "managedIdentityClientId": "0b0e7a11-0000-4000-8000-000000000001"}), sender="authwatch@contoso.example",
        to=["soc@contoso.example"], cc=[], save_to_sent_items=False)


def test_email_is_an_html_sendmail_body_with_everything_escaped():
    hostile = record("control.failed", "exo_smtp_auth_disabled", "high", "<script>alert(1)</script>",
                     {"before": "pass", "after": "fail"})
    body = mail_channel().render_alert(group(hostile, DRIFT))
    message = body["message"]
    assert body["saveToSentItems"] is False and "ccRecipients" not in message
    assert message["body"]["contentType"] == "HTML"
    html = message["body"]["content"]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Contoso &lt;Ltd&gt; &amp; Co" in html and f'href="{LINK}"' in html
    assert message["subject"].startswith("[authwatch] HIGH: Contoso <Ltd> & Co: ")
    assert message["internetMessageHeaders"] == [{"name": "X-Authwatch-Alert-Id", "value": group(hostile, DRIFT).id}]


def test_email_keeps_a_remediation_one_command_per_line():
    fix = "Force new tokens:\nSet-User 'a@contoso.example' -STSRefreshTokensValidFrom ([DateTime]::UtcNow)\n" \
          "Set-User 'b@contoso.example' -STSRefreshTokensValidFrom ([DateTime]::UtcNow)"
    failed = record("control.failed", "entra_legacy_signins_blocked", "high", "Legacy sign-ins succeed.",
                    {"before": "pass", "after": "fail", "remediation": fix})
    html = mail_channel().render_alert(group(failed))["message"]["body"]["content"]
    assert "Force new tokens:<br>Set-User &#x27;a@contoso.example&#x27;" in html
    assert "UtcNow)<br>Set-User &#x27;b@contoso.example&#x27;" in html


# --- digests --------------------------------------------------------------------------------------------------------------

def test_every_channel_renders_a_digest():
    digest = Digest("d" * 32, T1 + timedelta(days=2, hours=3), "high",
                    (DigestEntry(TENANT, "Contoso", LINK, (FAILED, DRIFT)),
                     DigestEntry("2f0e5a1b-0000-4000-8000-000000000002", "Fabrikam", None, (UNREACHABLE,))))
    assert digest.title() == "authwatch reminder: 3 open high-severity alerts in 2 tenants"
    payload = digest.payload()
    assert payload["type"] == "authwatch.digest" and payload["id"] == "d" * 32
    assert [len(t["alerts"]) for t in payload["tenants"]] == [2, 1]
    assert payload["tenants"][0]["alerts"][0]["openSince"] == "2026-11-23T08:00:00Z"
    slack = dumps(SlackWebhook("ops", httpx.URL("https://h/x")).render_digest(digest))
    assert "open for 2d 3h" in slack and "Fabrikam" in slack
    teams = dumps(TeamsWorkflow("soc", httpx.URL("https://h/x")).render_digest(digest))
    assert "Contoso" in teams and "Fix:" in teams
    mail = mail_channel().render_digest(digest)["message"]
    assert mail["subject"] == digest.title() and "Fabrikam" in mail["body"]["content"]


def test_plain_text_for_the_demo_and_grouping_by_cycle():
    from shared.alerts.content import group_by_cycle, render_text

    later = {**DRIFT, "id": "later", "at": "2026-11-23T08:15:00Z"}
    groups = group_by_cycle([WINDOW, FAILED, later, UNREACHABLE])
    assert [[e["id"] for e in g] for g in groups] == [[FAILED["id"], UNREACHABLE["id"], WINDOW["id"]], ["later"]]
    text = render_text(group(*groups[0]))
    assert text.splitlines()[0] == "■ Contoso <Ltd> & Co: SMTP AUTH is enabled for the organisation. (+2 more)"
    for expected in ("What changed:", "status: pass → fail", "Fix:", "Set-TransportConfig", "22h 00m left",
                     f"→ {LINK}"):
        assert expected in text
