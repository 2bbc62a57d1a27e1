"""`authwatch exceptions list|add|extend|remove`: a tenant's accepted deviations, each with an owner, a reason and an
expiry (shared/exceptions.py), changed through shared/tenants/exceptions_service.py exactly as the HTTP API changes
them: validated before anything is written, and every change recorded in the tenant's history with who made it
(`--by`, default the OS user). Storage comes from the settings the app uses (AUTHWATCH_STORAGE_CONNECTION_STRING).
"""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import sys
from datetime import datetime, timezone
from typing import Any

from shared.cli.errors import UsageError
from shared.cli.fleetcmd import with_fleet
from shared.cli.output import add_output
from shared.cli.render import table
from shared.cli.tenantref import resolve_async
from shared.exceptions import ExceptionError
from shared.tenants import exceptions_service as service
from shared.tenants.config import RegistryError

# flag → scope kind (shared.exceptions.SCOPE_KINDS)
SCOPE_FLAGS = (("--user", "users", "ID"), ("--group", "groups", "ID"), ("--role", "roles", "ID"),
               ("--application", "applications", "ID"), ("--location", "locations", "ID"),
               ("--mailbox", "mailboxes", "ADDR"), ("--authentication-policy", "authenticationPolicies", "NAME"))
CSV_COLUMNS = ("id", "control", "scope", "owner", "reason", "created_by", "created_at", "expires_at", "status",
               "days_left", "legacy")
TENANT_HELP = "the tenant: id (GUID), display name or verified domain"
EXPIRES_HELP = ("when it ends: an ISO 8601 time (2027-03-31T17:00:00Z) or a date (2027-03-31: 00:00 UTC that day); "
                "at most the tenant's maxExceptionDays (default 180) from now")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("exceptions", help="list, add, extend or remove a tenant's exceptions",
                                 description="Exceptions: accepted deviations from a control, each with a scope, an "
                                             "owner, a reason and an expiry. A result an exception covers passes, "
                                             "naming the exception. Every change is in the tenant's history.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the tenant's exceptions, soonest expiry first (and its legacy "
                                              "approvedExclusions)")
    listing.add_argument("tenant", metavar="TENANT", help=TENANT_HELP)
    add_output(listing, ("table", "json", "csv"), "table")
    listing.set_defaults(run=run_list)

    add = actions.add_parser("add", help="accept a deviation from one control, until a date")
    add.add_argument("tenant", metavar="TENANT", help=TENANT_HELP)
    add.add_argument("--control", required=True, metavar="CONTROL", help="the control id (authwatch controls list)")
    scope = add.add_argument_group("scope (repeatable; none: the whole control)")
    for flag, kind, metavar in SCOPE_FLAGS:
        scope.add_argument(flag, dest=f"scope_{kind}", action="append", default=[], metavar=metavar,
                           help=f"one of the {kind} it covers")
    add.add_argument("--owner", required=True, help="who answers for it (a person or team)")
    add.add_argument("--reason", required=True, help="why it is accepted")
    add.add_argument("--expires", required=True, metavar="WHEN", help=EXPIRES_HELP)
    add.add_argument("--id", metavar="ID", help="its id (default: exc-<8 hex digits>)")
    add.add_argument("--by", metavar="WHO", help="who creates it (default: the OS user)")
    add_output(add, ("text", "json"), "text")
    add.set_defaults(run=run_add)

    extend = actions.add_parser("extend", help="move an exception's expiry later")
    extend.add_argument("tenant", metavar="TENANT", help=TENANT_HELP)
    extend.add_argument("id", metavar="ID", help="the exception's id")
    extend.add_argument("--expires", required=True, metavar="WHEN", help=EXPIRES_HELP)
    extend.add_argument("--by", metavar="WHO", help="who extends it (default: the OS user)")
    add_output(extend, ("text", "json"), "text")
    extend.set_defaults(run=run_extend)

    remove = actions.add_parser("remove", help="end an exception now")
    remove.add_argument("tenant", metavar="TENANT", help=TENANT_HELP)
    remove.add_argument("id", metavar="ID", help="the exception's id")
    remove.add_argument("--by", metavar="WHO", help="who removes it (default: the OS user)")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_output(remove, ("text", "json"), "text")
    remove.set_defaults(run=run_remove)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _by(args: argparse.Namespace) -> str:
    if args.by is not None:
        return args.by
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no USER / LOGNAME (some containers)
        raise UsageError("--by: say who makes the change (the OS user name could not be read)") from None


def _run(args: argparse.Namespace, work: Any) -> Any:
    """Resolve TENANT and run `work(fleet, tenant_id)`; the service's refusals become one-line usage errors."""
    async def body(fleet: Any) -> Any:
        tenant_id = await resolve_async(fleet.registry, args.tenant, "TENANT")
        try:
            return await work(fleet, tenant_id)
        except (ExceptionError, RegistryError) as error:
            raise UsageError(str(error)) from None
        except LookupError as error:
            hint = " (authwatch exceptions list TENANT shows its exceptions)" if "no tenant" not in str(error) \
                else " (authwatch tenants add registers a tenant)"
            raise UsageError(str(error).strip("'\"") + hint) from None

    return with_fleet(body)


def _scope_text(scope: dict[str, list[str]] | None) -> str:
    return "; ".join(f"{kind}: {', '.join(ids)}" for kind, ids in (scope or {}).items()) or "(whole control)"


def _left(item: dict[str, Any]) -> str:
    if item.get("legacy"):
        return "no expiry"
    return "expired" if item["expired"] else f"{item['daysLeft']} d" + (" (soon)" if item["expiringSoon"] else "")


def run_list(args: argparse.Namespace) -> int:
    listed = _run(args, lambda fleet, tenant_id: service.exceptions_of(fleet.registry, tenant_id, now=_now()))
    items = listed["exceptions"]
    if args.format == "json":
        print(json.dumps(listed, indent=2))
    elif args.format == "csv":
        from shared.views.reports import csv_cell

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for item in items:
            cells = (item["id"], item["control"], _scope_text(item["scope"]), item["owner"], item["reason"],
                     item["createdBy"], item["createdAt"], item["expiresAt"], item["status"], item["daysLeft"],
                     "true" if item["legacy"] else "false")
            writer.writerow([csv_cell(cell, numeric=index == 9) for index, cell in enumerate(cells)])
    elif not items:
        print(f"{listed['displayName']} ({listed['tenantId']}) has no exceptions.")
    else:
        print(f"{listed['displayName']} ({listed['tenantId']}): {len(items)} exception(s); at most "
              f"{listed['maxExceptionDays']} days each, 'soon' within {listed['exceptionReminderDays']} days of the "
              "end.\n")
        table(("ID", "CONTROL", "SCOPE", "OWNER", "EXPIRES", "LEFT", "REASON"),
              [(item["id"], item["control"], _scope_text(item["scope"]), item["owner"] or "(none)",
                item["expiresAt"] or "(never)", _left(item), item["reason"]) for item in items])
    return 0


def _done(args: argparse.Namespace, record: dict[str, Any], said: str) -> int:
    if args.format == "json":
        print(json.dumps(record, indent=2))
    else:
        print(said)
    return 0


def run_add(args: argparse.Namespace) -> int:
    raw = {"control": args.control, "owner": args.owner, "reason": args.reason, "createdBy": _by(args),
           "expiresAt": args.expires,
           "scope": {kind: getattr(args, f"scope_{kind}") for _, kind, _ in SCOPE_FLAGS
                     if getattr(args, f"scope_{kind}")}}
    if args.id is not None:
        raw["id"] = args.id
    record = _run(args, lambda fleet, tenant_id: service.add_exception(fleet.registry, tenant_id, raw, now=_now()))
    return _done(args, record, f"Added exception {record['id']} on {record['control']} for "
                               f"{_scope_text(record['scope'])}, owner {record['owner']}, until {record['expiresAt']}; "
                               "the tenant's next evaluation applies it.")


def run_extend(args: argparse.Namespace) -> int:
    by = _by(args)
    record = _run(args, lambda fleet, tenant_id: service.extend_exception(fleet.registry, tenant_id, args.id,
                                                                         args.expires, by=by, now=_now()))
    return _done(args, record, f"Extended exception {record['id']} until {record['expiresAt']}.")


def run_remove(args: argparse.Namespace) -> int:
    by = _by(args)

    async def work(fleet: Any, tenant_id: str) -> dict[str, Any] | None:
        if not args.yes and sys.stdin.isatty():
            listed = await service.exceptions_of(fleet.registry, tenant_id, now=_now())
            found = next((item for item in listed["exceptions"] if item["id"] == args.id), None)
            if found is not None and not found["legacy"]:
                question = (f"Remove exception {found['id']} on {found['control']} for {_scope_text(found['scope'])}"
                            f", owner {found['owner']}, from {listed['displayName']}? [y/N] ")
                if input(question).strip().lower() not in ("y", "yes"):
                    return None
        return await service.remove_exception(fleet.registry, tenant_id, args.id, by=by, now=_now())

    record = _run(args, work)
    if record is None:
        print("Not removed.", file=sys.stderr)
        return 1
    return _done(args, record, f"Removed exception {record['id']} on {record['control']}.")
