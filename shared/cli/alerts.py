"""`authwatch alerts list|ack|snooze`: the open alerts of a tenant, and a person's decision on one of them."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from typing import Any

from shared.cli.output import add_output
from shared.cli.fleetcmd import tenant_arg, with_fleet
from shared.cli.render import table
from shared.views import api


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("alerts", help="list, acknowledge or snooze a tenant's open alerts")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="open alerts of one tenant, newest first")
    listing.add_argument("--tenant", required=True, metavar="TENANT", help="the tenant: id (GUID), display name or verified domain")
    add_output(listing, ("table", "json"), "table")
    listing.set_defaults(run=run_list)
    ack = actions.add_parser("ack", help="acknowledge an alert (it stays open until resolved, but stops reminding)")
    ack.add_argument("--tenant", required=True, metavar="TENANT", help="the tenant: id (GUID), display name or verified domain")
    ack.add_argument("--alert", required=True, metavar="ALERT_ID")
    ack.add_argument("--by", help="who acknowledges (shown in the dashboard)")
    ack.set_defaults(run=run_ack)
    snooze = actions.add_parser("snooze", help="silence an alert's reminders until a time")
    snooze.add_argument("--tenant", required=True, metavar="TENANT", help="the tenant: id (GUID), display name or verified domain")
    snooze.add_argument("--alert", required=True, metavar="ALERT_ID")
    snooze.add_argument("--until", required=True, metavar="TIME", help="ISO 8601, e.g. 2026-12-01T08:00:00Z")
    snooze.set_defaults(run=run_snooze)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def run_list(args: argparse.Namespace) -> int:
    tenant = tenant_arg(args.tenant)

    async def body(fleet: Any) -> list[dict[str, Any]]:
        return (await api.tenant_detail(fleet, tenant, now=_now(), history_limit=1))["openAlerts"]

    alerts = with_fleet(body)
    if args.format == "json":
        print(json.dumps({"tenantId": tenant, "openAlerts": alerts}))
        return 0
    if not alerts:
        print(f"No open alert for tenant {tenant}.")
        return 0
    table(("ID", "AT", "TYPE", "STATE", "SUMMARY"),
          [(a["id"], a["at"], a["type"], "acked" if a["acknowledged"] else "snoozed" if a["snoozed"] else "open",
            a["summary"]) for a in alerts])
    return 0


def run_ack(args: argparse.Namespace) -> int:
    tenant = tenant_arg(args.tenant)
    result = with_fleet(lambda fleet: api.acknowledge_alert(fleet, tenant, args.alert, {"by": args.by}, now=_now()))
    print(f"Acknowledged alert {args.alert} ({result.get('type')}) of tenant {tenant}.")
    return 0


def run_snooze(args: argparse.Namespace) -> int:
    tenant = tenant_arg(args.tenant)
    result = with_fleet(lambda fleet: api.snooze_alert(fleet, tenant, args.alert, {"until": args.until}, now=_now()))
    print(f"Snoozed alert {args.alert} of tenant {tenant} until {result.get('snoozedUntil')}.")
    return 0
