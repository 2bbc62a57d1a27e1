"""`authwatch tenants list|show|enable|disable|remove`: the fleet at a glance and one tenant's lifecycle.

Tenants are named by id, display name or verified domain (shared/cli/tenantref.py). The storage account comes from
the same settings the function app uses (AUTHWATCH_STORAGE_CONNECTION_STRING, …). The service functions are
shared/views/tenants_admin.py's, the same the HTTP API calls.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime, timezone
from typing import Any

from shared.cli.errors import UsageError
from shared.cli.fleetcmd import with_fleet
from shared.cli.output import add_output
from shared.cli.render import one_line, table
from shared.cli.tenantref import resolve_async
from shared.views import tenants_admin

LIST_COLUMNS = ("tenantId", "displayName", "enabled", "status", "lastSuccessAt", "openAlerts", "credentialMode",
                "problem", "onboarding")
PROBLEM_CHARS = 80  # a table cell; -o json / csv carry the whole text


def add_parsers(actions: Any) -> None:
    """Register list, show, enable, disable and remove under `authwatch tenants`."""
    listing = actions.add_parser(
        "list", help="every registered tenant: status, last success, open alerts, credential mode, problems",
        description="One row per registered tenant, by name: id, name, enabled or disabled, status (healthy, "
                    "failing, unreachable, never evaluated, …), last success, open alerts, credential mode, the "
                    "problem the last read ran into, and the onboarding state.")
    add_output(listing, ("table", "json", "csv"), "table")
    listing.set_defaults(run=run_list)

    show = actions.add_parser("show", help="one tenant: configuration (no secrets), status, open alerts, history")
    show.add_argument("tenant", metavar="ID", help="the tenant: id (GUID), display name or verified domain")
    show.add_argument("--history", type=int, default=tenants_admin.SHOWN_HISTORY, metavar="N",
                      help=f"recent history events to show (1–500, default {tenants_admin.SHOWN_HISTORY})")
    add_output(show, ("text", "json"), "text")
    show.set_defaults(run=run_show)

    for action, enabled, text in (("disable", False, "stop evaluating a tenant (its row and history stay)"),
                                  ("enable", True, "evaluate a disabled tenant again (at the next timer tick)")):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("tenant", metavar="ID", help="the tenant: id (GUID), display name or verified domain")
        parser.set_defaults(run=run_set_enabled, enabled=enabled)

    remove = actions.add_parser(
        "remove", help="remove a tenant from the registry and say what to withdraw in it (history kept unless "
                       "--purge)",
        description="Remove a tenant from the registry. Its history stays (re-adding it brings it back) unless "
                    "--purge, which deletes its state, results, history, open alerts and delivery records. Asks "
                    "for the tenant's id or name on a terminal; elsewhere --yes is required. Then prints what the "
                    "tenant's admins withdraw: the Exchange role group membership, the Global Reader role, the app's "
                    "enterprise application (its admin consent); for a customer onboarded through GDAP, Global "
                    "Reader and the Partner Center consent, which you withdraw from your side. Exit status: 0 removed, 1 not confirmed, 2 bad "
                    "input (or no --yes without a terminal).")
    remove.add_argument("tenant", metavar="ID", help="the tenant: id (GUID), display name or verified domain")
    remove.add_argument("--purge", action="store_true", help="delete its history too (cannot be undone)")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
    add_output(remove, ("text", "json"), "text")
    remove.set_defaults(run=run_remove)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- list ---------------------------------------------------------------------------------------------------------

def _onboarding_text(value: Any) -> str:
    if not value:
        return "-"
    if isinstance(value, dict) and value.get("state"):
        return str(value["state"]) + (f" ({value['fix']})" if value.get("fix") else "")
    return json.dumps(value, sort_keys=True)


def run_list(args: argparse.Namespace) -> int:
    rows = with_fleet(lambda fleet: tenants_admin.fleet_rows(fleet, now=_now()))
    listed = [{name: row.get(name) for name in LIST_COLUMNS} for row in rows]
    if args.format == "json":
        print(json.dumps(listed, indent=2))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(LIST_COLUMNS)
        for row in listed:
            writer.writerow(["" if row[name] is None else _onboarding_text(row[name]) if name == "onboarding"
                             else str(row[name]).lower() if isinstance(row[name], bool) else row[name]
                             for name in LIST_COLUMNS])
    elif not listed:
        print("No tenant is registered yet (authwatch tenants add, or authwatch tenants import FILE).")
    else:
        table(("NAME", "TENANT ID", "STATE", "STATUS", "LAST SUCCESS", "OPEN ALERTS", "CREDENTIAL", "ONBOARDING",
               "PROBLEM"),
              [(row["displayName"], row["tenantId"], "enabled" if row["enabled"] else "disabled", row["status"],
                row["lastSuccessAt"] or "never", str(row["openAlerts"]), row["credentialMode"],
                _onboarding_text(row["onboarding"]), one_line(row["problem"] or "-", PROBLEM_CHARS))
               for row in listed], status_columns=(3,))
        print(f"\n{len(listed)} tenant(s).")
    return 0


# -- show ---------------------------------------------------------------------------------------------------------

def run_show(args: argparse.Namespace) -> int:
    if not 1 <= args.history <= 500:
        raise UsageError(f"--history must be a whole number from 1 to 500, got {args.history}")

    async def body(fleet: Any) -> dict[str, Any]:
        tenant = await resolve_async(fleet.registry, args.tenant, "ID")
        return await tenants_admin.tenant_overview(fleet, tenant, now=_now(), history_limit=args.history)

    detail = with_fleet(body)
    if args.format == "json":
        print(json.dumps(detail, indent=2))
        return 0
    credential = detail["credential"]
    setting = next((f"{label} {credential[key]}" for key, label in (
        ("secretSetting", "secret in app setting"), ("certificateSetting", "certificate in app setting"),
        ("managedIdentityClientId", "managed identity")) if credential.get(key)), None)
    lines = [
        f"{detail['displayName']} ({detail['tenantId']})",
        f"  state:            {'enabled' if detail['enabled'] else 'disabled'}",
        f"  status:           {detail['status']}" + (f" — failing: {', '.join(detail['failing'])}"
                                                      if detail["failing"] else ""),
        f"  credential:       {detail['credentialMode']}, app {credential.get('clientId')}"
        + (f", {setting}" if setting else ""),
        f"  schedule:         {detail['scheduleMinutes'] or 'the fleet default'}"
        + (" minutes" if detail["scheduleMinutes"] else ""),
        f"  tags:             {', '.join(detail['tags']) or '-'}",
        f"  domains:          {', '.join(detail['verifiedDomains'][:5]) or '-'}",
        f"  exceptions:       {detail['exceptions']}; alert routing "
        + ("its own" if detail["routingConfigured"] else "the fleet's"),
        f"  last success:     {detail['lastSuccessAt'] or 'never'}",
        f"  last attempt:     {detail['lastAttemptAt'] or 'never'}"
        + (f" ({detail['consecutiveFailures']} failure(s) in a row)" if detail["consecutiveFailures"] else ""),
        f"  problem:          {detail['problem'] or '-'}",
        f"  onboarding:       {_onboarding_text(detail['onboarding'])}",
        f"  registered:       {detail['createdAt'] or '-'} (configuration changed {detail['updatedAt'] or '-'})",
        f"\nOpen alerts ({len(detail['openAlerts']) + detail['openAlertsOmitted']}):",
    ]
    lines += [f"  {alert['at']}  {alert['severity'] or '-':6}  {alert['summary'] or alert['type']}  [{alert['id']}]"
              + (" (acknowledged)" if alert["acknowledged"] else " (snoozed)" if alert["snoozed"] else "")
              for alert in detail["openAlerts"]] or ["  none"]
    lines.append(f"\nRecent history (newest first, {len(detail['history'])}):")
    lines += [f"  {event['at']}  {event['type']}  {event['summary'] or event['control'] or ''}"
              for event in detail["history"]] or ["  none"]
    print("\n".join(lines))
    return 0


# -- enable / disable ---------------------------------------------------------------------------------------------

def run_set_enabled(args: argparse.Namespace) -> int:
    async def body(fleet: Any) -> dict[str, Any]:
        tenant = await resolve_async(fleet.registry, args.tenant, "ID")
        return await tenants_admin.set_enabled(fleet, tenant, args.enabled)

    result = with_fleet(body)
    word = "enabled" if args.enabled else "disabled"
    who = f"{result['displayName']} ({result['tenantId']})"
    if not result["changed"]:
        print(f"{who} is already {word}; nothing changed.")
    elif args.enabled:
        print(f"Enabled {who}: the next timer tick evaluates it.")
    else:
        print(f"Disabled {who}: it is no longer evaluated; its results and history stay (authwatch tenants enable "
              "brings it back).")
    return 0


# -- remove -------------------------------------------------------------------------------------------------------

def _confirmed(tenant_id: str, name: str, purge: bool) -> bool:
    what = "and DELETE its history" if purge else "(its history is kept)"
    print(f"This removes {name} ({tenant_id}) from the registry {what}.", file=sys.stderr)
    try:
        typed = input("Type the tenant's id or name to confirm: ").strip()
    except EOFError:
        return False
    return typed.lower() in (tenant_id.lower(), name.strip().lower())


def run_remove(args: argparse.Namespace) -> int:
    async def find(fleet: Any) -> tuple[str, str]:
        tenant = await resolve_async(fleet.registry, args.tenant, "ID")
        config = await fleet.registry.get(tenant)
        if config is None:
            raise LookupError(f"no tenant {tenant} is registered")
        return tenant, config.display_name

    if not args.yes and not sys.stdin.isatty():
        raise UsageError("refusing to remove a tenant without a confirmation: no terminal to ask on, so pass --yes")
    tenant, name = with_fleet(find)
    if not args.yes and not _confirmed(tenant, name, args.purge):
        print("Not removed: the confirmation did not match.", file=sys.stderr)
        return 1
    result = with_fleet(lambda fleet: tenants_admin.remove_tenant(fleet, tenant, purge=args.purge))
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return 0
    if result["purged"]:
        rows = sum(result["deletedRows"].values())
        kept = f"its history was deleted ({rows} row(s))"
    else:
        kept = "its history is kept (re-adding it brings it back; `--purge` deletes it)"
    print(f"Removed {result['displayName']} ({result['tenantId']}) from the registry; {kept}.\n")
    print("To finish offboarding, withdraw what authwatch was given in the tenant:\n")
    for number, step in enumerate(result["withdraw"], 1):
        print(f"{number}. {step['title']} — {step['who']} ({step['scope']})\n   {step['text']}")
        for command in step["commands"]:
            print(f"     {command}")
        print()
    return 0
