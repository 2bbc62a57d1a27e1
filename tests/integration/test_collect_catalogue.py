"""Complete collection for the whole catalogue: SharePoint, sign-ins and audits since a watermark, every Exchange
cmdlet with $select, filters and paging, and the per-tenant failures recorded as such."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

from shared.cli import main
from shared.collect import TenantAccess, collect_tenant
from shared.model import LICENCE_ERROR_CODE, load_snapshot
from tests.integration.conftest import endpoints_for

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
APP = {"clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "clientSecret": "catalogue-secret"}
FULL = "0b000000-0000-4000-8000-000000000001"
UNLICENSED = "0b000000-0000-4000-8000-000000000002"


def signin(minutes_ago: int, app: str, error_code: int = 0, user: str = "scanner@contoso.com") -> dict:
    at = (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S.1234567Z")
    return {"id": f"s-{minutes_ago}-{app}", "createdDateTime": at, "userPrincipalName": user, "userId": "u1",
            "clientAppUsed": app, "ipAddress": "203.0.113.7", "status": {"errorCode": error_code},
            "appDisplayName": "Office 365 Exchange Online", "isInteractive": True}


def mailbox(i: int, **fields) -> dict:
    return {"Identity": f"user{i}", "PrimarySmtpAddress": f"user{i}@contoso.com",
            "ExternalDirectoryObjectId": f"00000000-0000-4000-8000-{i:012d}", "SmtpClientAuthenticationDisabled": None,
            "PopEnabled": False, "ImapEnabled": False, "ActiveSyncEnabled": True, "OWAEnabled": True, **fields}


def full_tenant(tenant_id: str, **extra) -> dict:
    return {
        "tenantId": tenant_id, "displayName": "Contoso",
        "graph": {
            "sharepointSettings": {"isLegacyAuthProtocolsEnabled": True, "sharingCapability": "disabled"},
            "signIns": [signin(30, "IMAP4"), signin(60, "Browser"), signin(90, "Authenticated SMTP", 50126),
                        signin(60 * 24 * 5, "POP3")],
            "directoryAudits": [{"id": "a1", "activityDateTime": "2026-11-23T07:00:00Z",
                                 "activityDisplayName": "Update conditional access policy",
                                 "loggedByService": "Conditional Access", "category": "Policy",
                                 "initiatedBy": {"user": {"userPrincipalName": "admin@contoso.com"}},
                                 "targetResources": []}],
        },
        "exchange": {
            "organizationConfig": {"Name": "contoso", "DefaultAuthenticationPolicy": "Block Basic Auth",
                                   "OAuth2ClientProfileEnabled": "True", "MailTipsAllTipsEnabled": True},
            "authenticationPolicies": [{"Name": "Block Basic Auth", "Identity": "Block Basic Auth",
                                        "AllowBasicAuthSmtp": False, "AllowBasicAuthPop": False,
                                        "WhenChanged": "2025-11-02T08:15:00+00:00"},
                                       {"Name": "Scanner", "Identity": "Scanner", "AllowBasicAuthSmtp": True}],
            "casMailboxes": [mailbox(i, SmtpClientAuthenticationDisabled=(False if i == 7 else None),
                                     PopEnabled=(i == 3)) for i in range(120)],
            "casMailboxPlans": [{"Name": "ExchangeOnlineEnterprise", "PopEnabled": True, "ImapEnabled": True,
                                 "ActiveSyncEnabled": True}],
            "users": [{"Identity": "user7", "UserPrincipalName": "user7@contoso.com",
                       "ExternalDirectoryObjectId": "00000000-0000-4000-8000-000000000007",
                       "AuthenticationPolicy": "Scanner"},
                      {"Identity": "user8", "UserPrincipalName": "user8@contoso.com", "AuthenticationPolicy": None}],
        },
        **extra,
    }


def scenario() -> dict:
    return {"app": dict(APP), "pageSize": {"exchange": 50},
            "tenants": [full_tenant(FULL), full_tenant(UNLICENSED, licensed=False)]}


def collect(sim, tenant_id: str, since=None):
    access = TenantAccess(tenant_id=tenant_id, client_id=APP["clientId"], client_secret=APP["clientSecret"])
    return asyncio.run(collect_tenant(access, endpoints_for(sim), now=NOW, since=since))


def test_every_source_is_collected(simulator_for):
    sim = simulator_for(scenario())
    snap = collect(sim, FULL)
    assert snap.errors == {}
    assert snap.graph["sharepointSettings"]["isLegacyAuthProtocolsEnabled"] is True
    assert snap.exchange["organizationConfig"]["DefaultAuthenticationPolicy"] == "Block Basic Auth"
    assert "MailTipsAllTipsEnabled" not in snap.exchange["organizationConfig"]  # $select asked only for what matters
    assert [p["Name"] for p in snap.exchange["authenticationPolicies"]] == ["Block Basic Auth", "Scanner"]
    assert snap.exchange["casMailboxPlans"][0]["PopEnabled"] is True
    assert len(snap.exchange["casMailboxes"]) == 120  # paged: 3 pages of 50, same body re-posted
    assert sim.request_counts["exchange.Get-CASMailbox"] == 3
    assert "OWAEnabled" not in snap.exchange["casMailboxes"][0]
    assert [u["Identity"] for u in snap.exchange["users"]] == ["user7"]  # only users with their own policy
    assert snap.graph["directoryAudits"][0]["initiatedBy"]["user"]["userPrincipalName"] == "admin@contoso.com"


def test_signins_are_read_since_the_watermark_and_only_legacy_ones_kept(simulator_for):
    sim = simulator_for(scenario())
    snap = collect(sim, FULL)  # default lookback 48 h: the 5-day-old POP3 sign-in is outside it
    assert [s["clientAppUsed"] for s in snap.graph["signIns"]] == ["IMAP4", "Authenticated SMTP"]
    query = next(entry["query"] for entry in sim.requests_log if entry["endpoint"] == "graph.signIns")
    assert "createdDateTime ge 2026-11-21T08:00:00Z" in json.dumps(query)
    later = collect(sim, FULL, since=NOW - timedelta(minutes=45))
    assert [s["id"] for s in later.graph["signIns"]] == ["s-30-IMAP4"]


def test_missing_licence_is_recorded_as_the_licence_error(simulator_for):
    sim = simulator_for(scenario())
    snap = collect(sim, UNLICENSED)
    assert snap.errors["graph.signIns"].status == 403
    assert snap.errors["graph.signIns"].code == LICENCE_ERROR_CODE
    assert "graph.directoryAudits" not in snap.errors  # the audit log is in every Entra edition
    assert "signIns" not in snap.graph and snap.graph["sharepointSettings"]  # the rest still arrived


def test_missing_exchange_role_fails_every_exchange_source_with_a_hint(simulator_for):
    no_role = scenario()
    no_role["tenants"][0]["exchangeRole"] = False
    sim = simulator_for(no_role)
    snap = collect(sim, FULL)
    exchange_errors = {k: v for k, v in snap.errors.items() if k.startswith("exchange.")}
    assert len(exchange_errors) == 6
    assert all(e.status == 403 and "Global Reader" in e.message for e in exchange_errors.values())
    assert not snap.unreachable


def test_collect_command_writes_a_snapshot_that_evaluates(simulator_for, tmp_path, monkeypatch, capsys):
    sim = simulator_for(scenario())
    for name, value in {"AUTHWATCH_AUTHORITY_HOST": sim.url, "AUTHWATCH_GRAPH_URL": sim.graph_url,
                        "AUTHWATCH_EXCHANGE_URL": sim.url, "AUTHWATCH_CA_BUNDLE": sim.ca_path,
                        "AUTHWATCH_CLIENT_ID": APP["clientId"], "AUTHWATCH_CLIENT_SECRET": APP["clientSecret"]}.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "contoso.json"
    assert main(["collect", "--tenant", FULL, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "12 sources collected" in err and APP["clientSecret"] not in err
    snapshot = load_snapshot(out.read_text())
    assert snapshot.tenant_id == FULL and snapshot.exchange["casMailboxes"]
    assert APP["clientSecret"] not in out.read_text()
    assert main(["evaluate", "--snapshot", str(out), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["tenantId"] == FULL


def test_collect_command_refuses_bad_input(monkeypatch, capsys):
    monkeypatch.delenv("AUTHWATCH_CLIENT_SECRET", raising=False)
    assert main(["collect", "--tenant", "not-a-guid"]) == 2
    assert "GUID" in capsys.readouterr().err
    assert main(["collect", "--tenant", FULL, "--client-id", APP["clientId"]]) == 2
    assert "AUTHWATCH_CLIENT_SECRET" in capsys.readouterr().err
