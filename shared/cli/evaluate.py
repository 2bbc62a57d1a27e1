"""`authwatch evaluate --snapshot FILE [--format json|table]`: judge one snapshot offline.

Contract (product.md): --format json prints exactly one JSON object; exit 0 whatever the verdicts, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shared.cli.errors import UsageError
from shared.cli.render import table
from shared.controls.evaluate import evaluate
from shared.model import ControlResult, SnapshotError, TenantSnapshot, format_time, load_snapshot


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("evaluate", help="evaluate one snapshot file offline",
                                 description="Evaluate every control on one TenantSnapshot JSON file.")
    parser.add_argument("--snapshot", required=True, metavar="FILE", help="snapshot JSON file, or - for stdin")
    parser.add_argument("--format", choices=("json", "table"), default="table")
    parser.set_defaults(run=run)


def read_snapshot(path: str) -> TenantSnapshot:
    try:
        # utf-8-sig: Windows tools (PowerShell's Out-File, Notepad) often start UTF-8 files with a byte-order mark.
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
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
    return snapshot


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
    snapshot = read_snapshot(args.snapshot)
    results = evaluate(snapshot)
    if args.format == "json":
        print(json.dumps(report(snapshot, results, datetime.now(timezone.utc))))
        return 0
    print(f"Tenant {snapshot.tenant_id} — snapshot collected {format_time(snapshot.collected_at)}\n")
    table(("CONTROL", "STATUS", "SEVERITY", "SUMMARY"),
          [(r.control, str(r.status), str(r.severity), r.summary) for r in results], status_columns=(1,))
    return 0
