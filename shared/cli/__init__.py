"""The `authwatch` command line: each subcommand in its own module, this one only dispatches.
May import: any layer of shared/ below it, and the simulator (the demo); never functions/.

Conventions shared by every command (shared/cli/output.py): -o/--output and -v/--verbose before or after the
subcommand, --version, tenants by id, display name or verified domain (shared/cli/tenantref.py), exit status 0 done,
1 not done (it says why), 2 bad input, 3 a --fail-on gate tripped.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from shared.cli import (alerts, baseline, collect, controlscmd, demo, evaluate, exceptions, permissions, readiness,
                        replay, report, run, serve, tenants, timeline)
from shared.cli.errors import UsageError, plain
from shared.cli.output import EXIT_CODES, add_common, resolve_format, walk
from shared.logs import configure_cli_logging


def version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version as installed

        return installed("authwatch")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authwatch",
        description="Keep legacy authentication shut in Microsoft 365 tenants, continuously.",
        epilog="Every command takes -o/--output FORMAT and -v/--verbose before or after its name, and names tenants "
               "by id, display name or verified domain. " + EXIT_CODES)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens, SDK warnings included")
    parser.add_argument("-o", "--output", metavar="FORMAT", default=None,
                        help="output format: table, json, csv (and what a command adds, e.g. html, ocsf); each "
                             "command's --help lists its formats and default")
    parser.add_argument("--version", action="version", version=f"authwatch {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, run, collect, evaluate, replay, baseline, alerts, serve, report, timeline, readiness,
                   permissions, tenants, exceptions, controlscmd):
        module.add_parser(commands)
    for sub in walk(parser):
        if not sub.description:
            sub.description = _help_of(parser, sub)
        add_common(sub)
    return parser


def _help_of(root: argparse.ArgumentParser, wanted: argparse.ArgumentParser) -> str | None:
    """A subcommand without its own description shows its one-line help from the parent's listing."""
    for sub in [root, *walk(root)]:
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if action.choices.get(choice.dest) is wanted and choice.help:
                        return choice.help[0].upper() + choice.help[1:] + "."
    return None


def _name(args: argparse.Namespace) -> str:
    return " ".join(part for part in (args.command, getattr(args, "action", None)) if part)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_cli_logging(args.verbose)
    try:
        resolve_format(args)
        return int(args.run(args) or 0)
    except UsageError as error:
        print(f"authwatch {_name(args)}: error: {plain(str(error))}", file=sys.stderr)
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
