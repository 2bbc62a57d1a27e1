"""`authwatch evaluate --snapshot FILE [-o table|json|csv|ocsf] [--status …] [--fail-on SEVERITY]`: judge one
snapshot offline.

Contract (product.md): --format json prints exactly one JSON object; exit 0 whatever the verdicts, 2 on bad input.
Added: filters keep the same shapes with fewer results; --fail-on SEVERITY exits 3 when a (shown) control of that
severity or higher fails; csv (one row per control) and ocsf (shared/views/ocsf.py) outputs.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shared.cli.errors import UsageError
from shared.cli.output import EXIT_CODES, EXIT_FINDINGS, Filters, add_filters, add_output, gate
from shared.cli.render import table
from shared.controls.evaluate import evaluate
from shared.controls.exceptions import check_snapshot_exceptions, snapshot_exceptions, unknown_controls
from shared.model import ControlResult, SnapshotError, TenantSnapshot, format_time, load_snapshot


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("evaluate", help="evaluate one snapshot file offline",
                                 description="Evaluate every control on one TenantSnapshot JSON file.",
                                 epilog=EXIT_CODES + " Without --fail-on the verdicts never change the exit status.")
    parser.add_argument("--snapshot", required=True, metavar="FILE", help="snapshot JSON file, or - for stdin")
    add_output(parser, ("table", "json", "csv", "ocsf"), "table")
    add_filters(parser)
    parser.set_defaults(run=run)


def read_snapshot(path: str) -> TenantSnapshot:
    try:
        # utf-8-sig: Windows tools (PowerShell's Out-File, Notepad) often start UTF-8 files with a byte-order mark.
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: cannot read it: it is a folder, expected a snapshot file (a folder of snapshots "
                         "is for `authwatch replay`)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: cannot read it ({error})") from None
    try:
        snapshot = load_snapshot(text)
    except SnapshotError as error:
        raise UsageError(f"{path}: {error}") from None
    except (ValueError, RecursionError) as error:
        # json.loads' own limits: numbers over 4,300 digits (ValueError), nesting deeper than the recursion limit.
        raise UsageError(f"{path}: snapshot: not valid JSON ({error})") from None
    problem = _wrong_type(snapshot) or _out_of_range(snapshot) or _lone_surrogate(snapshot.to_json(), "")
    if problem:
        raise UsageError(f"{path}: {problem}")
    try:
        check_snapshot_exceptions(snapshot)  # here, not in shared.model: exceptions sit above the model's layer
    except SnapshotError as error:
        raise UsageError(f"{path}: {error}") from None
    return snapshot


def warn_unknown_controls(command: str, snapshot: TenantSnapshot, said: set[str] | None = None) -> None:
    """An exception naming a control authwatch does not have covers nothing: said on stderr (stdout keeps its
    contract), once per exception id when `said` is shared across snapshots."""
    said = set() if said is None else said
    for record in unknown_controls(snapshot_exceptions(snapshot)):
        if record.id not in said:
            said.add(record.id)
            print(f"authwatch {command}: warning: exception {record.id} names control {record.control!r}, which "
                  "authwatch does not have: it covers nothing", file=sys.stderr)


# A hand-made snapshot may hold values the envelope check lets through but the date arithmetic of compare (evidence
# horizon, enforcement window) cannot take: keep collectedAt and the window far inside datetime's range.
EARLIEST_COLLECTED_AT = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST_COLLECTED_AT = datetime(9000, 1, 1, tzinfo=timezone.utc)
MAX_WINDOW_HOURS = 24 * 366


# What each source is in a snapshot file: what the collectors write (Graph collections are lists of objects, the
# singletons objects; Exchange's Get-* cmdlets answer a list even for a singleton, so either is accepted there).
# A source of another type is bad input (exit 2, the field named), not a verdict of "unknown" (README contract).
_SOURCE_TYPES: dict[str, tuple[type, ...]] = {
    "graph.organization": (dict,), "graph.securityDefaults": (dict,), "graph.conditionalAccessPolicies": (list,),
    "graph.sharepointSettings": (dict,), "graph.signIns": (list,), "graph.directoryAudits": (list,),
    "exchange.organizationConfig": (dict, list), "exchange.transportConfig": (dict, list),
    "exchange.authenticationPolicies": (list,), "exchange.casMailboxes": (list,), "exchange.casMailboxPlans": (list,),
    "exchange.users": (list,),
}
_TYPE_NAMES = {dict: "an object", list: "a list"}


def _wrong_type(snapshot: TenantSnapshot) -> str | None:
    for source, expected in _SOURCE_TYPES.items():
        section, _, name = source.partition(".")
        items = snapshot.graph if section == "graph" else snapshot.exchange
        if name in items and not isinstance(items[name], expected):
            wanted = " or ".join(_TYPE_NAMES[kind] for kind in expected)
            got = "null" if items[name] is None else type(items[name]).__name__
            return f"{source}: expected {wanted}, got {got} ({str(items[name])[:40]!r})"
    return None


def _out_of_range(snapshot: TenantSnapshot) -> str | None:
    if not EARLIEST_COLLECTED_AT <= snapshot.collected_at < LATEST_COLLECTED_AT:
        return (f"collectedAt: {snapshot.collected_at.isoformat()} is out of range (expected a time from "
                f"{EARLIEST_COLLECTED_AT.year} to before {LATEST_COLLECTED_AT.year})")
    hours = snapshot.settings.get("enforcementWindowHours")
    if hours is not None and not hours <= MAX_WINDOW_HOURS:  # NaN and infinity fail this comparison too
        return f"settings.enforcementWindowHours: expected a positive number of hours up to {MAX_WINDOW_HOURS}, " \
               f"got {hours!r}"
    return None


def _lone_surrogate(value: Any, where: str) -> str | None:
    """JSON escapes can spell half a UTF-16 pair ("\\ud800"), which is not text: it cannot be printed or stored."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{where or 'snapshot'}: contains a lone UTF-16 surrogate escape, which is not valid text"
        return None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and _lone_surrogate(key, where):
            return f"{where or 'snapshot'}: a field name holds a lone UTF-16 surrogate escape, which is not valid text"
        name = f"{where}[{key}]" if isinstance(key, int) else (f"{where}.{key}" if where else key)
        problem = _lone_surrogate(item, name)
        if problem:
            return problem
    return None


def report(snapshot: TenantSnapshot, results: list[ControlResult], evaluated_at: datetime) -> dict[str, Any]:
    return {
        "tenantId": snapshot.tenant_id,
        "evaluatedAt": format_time(evaluated_at),
        "results": [result.to_json() for result in results],
    }


def run(args: argparse.Namespace) -> int:
    filters = Filters(args)
    snapshot = read_snapshot(args.snapshot)
    warn_unknown_controls("evaluate", snapshot)
    results = [r for r in evaluate(snapshot) if filters.keep(r.to_json())]
    now = datetime.now(timezone.utc)
    if args.format == "json":
        print(json.dumps(report(snapshot, results, now)))
    elif args.format == "csv":
        _csv(snapshot, results)
    elif args.format == "ocsf":
        _ocsf(snapshot, results, now)
    else:
        print(f"Tenant {snapshot.tenant_id} — snapshot collected {format_time(snapshot.collected_at)}\n")
        if results:
            table(("CONTROL", "STATUS", "SEVERITY", "SUMMARY"),
                  [(r.control, str(r.status), str(r.severity), r.summary) for r in results], status_columns=(1,))
        else:
            print("No control matches the filters.")
    tripped = gate([r.to_json() for r in results], getattr(args, "fail_on", None))
    if tripped:
        print(f"authwatch evaluate: {len(tripped)} control(s) of severity {args.fail_on} or higher fail: "
              f"{', '.join(r['control'] for r in tripped)} (exit {EXIT_FINDINGS}, --fail-on {args.fail_on})",
              file=sys.stderr)
        return EXIT_FINDINGS
    return 0


def _csv(snapshot: TenantSnapshot, results: list[ControlResult]) -> None:
    from shared.views.reports import csv_cell

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(("tenant_id", "collected_at", "control", "status", "severity", "summary", "frameworks",
                     "remediation"))
    for r in results:
        writer.writerow([csv_cell(cell) for cell in (snapshot.tenant_id, format_time(snapshot.collected_at),
                                                     r.control, str(r.status), str(r.severity), r.summary,
                                                     "; ".join(r.frameworks), r.remediation)])


def _ocsf(snapshot: TenantSnapshot, results: list[ControlResult], now: datetime) -> None:
    from shared.controls import registered
    from shared.views import ocsf

    titles = {control_id: control.metadata.title for control_id, control in registered().items()}
    organization = snapshot.graph.get("organization")
    if isinstance(organization, dict) and isinstance(organization.get("value"), list):
        organization = (organization["value"] or [None])[0]
    name = organization.get("displayName") if isinstance(organization, dict) else None
    rows = [{**r.to_json(), "title": titles.get(r.control, r.control),
             "evaluatedAt": format_time(snapshot.collected_at)} for r in results]
    sys.stdout.write(ocsf.to_json(ocsf.finding(row, tenant_id=snapshot.tenant_id, tenant_name=name, now=now,
                                               product_version=_version()) for row in rows))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("authwatch")
    except PackageNotFoundError:  # pragma: no cover
        return ""
