"""`authwatch report --format html|csv|json [--tenant ID] [--out FILE]`: the fleet, or one tenant, from storage.

Same data as the HTTP API (shared/views/reports.py documents the JSON schema and the CSV columns). Storage comes from
AUTHWATCH_STORAGE_CONNECTION_STRING (or AzureWebJobsStorage). Without --out, CSV and JSON go to standard output
(for scripts) and HTML to ./authwatch-report.html (for people); `--out -` always means standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import datetime, timezone
from typing import Any

from shared.cli.errors import UsageError

DEFAULT_HTML = "authwatch-report.html"


def add_parser(commands: Any) -> None:
    from shared.views.reports import FORMATS

    parser = commands.add_parser(
        "report", help="write a fleet or tenant report (html, csv, json) from storage",
        description="Report every registered tenant (or one) with each control's status, summary and remediation, "
                    "open alerts, drift and enforcement windows: the same data as the HTTP API.")
    parser.add_argument("--format", choices=FORMATS, default="html",
                        help="html: one self-contained file that prints well (default); csv: one row per tenant × "
                             "control; json: the documented report schema")
    parser.add_argument("--tenant", metavar="ID", help="only this tenant (its GUID)")
    parser.add_argument("--out", metavar="FILE",
                        help=f"where to write it ('-' for standard output; default: {DEFAULT_HTML} for html, "
                             "standard output otherwise)")
    parser.add_argument("--at", metavar="TIME",
                        help="judge open alerts and enforcement countdowns as of this ISO 8601 time (default: now; "
                             "the demo's data is on a simulated clock)")
    parser.set_defaults(run=run)


def _now(raw: str | None) -> datetime:
    if raw is None:
        return datetime.now(timezone.utc)
    from shared.model import parse_time_or_none

    moment = parse_time_or_none(raw)
    if moment is None:
        raise UsageError(f"--at must be an ISO 8601 time such as 2026-11-23T09:00:00Z, got {raw!r}")
    return moment


async def _build(env: Any, fmt: str, tenant_id: str | None, now: datetime) -> tuple[str, dict[str, Any]]:
    from shared.bootstrap import build_fleet
    from shared.views.reports import build_report, render

    fleet = build_fleet(env)
    try:
        try:
            await asyncio.wait_for(fleet.create(), timeout=30)
        except Exception as error:  # noqa: BLE001 - any failure here means the same thing to the user
            first = (str(error).strip().splitlines() or [""])[0][:300]
            raise UsageError(f"cannot reach the storage account ({type(error).__name__}: {first}); check "
                             "AUTHWATCH_STORAGE_CONNECTION_STRING (`authwatch serve --demo` prints the one of its "
                             "demo data)") from None
        report = await build_report(fleet, now=now, tenant_id=tenant_id)
        return render(report, fmt), report
    finally:
        await fleet.close()


def run(args: argparse.Namespace) -> int:
    from shared.settings import Settings, SettingsError
    from shared.views.api import BadRequest, tenant_id_from

    tenant_id = None
    if args.tenant is not None:
        try:
            tenant_id = tenant_id_from(args.tenant)
        except BadRequest:
            raise UsageError(f"--tenant must be a tenant id (GUID) such as 8c1d0f4e-1a2b-4c3d-8e9f-000000000001, "
                             f"got {args.tenant!r}") from None
    now = _now(args.at)
    from shared.cli.serve import quiet_logs

    quiet_logs(getattr(args, "verbose", False))
    try:
        Settings.from_env()
    except SettingsError as error:
        raise UsageError(f"{error}: set it to the storage account the monitor writes to (or run `authwatch serve "
                         "--demo` to look at the demo fleet)") from None
    try:
        text, report = asyncio.run(_build(os.environ, args.format, tenant_id, now))
    except LookupError as error:
        raise UsageError(f"{str(error).strip(chr(39))}; run `authwatch report --format csv` to list the registered "
                         "tenants") from None
    out = args.out or (DEFAULT_HTML if args.format == "html" else "-")
    if out == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    try:
        with open(out, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    except OSError as error:
        raise UsageError(f"cannot write {out}: {error.strerror or error}; choose another path with --out") from None
    tenants = report["summary"]["tenants"]
    print(f"Wrote {os.path.abspath(out)}: {args.format} report of {tenants} tenant(s), "
          f"{report['summary']['openAlerts']} open alert(s)." + (" Open it in a browser; it prints well too."
                                                                  if args.format == "html" else ""),
          file=sys.stderr if args.format != "html" else sys.stdout)
    return 0

