"""`authwatch report [-o html|csv|json|ocsf] [--tenant TENANT] [--out FILE] [--failing-only] [filters] [--demo]`:
the fleet, or one tenant, from storage.

Same data as the HTTP API (shared/views/reports.py documents the JSON schema, the CSV columns and the OCSF mapping).
Storage comes from AUTHWATCH_STORAGE_CONNECTION_STRING (or AzureWebJobsStorage); `--demo` starts Azurite and the
simulator and reports the demo fleet instead. Without --out, CSV, JSON and OCSF go to standard output (for scripts)
and HTML to ./authwatch-report.html (for people); `--out -` always means standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import datetime, timezone
from typing import Any, Mapping

from shared.cli.errors import UsageError
from shared.cli.output import EXIT_CODES, EXIT_FINDINGS, Filters, add_filters, add_output, gate

DEFAULT_HTML = "authwatch-report.html"

def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "report", help="write a fleet or tenant report (html, csv, json, ocsf) from storage",
        description="Report every registered tenant (or one) with each control's status, summary and remediation, "
                    "open alerts, drift and enforcement windows: the same data as the HTTP API, tenants in the "
                    "dashboard's order. Needs AUTHWATCH_STORAGE_CONNECTION_STRING (the monitor's storage account), "
                    "or --demo.",
        epilog="Formats: html (default): one self-contained file that prints well; csv: one row per tenant × "
               "control; json: the documented report schema (authwatch.report/1); ocsf: a JSON array of OCSF 1.8.0 "
               "Compliance Findings (class_uid 2003) for a SIEM. " + EXIT_CODES)
    add_output(parser, ("html", "csv", "json", "ocsf"), "html")
    parser.add_argument("--tenant", metavar="TENANT", help="only this tenant: id, display name or verified domain")
    parser.add_argument("--out", metavar="FILE",
                        help=f"where to write it ('-' for standard output; default: {DEFAULT_HTML} for html, "
                             "standard output otherwise)")
    parser.add_argument("--at", metavar="TIME",
                        help="judge open alerts and enforcement countdowns as of this ISO 8601 time (default: now; "
                             "the demo's data is on a simulated clock)")
    parser.add_argument("--failing-only", action="store_true",
                        help="only controls that are not passing (fail, pending, unknown); a tenant with nothing "
                             "failing is one line")
    parser.add_argument("--demo", action="store_true",
                        help="report the demo fleet: start Azurite and the simulator, evaluate it, report it")
    add_filters(parser)
    parser.set_defaults(run=run)


def _now(raw: str | None) -> datetime:
    if raw is None:
        return datetime.now(timezone.utc)
    from shared.model import parse_time_or_none

    moment = parse_time_or_none(raw)
    if moment is None:
        raise UsageError(f"--at must be an ISO 8601 time such as 2026-11-23T09:00:00Z, got {raw!r}")
    return moment


async def _build(env: Mapping[str, str], args: argparse.Namespace, filters: Filters,
                 now: datetime) -> tuple[str, dict[str, Any]]:
    from shared.cli.fleetcmd import stored_fleet
    from shared.cli.tenantref import resolve_async
    from shared.views.reports import build_report, render

    async with stored_fleet(env) as fleet:
        tenant_id = await resolve_async(fleet.registry, args.tenant) if args.tenant is not None else None
        report = await build_report(fleet, now=now, tenant_id=tenant_id, failing_only=args.failing_only,
                                    filters={"status": _list(filters.statuses), "control": _list(filters.controls),
                                             "severity": _list(filters.severities)})
        return render(report, args.format), report


def _list(values: set[str] | None) -> list[str] | None:
    return sorted(values) if values else None


def _from_storage(args: argparse.Namespace, filters: Filters) -> tuple[str, dict[str, Any]]:
    from shared.cli.fleetcmd import require_storage

    now = _now(args.at)
    require_storage("the report", "report the local demo fleet")
    return asyncio.run(_build(os.environ, args, filters, now))


def _from_demo(args: argparse.Namespace, filters: Filters) -> tuple[str, dict[str, Any]]:
    from shared.cli.demo_data import running_demo

    with running_demo(lambda message: print(message, file=sys.stderr), storage_from_env=False) as demo:
        now = _now(args.at) if args.at else demo.evaluated_at
        return asyncio.run(_build(demo.env, args, filters, now))


def run(args: argparse.Namespace) -> int:
    filters = Filters(args)
    from shared.cli.serve import quiet_logs

    quiet_logs(getattr(args, "verbose", False))
    try:
        text, report = (_from_demo if args.demo else _from_storage)(args, filters)
    except LookupError as error:
        raise UsageError(f"{str(error).strip(chr(39))}; run `authwatch report -o csv` to list the registered "
                         "tenants") from None
    out = args.out or (DEFAULT_HTML if args.format == "html" else "-")
    if out == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        if os.path.isdir(out):
            raise UsageError(f"--out {out} is a folder, expected a file name (e.g. {os.path.join(out, DEFAULT_HTML)})")
        try:
            with open(out, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
        except OSError as error:
            raise UsageError(f"cannot write {out}: {error.strerror or error}; choose another path with --out") \
                from None
        tenants = report["summary"]["tenants"]
        print(f"Wrote {os.path.abspath(out)}: {args.format} report of {tenants} tenant(s), "
              f"{report['summary']['openAlerts']} open alert(s)." + (" Open it in a browser; it prints well too."
                                                                      if args.format == "html" else ""),
              file=sys.stderr if args.format != "html" else sys.stdout)
    rows = [row for tenant in report["tenants"] for row in tenant["controls"]]
    tripped = gate(rows, getattr(args, "fail_on", None))
    if tripped:
        print(f"authwatch report: {len(tripped)} failing control result(s) of severity {args.fail_on} or higher "
              f"(exit {EXIT_FINDINGS}, --fail-on {args.fail_on})", file=sys.stderr)
        return EXIT_FINDINGS
    return 0
