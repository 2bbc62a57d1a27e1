"""`authwatch tenants import FILE.csv|FILE.json [--dry-run]`: many tenants at once, idempotently.

What a file holds and what each row's outcome means: shared/tenants/fleet_import.py. Every row is checked before
any is written; each good row is one registry write, 16 at a time; a row whose write fails says so and the others go
on, so running the same file again finishes the rest. A progress bar on stderr for long runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

from shared.cli.errors import UsageError
from shared.cli.fleetcmd import with_fleet
from shared.cli.output import add_output
from shared.tenants import fleet_import

PROGRESS_MIN = 50  # fewer writes than this finish before a bar would say anything
BAR_WIDTH = 20


def add_parser(actions: Any) -> None:
    """Register `import` under `authwatch tenants`."""
    columns = ",".join(fleet_import.COLUMNS)
    parser = actions.add_parser(
        "import", help="add or update many tenants from a CSV or JSON file (no access check: see tenants add)",
        description=f"Add or update tenants from FILE (.csv or .json by its extension). CSV header: {columns} "
                    "(tenantId and name required; tags separated by ';'); JSON: a list of objects with the same keys, "
                    'or {"tenants": [...]}. A value left out keeps an existing tenant\'s value and takes the '
                    "default of `tenants add` for a new one (credential mode federated, the client id from "
                    "AUTHWATCH_APP_CLIENT_ID, the managed identity from AZURE_CLIENT_ID). Every row is checked before "
                    "any is written and gets one line: added, updated (fields …), unchanged, rejected: why, or "
                    "failed: why; running the same file again is safe and finishes what failed. Import does NOT "
                    "check each tenant's access: `authwatch tenants add --check-only` does that. At most "
                    f"{fleet_import.MAX_ROWS:,} rows and {fleet_import.MAX_BYTES // (1024 * 1024)} MiB. Exit "
                    "status: 0 every row added, updated or unchanged; 1 a row was rejected or failed; 2 the file "
                    "cannot be read.")
    parser.add_argument("file", metavar="FILE", help="a .csv or .json file")
    parser.add_argument("--dry-run", action="store_true", help="check and compare every row, write nothing")
    add_output(parser, ("text", "json"), "text")
    parser.set_defaults(run=run_import)


class Progress:
    """`import  [#####.....] 250/500` on stderr: redrawn in place on a terminal, else a line every 10 %."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        if total < PROGRESS_MIN:
            return
        filled = BAR_WIDTH * done // total
        text = f"import  [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}"
        if self.tty:
            if done != total and done % -(-total // 200):  # ceil: at most 200 steps
                return  # redrawn every 0.5 %: 50,000 rows are not 50,000 redraws
            self.stream.write("\r" + text + ("\n" if done == total else ""))
            self.stream.flush()
            return
        tenth = 10 * done // total
        if tenth > self.shown:
            self.shown = tenth
            print(text, file=self.stream, flush=True)


def run_import(args: argparse.Namespace) -> int:
    try:
        rows = fleet_import.read_file(args.file)
    except fleet_import.ImportFileError as error:
        raise UsageError(str(error)) from None
    env = dict(os.environ)
    progress = Progress()
    outcomes = with_fleet(lambda fleet: fleet_import.import_rows(fleet.registry, rows, env, dry_run=args.dry_run,
                                                                 progress=progress))
    counts = fleet_import.summary(outcomes)
    if args.format == "json":
        print(json.dumps({"file": args.file, "dryRun": args.dry_run, "rows": [item.to_json() for item in outcomes],
                          "summary": counts}, indent=2))
    else:
        if args.dry_run:
            print("Dry run: every row checked, nothing written.")
        for item in outcomes:
            print(item.text())
        note = " (dry run: nothing written)" if args.dry_run else ""
        print(fleet_import.summary_text(counts) + note)
        if counts["failed"]:
            print("Some writes failed: run the same import again to finish them.", file=sys.stderr)
    return 1 if counts["rejected"] or counts["failed"] else 0
