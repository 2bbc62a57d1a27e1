"""The conventions every `authwatch` command shares (what admins know from az, Prowler and ScubaGear).

- `-o/--output FORMAT`, before or after the subcommand; each command lists the formats it writes and its default in
  its --help. The older per-command `--format` stays as an alias (scripts keep working).
- `-v/--verbose` before or after the subcommand.
- Filters on findings: `--status`, `--control`, `--severity` (repeatable or comma-separated).
- `--fail-on SEVERITY`: exit EXIT_FINDINGS (3) when a control at or above that severity fails, so a pipeline can gate;
  0 and 2 keep their meaning (ran / bad input).
"""

from __future__ import annotations

import argparse
from typing import Any, Iterable, Sequence

from shared.cli.errors import UsageError

EXIT_FINDINGS = 3
SEVERITIES = ("low", "medium", "high")  # shared.model.Severity, least to most severe
STATUSES = ("pass", "fail", "pending", "unknown", "not_applicable")
EXIT_CODES = ("Exit status: 0 done; 1 the command ran but did not do what was asked (it says why); 2 bad input or "
              "setup (the message says what to change); 3 with --fail-on: a control at or above that severity "
              "fails.")


def add_output(parser: argparse.ArgumentParser, formats: Sequence[str], default: str) -> None:
    """Declare the formats a command writes; `-o/--output` is added by the dispatcher (shared/cli/__init__.py)."""
    parser.add_argument("--format", choices=tuple(formats), default=None,
                        help=f"the same as -o/--output (default {default})")
    parser.set_defaults(formats=tuple(formats), format_default=default)


def add_common(parser: argparse.ArgumentParser) -> None:
    """-v and (where the command writes something) -o on a subcommand; SUPPRESS keeps a value given before it."""
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log what happens, SDK warnings included")
    formats = parser.get_default("formats")
    if formats:
        default = parser.get_default("format_default")
        parser.add_argument("-o", "--output", metavar="FORMAT", default=argparse.SUPPRESS,
                            help=f"output format: {', '.join(formats)} (default: {default})")


def resolve_format(args: argparse.Namespace) -> None:
    """Set args.format from -o/--output or --format (or the command's default); UsageError when they conflict or the
    command does not write that format."""
    formats = getattr(args, "formats", None)
    output, alias = getattr(args, "output", None), getattr(args, "format", None)
    if not formats:
        if output:
            raise UsageError("-o/--output does not apply to this command (it writes no report)")
        return
    if output and alias and output != alias:
        raise UsageError(f"-o {output} and --format {alias} disagree: give one of them")
    value = output or alias or args.format_default
    if value == "table" and "table" not in formats and "text" in formats:
        value = "text"  # table and text are one thing to a person
    if value not in formats:
        raise UsageError(f"-o {value}: this command writes {', '.join(formats)} (default {args.format_default})")
    args.format = value


def walk(parser: argparse.ArgumentParser) -> Iterable[argparse.ArgumentParser]:
    """Every subcommand parser under `parser` (tenants add, alerts list …), depth first."""
    for action in parser._actions:  # argparse has no public way to list subparsers
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield child
                yield from walk(child)


# --- filters and the gate -----------------------------------------------------------------------------------------

def add_filters(parser: argparse.ArgumentParser, *, fail_on: bool = True) -> None:
    group = parser.add_argument_group("filters (repeat a flag or separate values with commas)")
    group.add_argument("--status", action="append", metavar="STATUS",
                       help=f"only controls with this status: {', '.join(STATUSES)}")
    group.add_argument("--control", action="append", metavar="ID",
                       help="only this control (see `authwatch controls list`)")
    group.add_argument("--severity", action="append", metavar="SEVERITY",
                       help=f"only controls of this severity: {', '.join(SEVERITIES)}")
    if fail_on:
        parser.add_argument("--fail-on", metavar="SEVERITY", choices=SEVERITIES,
                            help=f"exit {EXIT_FINDINGS} when a control of this severity or higher fails "
                                 f"({', '.join(SEVERITIES)}); for pipelines")


def _values(raw: list[str] | None, allowed: Sequence[str], flag: str) -> set[str] | None:
    if not raw:
        return None
    values = {item.strip().lower() for chunk in raw for item in chunk.split(",") if item.strip()}
    wrong = sorted(values - set(allowed))
    if wrong:
        raise UsageError(f"{flag} {wrong[0]!r} is not one of: {', '.join(allowed)}")
    return values


class Filters:
    """--status / --control / --severity, checked against what exists."""

    def __init__(self, args: argparse.Namespace) -> None:
        from shared.controls import CATALOGUE

        self.statuses = _values(getattr(args, "status", None), STATUSES, "--status")
        self.severities = _values(getattr(args, "severity", None), SEVERITIES, "--severity")
        self.controls = _values(getattr(args, "control", None), CATALOGUE, "--control")

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.statuses, self.severities, self.controls))

    def keep(self, row: dict[str, Any]) -> bool:
        return ((self.statuses is None or str(row.get("status")) in self.statuses)
                and (self.severities is None or str(row.get("severity")) in self.severities)
                and (self.controls is None or str(row.get("control")) in self.controls))


def gate(rows: Iterable[dict[str, Any]], fail_on: str | None) -> list[dict[str, Any]]:
    """The failing rows at or above `fail_on` (empty when no gate is asked for)."""
    if not fail_on:
        return []
    floor = SEVERITIES.index(fail_on)
    return [row for row in rows if row.get("status") == "fail"
            and str(row.get("severity")) in SEVERITIES and SEVERITIES.index(str(row.get("severity"))) >= floor]
