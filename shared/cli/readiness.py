"""`authwatch readiness smtp-basic [--tenant TENANT] [-o table|json|csv] [--demo]`: who still sends with SMTP AUTH,
and which tenants break when Microsoft turns SMTP AUTH Basic off at the end of December 2026 (MC786329).

The same answer as GET /api/readiness/smtp-basic (shared/views/readiness.py says what authwatch can and cannot know:
it sees SMTP AUTH sign-ins, not whether they used Basic or OAuth). Storage comes from the settings `authwatch report`
uses (AUTHWATCH_STORAGE_CONNECTION_STRING or AzureWebJobsStorage); `--demo` reads the local demo fleet instead.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import sys
from datetime import datetime, timezone
from typing import Any, Mapping

from shared.cli.errors import UsageError
from shared.cli.output import EXIT_CODES, add_output

CSV_COLUMNS = ("tenant_id", "tenant_name", "verdict", "user", "mailbox", "client_ips", "last_seen", "sign_ins",
               "failed", "outcome", "smtp_auth", "basic_smtp_policy", "why", "fix")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("readiness", help="readiness for a Microsoft platform switch-off (smtp-basic)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="CHECK")
    smtp = actions.add_parser(
        "smtp-basic", help="who still sends with SMTP AUTH and breaks when Basic goes off (end of December 2026)",
        description="List, per tenant and worst first, who still signs in with SMTP AUTH (user, mailbox, client IP, "
                    "last seen, count over the last 48 hours), whether they break when Microsoft turns SMTP AUTH "
                    "Basic off at the end of December 2026 (MC786329), and how to move each one. authwatch sees SMTP "
                    "AUTH sign-ins, not Basic versus OAuth: confirm in the Exchange admin center's SMTP AUTH clients "
                    "report. Needs AUTHWATCH_STORAGE_CONNECTION_STRING (the monitor's storage account), or --demo.",
        epilog="Formats: table (default): one line per tenant and sender; json: the API's answer; csv: one row per "
               "sender (a tenant without senders is one row). " + EXIT_CODES)
    add_output(smtp, ("table", "json", "csv"), "table")
    smtp.add_argument("--tenant", metavar="TENANT", help="only this tenant: id, display name or verified domain")
    smtp.add_argument("--demo", action="store_true",
                      help="the demo fleet: start Azurite and the simulator, evaluate it, report it")
    smtp.set_defaults(run=run)


async def _answer(env: Mapping[str, str], raw_tenant: str | None, now: datetime) -> dict[str, Any]:
    from shared.cli.fleetcmd import stored_fleet
    from shared.cli.tenantref import resolve_async
    from shared.views.readiness import smtp_basic

    async with stored_fleet(env) as fleet:
        tenant_id = await resolve_async(fleet.registry, raw_tenant) if raw_tenant is not None else None
        return await smtp_basic(fleet, now=now, tenant_id=tenant_id)


def _load(args: argparse.Namespace) -> dict[str, Any]:
    if args.demo:
        from shared.cli.demo_data import running_demo

        with running_demo(lambda message: print(message, file=sys.stderr), storage_from_env=False) as demo:
            return asyncio.run(_answer(demo.env, args.tenant, demo.evaluated_at))
    from shared.cli.fleetcmd import require_storage

    require_storage("readiness", "list the local demo fleet's senders")
    return asyncio.run(_answer(os.environ, args.tenant, datetime.now(timezone.utc)))


def to_csv(answer: dict[str, Any]) -> str:
    from shared.views.reports import csv_cell

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for tenant in answer["tenants"]:
        head = [tenant["tenantId"], tenant["displayName"], tenant["verdict"]]
        settings = tenant["settings"]
        if not tenant["senders"]:
            writer.writerow([*map(csv_cell, head), *[""] * 7, csv_cell(settings["smtpAuth"]),
                             csv_cell(settings["basicSmtpPolicy"]), csv_cell(tenant["headline"]), ""])
        for s in tenant["senders"]:
            writer.writerow([*map(csv_cell, [*head, s["user"], s["mailbox"], " ".join(s["clientIps"]),
                                             s["lastSeen"]]),
                             csv_cell(s["count"], numeric=True), csv_cell(s["failed"], numeric=True),
                             *map(csv_cell, [s["outcome"], s["smtpAuth"]["effective"], s["policy"]["basicSmtp"],
                                             s["why"], s["fix"]])])
    return out.getvalue()


def _table(answer: dict[str, Any]) -> None:
    from shared.cli.render import table

    summary = answer["summary"]
    print(f"SMTP AUTH Basic readiness, switch-off {answer['switchOff']} ({answer['announcement']}): "
          f"{summary['verdicts'].get('will-break', 0)} of {summary['tenants']} tenant(s) will break, "
          f"{summary['breakingSenders']} sender(s).")
    rows = []
    for tenant in answer["tenants"]:
        rows.append([tenant["verdict"].upper(), tenant["displayName"], "", "", "", tenant["headline"]])
        for s in tenant["senders"]:
            rows.append(["  " + s["outcome"], s["user"], ", ".join(s["clientIps"][:3]), s["lastSeen"] or "",
                         str(s["count"]), f"{s['why']}. Fix: {s['fix']}"])
    table(["VERDICT", "TENANT / SENDER", "CLIENT IP", "LAST SEEN", "COUNT", "WHY / FIX"], rows)
    print()
    print(answer["knows"])
    for option in answer["fixOptions"]:
        print(f"- {option['name']}: {option['url']}")


def run(args: argparse.Namespace) -> int:
    from shared.cli.serve import quiet_logs

    quiet_logs(getattr(args, "verbose", False))
    try:
        answer = _load(args)
    except LookupError as error:
        raise UsageError(f"{str(error).strip(chr(39))}; run `authwatch report -o csv` to list the registered "
                         "tenants") from None
    if args.format == "json":
        sys.stdout.write(json.dumps(answer, indent=2, ensure_ascii=False) + "\n")
    elif args.format == "csv":
        sys.stdout.write(to_csv(answer))
    else:
        _table(answer)
    sys.stdout.flush()
    return 0
