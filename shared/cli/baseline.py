"""`authwatch baseline accept --tenant ID`: adopt the tenant's current configuration as its approved baseline.

Use it after a deliberate change (a stronger policy, an approved exclusion) so drift is measured from there.
Storage comes from AUTHWATCH_STORAGE_CONNECTION_STRING (or AzureWebJobsStorage).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from shared.cli.errors import UsageError
from shared.cli.output import add_output
from shared.settings import Settings, SettingsError
from shared.storage.account import StorageAccount
from shared.storage.tenant_store import TenantStore


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("baseline", help="manage a tenant's approved baseline")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    accept = actions.add_parser("accept", help="adopt the current configuration as the baseline")
    accept.add_argument("--tenant", required=True, metavar="TENANT", help="the tenant: id (GUID), display name or verified domain")
    add_output(accept, ("text", "json"), "text")
    accept.set_defaults(run=run)


async def _accept(connection_string: "str | StorageAccount", tenant_id: str) -> dict:
    from shared.cycle.service import accept_baseline

    async with TenantStore.from_connection_string(connection_string) as store:
        await store.create()
        return await accept_baseline(store, tenant_id)


def run(args: argparse.Namespace) -> int:
    from shared.cli.tenantref import resolve

    tenant_id = resolve(args.tenant)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        raise UsageError(str(error)) from None
    try:
        baseline = asyncio.run(_accept(settings.storage, tenant_id))
    except LookupError as error:
        raise UsageError(f"{error}; run a cycle first (authwatch run)") from None
    if args.format == "json":
        print(json.dumps({"tenantId": tenant_id, "baseline": baseline}))
    else:
        items = sum(len(section) for section in baseline.values())
        print(f"Baseline of tenant {tenant_id} accepted: {items} configuration items in "
              f"{len(baseline)} sections. Drift is now measured from here.")
    return 0
