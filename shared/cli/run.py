"""`authwatch run`: one real cycle over the tenants registered in Table storage, with a progress bar.

For people with an app registration who want a cycle now, outside the timer: every enabled tenant is evaluated
through the same worker function the `evaluations` queue uses (due or not), and a summary is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import datetime, timezone
from typing import Any

from shared.cli.output import add_output
from shared.cli.fleetcmd import with_fleet
from shared.cli.render import table


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("run", help="evaluate every registered tenant once, now")
    add_output(parser, ("table", "json"), "table")
    parser.add_argument("--concurrency", type=int, default=16, help="tenants evaluated at once (default 16)")
    parser.set_defaults(run=run)


def _progress(done: int, total: int, started: float) -> None:
    if not sys.stderr.isatty():
        return
    width = 30
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} tenants "
                     f"{time.monotonic() - started:5.1f} s")
    sys.stderr.flush()


async def _cycle(fleet: Any, concurrency: int) -> list[dict[str, Any]]:
    from shared.cycle.fleet import EvaluationFailed, evaluate_registered

    now = datetime.now(timezone.utc)
    configs = [config for config in await fleet.registry.list() if config.enabled]
    gate = asyncio.Semaphore(max(1, concurrency))
    started, done, rows = time.monotonic(), 0, []

    async def one(config: Any) -> None:
        nonlocal done
        async with gate:
            try:
                outcome = await evaluate_registered(fleet, config.tenant_id, now=now)
                status = "unreachable" if outcome and outcome.unreachable else "ok"
                failing = sorted(r.control for r in (outcome.results if outcome else []) if r.status == "fail")
                rows.append({"tenantId": config.tenant_id, "displayName": config.display_name, "outcome": status,
                             "failing": failing, "events": len(outcome.events) if outcome else 0})
            except EvaluationFailed as error:
                rows.append({"tenantId": config.tenant_id, "displayName": config.display_name,
                             "outcome": "failed", "failing": [], "events": 0, "error": str(error)})
            done += 1
            _progress(done, len(configs), started)

    await asyncio.gather(*(one(config) for config in configs))
    if sys.stderr.isatty() and configs:
        sys.stderr.write("\n")
    return sorted(rows, key=lambda row: row["displayName"])


def run(args: argparse.Namespace) -> int:
    rows = with_fleet(lambda fleet: _cycle(fleet, args.concurrency))
    if args.format == "json":
        print(json.dumps({"tenants": rows}))
    elif not rows:
        print("No enabled tenant is registered: authwatch tenants add --tenant ID --name NAME")
    else:
        table(("TENANT", "OUTCOME", "EVENTS", "FAILING CONTROLS"),
              [(r["displayName"], r["outcome"], str(r["events"]), ", ".join(r["failing"]) or r.get("error", "-"))
               for r in rows])
    return 1 if any(row["outcome"] == "failed" for row in rows) else 0
