"""`authwatch collect --tenant ID [--out FILE]`: one live snapshot, to inspect, share or evaluate offline.

The app registration comes from AUTHWATCH_CLIENT_ID / AUTHWATCH_CLIENT_SECRET (a secret never goes on a command
line, where `ps` and shell history would keep it); Microsoft's endpoints from AUTHWATCH_AUTHORITY_HOST,
AUTHWATCH_GRAPH_URL, AUTHWATCH_EXCHANGE_URL and AUTHWATCH_CA_BUNDLE when they are not the public cloud.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shared.cli.errors import UsageError
from shared.collect import TenantAccess, collect_tenant
from shared.model import SnapshotError, parse_time
from shared.settings import SettingsError, endpoints_from_env


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("collect", help="collect one live snapshot of a tenant",
                                 description="Collect a TenantSnapshot (JSON) from Microsoft Graph and Exchange Online.")
    parser.add_argument("--tenant", required=True, metavar="TENANT",
                        help="the tenant: id (GUID), or a registered display name or verified domain")
    parser.add_argument("--out", metavar="FILE", help="write the snapshot here instead of stdout")
    parser.add_argument("--since", metavar="TIME", help="read sign-ins and audits from this ISO time (default: 48 h)")
    parser.add_argument("--settings", metavar="FILE",
                        help="tenant settings JSON to embed (e.g. {\"approvedExclusions\": {\"users\": [...]}})")
    parser.add_argument("--client-id", metavar="APP_ID", help="app (client) id; default $AUTHWATCH_CLIENT_ID")
    parser.set_defaults(run=run)


def _access(args: argparse.Namespace) -> TenantAccess:
    from shared.cli.tenantref import resolve

    tenant_id = resolve(args.tenant)
    client_id = args.client_id or os.environ.get("AUTHWATCH_CLIENT_ID")
    secret = os.environ.get("AUTHWATCH_CLIENT_SECRET")
    if not client_id or not secret:
        raise UsageError("set AUTHWATCH_CLIENT_ID (or --client-id) and AUTHWATCH_CLIENT_SECRET to the app "
                         "registration authwatch signs in with")
    settings: dict[str, Any] = {}
    if args.settings:
        try:
            settings = json.loads(Path(args.settings).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise UsageError(f"--settings {args.settings}: {error}") from None
        if not isinstance(settings, dict):
            raise UsageError(f"--settings {args.settings}: expected a JSON object")
    return TenantAccess(tenant_id=tenant_id, client_id=client_id, client_secret=secret, settings=settings)


def run(args: argparse.Namespace) -> int:
    access = _access(args)
    try:
        endpoints = endpoints_from_env()
        since = parse_time(args.since, "--since") if args.since else None
    except (SettingsError, SnapshotError) as error:
        raise UsageError(str(error)) from None
    started = time.monotonic()
    print(f"Collecting tenant {access.tenant_id} from {endpoints.graph} …", file=sys.stderr, flush=True)
    snapshot = asyncio.run(collect_tenant(access, endpoints, now=datetime.now(timezone.utc), since=since))
    text = json.dumps(snapshot.to_json(), indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    collected = len([name for name in snapshot.graph]) + len([name for name in snapshot.exchange])
    print(f"{collected} sources collected in {time.monotonic() - started:.1f} s"
          + (f", written to {args.out}" if args.out else ""), file=sys.stderr)
    for source, error in snapshot.errors.items():
        print(f"  not collected: {source} ({error.status or '-'} {error.code}: {error.message})", file=sys.stderr)
    if snapshot.unreachable:
        print("The tenant could not be reached at all; see the errors above.", file=sys.stderr)
        return 1
    return 0
