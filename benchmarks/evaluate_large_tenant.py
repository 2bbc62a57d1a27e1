"""Evaluate one synthetic big tenant: 50,000 mailboxes, 200 Conditional Access policies, 10,000 legacy sign-ins.

    python -m benchmarks.evaluate_large_tenant [--mailboxes N] [--policies N] [--signins N] [--smtp-auth-on N]
                                               [--persist] [--json FILE]

Prints the time to parse the snapshot JSON, the time to evaluate every control, and the peak memory of the
process (target: evaluation under 2 s and 500 MB on a 2-core machine). `--persist` then runs the worker's whole
path on the same tenant twice (the simulator serves it over HTTPS, Azurite stores it): collect, evaluate, compare,
persist, and prints each cycle's time and the stored state's size (bounded: it must fit one Table entity, 1 MiB).
`--smtp-auth-on N`: how many mailboxes switch SMTP AUTH on for themselves (default every 97th; the worst case is
all of them). Numbers, not a test: nothing asserts here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
PROTOCOLS = ("ActiveSync", "Autodiscover", "Imap", "Mapi", "OfflineAddressBook", "OutlookService", "Pop",
             "Powershell", "ReportingWebServices", "Rpc", "Smtp", "WebServices")
LEGACY_APPS = ("IMAP4", "POP3", "Authenticated SMTP", "Exchange ActiveSync", "Other clients")


def _policy(i: int) -> dict[str, Any]:
    """A mix: a few real blocks, many MFA policies, some narrowed or report-only blocks."""
    kind = i % 10
    return {
        "id": f"{i:08d}-0000-4000-8000-000000000000", "displayName": f"Policy {i}",
        "createdDateTime": "2024-03-01T10:00:00Z", "modifiedDateTime": "2026-10-01T10:00:00.1234567Z",
        "state": "enabledForReportingButNotEnforced" if kind == 1 else "enabled",
        "conditions": {
            "clientAppTypes": ["exchangeActiveSync", "other"] if kind < 3 else ["browser", "mobileAppsAndDesktopClients"],
            "users": {"includeUsers": ["All"], "excludeUsers": [f"{j:08d}-1111-4000-8000-000000000000" for j in range(i % 4)],
                      "excludeGroups": [], "excludeRoles": []},
            "applications": {"includeApplications": ["All"], "excludeApplications": []},
            "locations": {"includeLocations": ["All"], "excludeLocations": []} if kind == 2 else None,
            "platforms": None, "devices": None, "userRiskLevels": ["high"] if kind == 2 else [],
            "signInRiskLevels": [], "servicePrincipalRiskLevels": [], "insiderRiskLevels": None,
        },
        "grantControls": {"operator": "OR", "builtInControls": ["block"] if kind < 3 else ["mfa"]},
    }


def synthetic_snapshot(mailboxes: int, policies: int, signins: int, smtp_auth_on: int | None = None) -> dict[str, Any]:
    on = set(range(0, mailboxes, 97)) if smtp_auth_on is None else set(range(min(smtp_auth_on, mailboxes)))
    users = [{"Identity": f"user{i}", "UserPrincipalName": f"user{i}@contoso.com",
              "ExternalDirectoryObjectId": f"{i:08d}-2222-4000-8000-000000000000",
              "AuthenticationPolicy": f"Policy {i % 20}"} for i in range(0, mailboxes, 10)]
    return {
        "schemaVersion": 1, "tenantId": "8c1d0f4e-1a2b-4c3d-8e9f-00000000beef",
        "collectedAt": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "settings": {"approvedExclusions": {"users": ["00000000-1111-4000-8000-000000000000"]}},
        "graph": {
            "organization": {"id": "8c1d0f4e-1a2b-4c3d-8e9f-00000000beef", "displayName": "Big Corp"},
            "securityDefaults": {"isEnabled": False},
            "conditionalAccessPolicies": [_policy(i) for i in range(policies)],
            "sharepointSettings": {"isLegacyAuthProtocolsEnabled": False},
            "signIns": [{"id": f"s{i}", "createdDateTime": (NOW - timedelta(seconds=17 * i)).isoformat(),
                         "userPrincipalName": f"user{i % 5000}@contoso.com", "userId": f"u{i % 5000}",
                         "clientAppUsed": LEGACY_APPS[i % len(LEGACY_APPS)], "ipAddress": "203.0.113.7",
                         "status": {"errorCode": 0 if i % 3 == 0 else 50126}} for i in range(signins)],
            "directoryAudits": [],
        },
        "exchange": {
            "organizationConfig": {"DefaultAuthenticationPolicy": "Policy 0", "OAuth2ClientProfileEnabled": True},
            "transportConfig": {"SmtpClientAuthenticationDisabled": True},
            "authenticationPolicies": [{"Name": f"Policy {p}", "Identity": f"Policy {p}",
                                        **{f"AllowBasicAuth{x}": (p % 7 == 3 and x == "Smtp") for x in PROTOCOLS}}
                                       for p in range(20)],
            "casMailboxes": [{"Identity": f"user{i}", "PrimarySmtpAddress": f"user{i}@contoso.com",
                              "ExternalDirectoryObjectId": f"{i:08d}-2222-4000-8000-000000000000",
                              "SmtpClientAuthenticationDisabled": "False" if i in on else None,
                              "PopEnabled": i % 53 == 0, "ImapEnabled": i % 61 == 0, "ActiveSyncEnabled": True}
                             for i in range(mailboxes)],
            "casMailboxPlans": [{"Name": "ExchangeOnlineEnterprise", "PopEnabled": True, "ImapEnabled": False}],
            "users": users,
        },
        "errors": {},
    }


async def persist(document: dict[str, Any]) -> dict[str, Any]:
    """The queue worker's path for the synthetic tenant, twice (a second cycle 15 minutes later, one more override)."""
    from shared.collect import MicrosoftEndpoints, TenantAccess
    from shared.cycle.service import Monitor, run_cycle
    from shared.storage.queues import ALERTS_QUEUE, JsonQueue
    from shared.storage.tenant_store import TenantStore
    from simulator import Simulator
    from simulator.azurite import Azurite

    app = {"clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "clientSecret": "benchmark-secret"}
    tenant = document["tenantId"]
    signins = [{**item, "createdDateTime": item["createdDateTime"].replace("+00:00", "Z")}
               for item in document["graph"]["signIns"]]
    scenario = {"app": app, "pageSize": {"graph": 1000, "exchange": 1000},
                "tenants": [{"tenantId": tenant, "displayName": "Big Corp",
                             "graph": {**document["graph"], "signIns": signins},
                             "exchange": document["exchange"]}]}
    figures: dict[str, Any] = {}
    with Simulator(scenario) as sim, Azurite() as azurite:
        endpoints = MicrosoftEndpoints(authority=sim.url, graph=sim.graph_url, exchange=sim.url, ca_bundle=sim.ca_path)
        connection = azurite.connection_string
        monitor = Monitor(TenantStore.from_connection_string(connection),
                          JsonQueue.from_connection_string(connection, ALERTS_QUEUE), endpoints)
        await monitor.create()
        access = TenantAccess(tenant_id=tenant, client_id=app["clientId"], client_secret=app["clientSecret"])
        try:
            for number, label in enumerate(("first", "second")):
                if number:
                    sim.update_tenant(tenant, lambda t: t["exchange"]["casMailboxes"].append(
                        {"Identity": "printer", "PrimarySmtpAddress": "zz-printer@contoso.com",
                         "SmtpClientAuthenticationDisabled": False, "PopEnabled": False, "ImapEnabled": False,
                         "ActiveSyncEnabled": True}))
                began = time.perf_counter()
                [outcome] = await run_cycle([access], monitor, now=NOW + timedelta(minutes=15 * number))
                wall = time.perf_counter() - began
                record = await monitor.store.load(tenant)
                state_chars = len(json.dumps(record.state)) if record.state else 0
                figures[label] = {"wall_s": round(wall, 2), "failure": outcome.failure, "state_chars": state_chars,
                                  "events": [event.type for event in outcome.events]}
                print(f"  worker path, {label} cycle: {wall:.2f} s, state {state_chars:,} characters "
                      f"(one entity holds 520,000), {len(outcome.events)} event(s)"
                      + (f", FAILED: {outcome.failure}" if outcome.failure else ""))
        finally:
            await monitor.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=50_000)
    parser.add_argument("--policies", type=int, default=200)
    parser.add_argument("--signins", type=int, default=10_000)
    parser.add_argument("--smtp-auth-on", type=int, metavar="N", help="mailboxes with SMTP AUTH on for themselves")
    parser.add_argument("--persist", action="store_true", help="also run the worker's path: HTTP, evaluate, persist")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)

    from shared.controls import controls
    from shared.controls.evaluate import evaluate
    from shared.model import EvaluationContext, load_snapshot

    document = synthetic_snapshot(args.mailboxes, args.policies, args.signins, args.smtp_auth_on)
    text = json.dumps(document)
    started = time.perf_counter()
    snapshot = load_snapshot(text)
    parsed = time.perf_counter()
    results = evaluate(snapshot)
    evaluated = time.perf_counter()
    per_control = {}
    for control in controls():
        begin = time.perf_counter()
        control.check(snapshot, EvaluationContext())
        per_control[control.id] = round(time.perf_counter() - begin, 4)
    figures = {
        "mailboxes": args.mailboxes, "policies": args.policies, "signins": args.signins,
        "snapshot_mb": round(len(text) / 1e6, 1),
        "parse_s": round(parsed - started, 3),
        "evaluate_s": round(evaluated - parsed, 3),
        "per_control_s": per_control,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "verdicts": {r.control: str(r.status) for r in results},
    }
    print(f"Synthetic tenant: {args.mailboxes:,} mailboxes, {args.policies} CA policies, {args.signins:,} legacy "
          f"sign-ins ({figures['snapshot_mb']} MB of snapshot JSON)")
    print(f"  parse snapshot : {figures['parse_s']:.3f} s")
    print(f"  evaluate (all {len(results)} controls): {figures['evaluate_s']:.3f} s   (target < 2 s)")
    for control_id, seconds in per_control.items():
        print(f"    {control_id:<34} {seconds:.4f} s   {figures['verdicts'][control_id]}")
    print(f"  peak RSS       : {figures['peak_rss_mb']:.0f} MB   (target < 500 MB)")
    if args.persist:
        figures["persist"] = asyncio.run(persist(document))
        figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(f"  peak RSS after the worker path: {figures['peak_rss_mb']:.0f} MB")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
