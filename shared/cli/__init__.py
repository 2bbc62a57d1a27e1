"""The `authwatch` command line: each subcommand in its own module, this one only dispatches.
May import: any layer of shared/ below it, and the simulator (the demo); never functions/."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from shared.cli import alerts, baseline, collect, demo, evaluate, permissions, replay, report, run, serve, tenants
from shared.cli.errors import UsageError
from shared.logs import configure_cli_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authwatch",
        description="Keep legacy authentication shut in Microsoft 365 tenants, continuously.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens, SDK warnings included")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, run, collect, evaluate, replay, baseline, alerts, serve, report, permissions, tenants):
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_cli_logging(args.verbose)
    try:
        return int(args.run(args) or 0)
    except UsageError as error:
        print(f"authwatch {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("authwatch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`authwatch … | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
