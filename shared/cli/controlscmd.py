"""`authwatch controls list [-o table|json|csv]`: the controls authwatch evaluates, in catalogue order."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from shared.cli.output import add_output
from shared.cli.render import table


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("controls", help="list the controls authwatch evaluates",
                                 description="The controls authwatch evaluates (see controls.md for each rule).")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every control: id, severity, title and frameworks",
                                 description="Every control in catalogue order: its id (what --control takes), "
                                             "severity, title and the frameworks it maps to.")
    add_output(listing, ("table", "json", "csv"), "table")
    listing.set_defaults(run=run_list)


def rows() -> list[dict[str, Any]]:
    from shared.controls import controls

    return [{"id": c.id, "severity": str(c.metadata.severity), "title": c.metadata.title,
             "frameworks": list(c.metadata.frameworks), "label": c.metadata.label or c.id,
             "remediation": c.metadata.remediation} for c in controls()]


def run_list(args: argparse.Namespace) -> int:
    found = rows()
    if args.format == "json":
        print(json.dumps({"controls": found}))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(("id", "severity", "title", "frameworks"))
        writer.writerows((c["id"], c["severity"], c["title"], "; ".join(c["frameworks"])) for c in found)
    else:
        table(("CONTROL", "SEVERITY", "TITLE", "FRAMEWORKS"),
              [(c["id"], c["severity"], c["title"], ", ".join(c["frameworks"])) for c in found])
    return 0
