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
from shared.evaluate import evaluate
from shared.model import ControlResult, SnapshotError, TenantSnapshot, format_time, load_snapshot


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("evaluate", help="evaluate one snapshot file offline",
                                 description="Evaluate every control on one TenantSnapshot JSON file.")
    parser.add_argument("--snapshot", required=True, metavar="FILE", help="snapshot JSON file, or - for stdin")
    parser.add_argument("--format", choices=("json", "table"), default="table")
    parser.set_defaults(run=run)


def read_snapshot(path: str) -> TenantSnapshot:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: cannot read it ({error})") from None
    try:
        return load_snapshot(text)
    except SnapshotError as error:
        raise UsageError(f"{path}: {error}") from None


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
