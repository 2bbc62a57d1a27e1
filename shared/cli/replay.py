"""`authwatch replay DIR|FILE... [--format json|table] [--baseline FILE]`: what the timer would have alerted on.

Feeds snapshots, ordered by collectedAt, through the same compare the queue worker uses, starting from an empty
state; the first snapshot of each tenant becomes its baseline unless --baseline gives one. Prints the events, one
JSON object per line (the contract of product.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shared.cli.errors import UsageError
from shared.cli.output import add_output
from shared.cli.evaluate import read_snapshot, warn_unknown_controls
from shared.cli.render import table
from shared.model import TenantSnapshot, format_time
from shared.state.compare import compare
from shared.state.config import Config, control_config
from shared.state.events import Event


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("replay", help="replay a series of snapshots and print the events they raise",
                                 description="Replay snapshots in collectedAt order through compare; print events.")
    parser.add_argument("inputs", nargs="+", metavar="DIR|FILE", help="snapshot files, or folders of *.json")
    add_output(parser, ("json", "table"), "json")
    parser.add_argument("--baseline", metavar="FILE", help="a snapshot whose configuration is the approved baseline")
    parser.set_defaults(run=run)


def snapshot_files(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        try:
            is_dir, exists = path.is_dir(), path.exists()
            found = sorted(path.glob("*.json")) if is_dir else []
        except OSError as error:  # e.g. a name too long for the file system
            raise UsageError(f"{item}: cannot read it ({error.strerror or error})") from None
        if is_dir:
            if not found:
                raise UsageError(f"{item}: no *.json snapshot in this folder")
            files.extend(found)
        elif exists:
            files.append(path)
        else:
            raise UsageError(f"{item}: no such file or folder")
    return files


def replay(snapshots: list[TenantSnapshot], baselines: dict[str, Config] | None = None,
           skipped: list[int] | None = None) -> list[Event]:
    """Events of a time-ordered series, exactly as the timer path would raise them (no storage involved).
    `skipped` collects the positions (in `snapshots`) of those not newer than the tenant's previous one: the
    worker treats such a snapshot as a retry and changes nothing, and so does replay."""
    states: dict[str, dict[str, Any] | None] = {}
    known_baselines: dict[str, Config | None] = dict(baselines or {})
    raised: list[Event] = []
    order = sorted(range(len(snapshots)), key=lambda index: snapshots[index].collected_at)  # stable for ties
    for index in order:
        snapshot = snapshots[index]
        tenant = snapshot.tenant_id
        result = compare(states.get(tenant), known_baselines.get(tenant), snapshot, now=snapshot.collected_at)
        if result.stale and skipped is not None:
            skipped.append(index)
        states[tenant] = result.state
        if result.baseline is not None:
            known_baselines[tenant] = result.baseline
        raised.extend(result.events)
    return raised


def run(args: argparse.Namespace) -> int:
    files = snapshot_files(args.inputs)
    snapshots = [read_snapshot(str(path)) for path in files]  # malformed settings.exceptions: exit 2, named
    said: set[str] = set()
    for snapshot in snapshots:
        warn_unknown_controls("replay", snapshot, said)
    baselines = {}
    if args.baseline:
        reference = read_snapshot(args.baseline)
        baselines[reference.tenant_id] = control_config(reference)
    skipped: list[int] = []
    events = replay(snapshots, baselines, skipped)
    if skipped:
        # Said, never silent: a series whose files share one collectedAt replays only the first of them.
        names = ", ".join(str(files[index]) for index in skipped[:5]) + (" …" if len(skipped) > 5 else "")
        print(f"authwatch replay: skipped {len(skipped)} of {len(snapshots)} snapshot(s) that are not newer than the "
              f"tenant's previous one (same or earlier collectedAt), as the monitor would: {names}", file=sys.stderr)
    if args.format == "json":
        for event in events:
            print(json.dumps(event.to_json()))
        return 0
    table(("AT", "TENANT", "TYPE", "SUMMARY"),
          [(format_time(e.at), e.tenant_id[:8], e.type, e.summary) for e in events])
    print(f"\n{len(events)} events from {len(snapshots)} snapshots "
          f"(replayed {format_time(datetime.now(timezone.utc))}).")
    return 0
