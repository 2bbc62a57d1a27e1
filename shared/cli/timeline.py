"""`authwatch timeline --tenant TENANT [-o table|json] [--limit N] [--at TIME] [--demo]`: one tenant's timeline.

Every protection change (when, by whom where the audit log says, before → after), when it is in force by, when the
evidence confirmed or contradicted it, next to the platform's own dates (shared/views/timeline.py); newest first. The
JSON is what GET /api/tenants/{id}/timeline answers. Storage as `authwatch report`: AUTHWATCH_STORAGE_CONNECTION_STRING
(or AzureWebJobsStorage), or `--demo` for the demo fleet (starts Azurite and the simulator).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import datetime
from typing import Any, Mapping

from shared.cli.errors import UsageError
from shared.cli.output import EXIT_CODES, add_output


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "timeline", help="one tenant's timeline: protection changes, enforcement windows, platform dates",
        description="Show one tenant's timeline, newest first: every protection change with when it was made and by "
                    "whom (where the audit log says), what it changed, when it is in force by, when the evidence "
                    "confirmed it or contradicted it, next to Microsoft's own dates (SMTP AUTH Basic off by default, "
                    "SharePoint IDCRL off, the Microsoft-managed policies' switch-on date). Needs "
                    "AUTHWATCH_STORAGE_CONNECTION_STRING (the monitor's storage account), or --demo.",
        epilog="Formats: table (default): one line per entry; json: what GET /api/tenants/{id}/timeline answers. "
               + EXIT_CODES)
    add_output(parser, ("table", "json"), "table")
    parser.add_argument("--tenant", metavar="TENANT", required=True,
                        help="the tenant: id, display name or verified domain")
    parser.add_argument("--limit", metavar="N", default="100", help="at most N entries, 1 to 500 (default 100)")
    parser.add_argument("--at", metavar="TIME",
                        help="judge windows and dates as of this ISO 8601 time (default: now; the demo's data is on "
                             "a simulated clock)")
    parser.add_argument("--demo", action="store_true",
                        help="the demo fleet: start Azurite and the simulator, evaluate it, show its timeline")
    parser.set_defaults(run=run)


async def _build(env: Mapping[str, str], tenant: str, now: datetime, limit: int) -> dict[str, Any]:
    from shared.cli.fleetcmd import stored_fleet
    from shared.cli.tenantref import resolve_async
    from shared.views.api import tenant_timeline

    async with stored_fleet(env) as fleet:
        tenant_id = await resolve_async(fleet.registry, tenant)
        answer = await tenant_timeline(fleet, tenant_id, now=now, limit=limit)
        config = await fleet.registry.get(tenant_id)
        return {**answer, "displayName": getattr(config, "display_name", None)}


def _timeline(args: argparse.Namespace, limit: int) -> dict[str, Any]:
    from shared.cli.report import _now

    if args.demo:
        from shared.cli.demo_data import running_demo

        with running_demo(lambda message: print(message, file=sys.stderr), storage_from_env=False) as demo:
            now = _now(args.at) if args.at else demo.evaluated_at
            return asyncio.run(_build(demo.env, args.tenant, now, limit))
    from shared.cli.fleetcmd import require_storage

    now = _now(args.at)
    require_storage("the timeline", "show the local demo fleet's timeline")
    return asyncio.run(_build(os.environ, args.tenant, now, limit))


def print_table(answer: dict[str, Any]) -> None:
    from shared.cli.render import table
    from shared.views.timeline import entry_row

    name = answer.get("displayName") or answer["tenantId"]
    print(f"Timeline of {name} ({answer['tenantId']}) as of {answer['at']}, newest first:")
    rows = [entry_row(entry) for entry in answer["entries"]]
    table(("WHEN", "BY", "WHAT"),
          [(row["when"], row["by"] or "-",
            " · ".join(part for part in (row["what"], row["change"],
                                         f"in force: {row['inForce']}" if row["inForce"] else "", row["notes"])
                       if part)) for row in rows])
    if answer.get("omitted"):
        print(f"… and {answer['omitted']} older entries (raise --limit, up to 500).")
    if answer.get("historyTruncated"):
        print("Older history was not read: changes before it are not on this timeline.")


def run(args: argparse.Namespace) -> int:
    from shared.cli.serve import quiet_logs
    from shared.views.api import BadRequest, parse_limit

    try:
        limit = parse_limit(args.limit, "--limit", 100)
    except BadRequest as error:
        raise UsageError(str(error)) from None
    quiet_logs(getattr(args, "verbose", False))
    try:
        answer = _timeline(args, limit)
    except LookupError as error:
        raise UsageError(f"{str(error).strip(chr(39))}; run `authwatch report -o csv` to list the registered "
                         "tenants") from None
    if args.format == "json":
        sys.stdout.write(json.dumps(answer, indent=2, ensure_ascii=False) + "\n")
    else:
        print_table(answer)
    return 0
