"""`authwatch permissions [--format table|json|app-registration]`: what authwatch needs in a tenant, and why.

`table` (default) is for people; `json` is the whole manifest; `app-registration` prints the multi-tenant app's
`requiredResourceAccess`, ready for `az ad app create --required-resource-accesses @FILE`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from shared.cli.output import add_output

from shared.cli.render import table
from shared.tenants import permissions as manifest


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("permissions", help="print the permissions authwatch needs in a tenant",
                                 description="Print the permissions manifest: every Graph and Exchange permission "
                                             "and Entra role authwatch needs, per collector endpoint and per "
                                             "control. Everything in a customer tenant is read-only.")
    parser.epilog = ("Formats: table (default), json (the whole manifest), or app-registration (the app's "
                     "requiredResourceAccess for `az ad app create --required-resource-accesses @FILE`).")
    add_output(parser, ("table", "json", "app-registration"), "table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.format == "json":
        print(json.dumps(manifest.manifest(), indent=2))
    elif args.format == "app-registration":
        print(json.dumps(manifest.required_resource_access(), indent=2))
    else:
        _print_tables()
    return 0


def _print_tables() -> None:
    out = sys.stdout
    print("Permissions (customer = every monitored tenant, by admin consent or role assignment; "
          "operator = only your own tenant)\n", file=out)
    table(["permission", "type", "resource (app id)", "id", "where", "why"],
          [[permission.name, manifest.KIND_TEXT[permission.kind],
            f"{permission.resource} ({permission.resource_app_id})" if permission.resource_app_id
            else permission.resource, permission.id or "(by name)", permission.where, permission.purpose]
           for permission in manifest.PERMISSIONS])
    print("\nPer collector endpoint\n", file=out)
    table(["source", "request", "needs"],
          [[endpoint.source, endpoint.request,
            ", ".join(endpoint.permissions) + (f"; licence: {endpoint.licence}" if endpoint.licence else "")]
           for endpoint in manifest.ENDPOINTS])
    print("\nPer control\n", file=out)
    table(["control", "needs"],
          [[control_id, ", ".join(info["permissions"])
            + (f"; licence: {', '.join(info['licences'])}" if info["licences"] else "")]
           for control_id, info in manifest.control_permissions().items()])
    print("\nNothing here writes to a customer tenant. Exchange is read through a role group holding "
          f"{' and '.join(role.name for role in manifest.EXCHANGE_ROLES)} (`authwatch tenants add` prints the "
          "commands); the Entra role Global Reader is the fallback. Alert e-mail is sent in your own tenant only, "
          "by a separate single-tenant app that Exchange RBAC for Applications lets send from one mailbox "
          "(Application Mail.Send with a management scope); give that app no Entra Mail.Send consent, which would "
          "let it send as any mailbox. Commands: infra/README.md, 'E-mail alerts'.", file=out)
