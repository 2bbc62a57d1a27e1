"""`authwatch tenants add --tenant ID --name NAME [--credential-mode federated|secret|certificate ...]`.

Prints what the tenant's admin has to do (admin consent, read-only Exchange roles for the app) and, for the
secretless mode, the federated credential; checks the tenant's access end to end the way the collector will read it; and registers
the tenant only when nothing blocking is missing (or with --force).

Where things come from: the app registration's client id from --client-id or AUTHWATCH_APP_CLIENT_ID; the managed
identity's client id (federated mode) from --managed-identity-client-id or AZURE_CLIENT_ID; Microsoft's endpoints
from AUTHWATCH_AUTHORITY_HOST / AUTHWATCH_GRAPH_URL / AUTHWATCH_EXCHANGE_URL / AUTHWATCH_CA_BUNDLE; the registry from
the storage settings the app uses. In federated mode the check needs the managed identity's token, so it works where
the identity is (inside Azure), or with a workload-identity assertion in AZURE_FEDERATED_TOKEN_FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from shared.cli import tenants_import, tenants_manage, tenants_partner
from shared.cli.tenant_config import tenant_config
from shared.cli.errors import UsageError
from shared.cli.output import add_output
from shared.collect.credentials import MODES
from shared.settings import Settings, SettingsError, endpoints_from_env
from shared.tenants import onboarding
from shared.tenants.config import TenantConfig, TenantExists
from shared.tenants.registry import TenantRegistry


# Each registers its actions under `authwatch tenants` (add_parser(actions)); a new group of actions goes here.
ACTIONS: tuple[Callable[[Any], None], ...] = (tenants_manage.add_parsers, tenants_import.add_parser,
                                               tenants_partner.add_actions)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("tenants", help="add, list, show, enable, disable, remove or import the watched "
                                                 "tenants", description="Manage the tenants authwatch watches.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_add(actions)
    for register in ACTIONS:
        register(actions)


def _add_add(actions: Any) -> None:
    add = actions.add_parser(
        "add", help="print the onboarding steps, check the tenant's access end to end, register it",
        description="Print the steps the tenant's admin takes (admin consent, read-only Exchange roles for the "
                    "app), check the tenant's access end to end (Graph token, every Graph source, Exchange, the sign-in licence), "
                    "say exactly what is missing and how to fix it, and register the tenant when nothing blocking "
                    "is missing. Exit status: 0 registered (or --check-only passed), 1 not registered, 2 bad input.")
    add.add_argument("--tenant", required=True, metavar="ID", help="the tenant id (GUID)")
    add.add_argument("--name", required=True, help="display name, e.g. the customer's name")
    add.add_argument("--credential-mode", choices=MODES, default="federated",
                     help="how authwatch signs in: federated (default, recommended: no secret), secret, certificate")
    add.add_argument("--client-id", metavar="APP_ID",
                     help="the (multi-tenant) app registration's client id; default $AUTHWATCH_APP_CLIENT_ID")
    add.add_argument("--managed-identity-client-id", metavar="ID",
                     help="federated: the managed identity's client id; default $AZURE_CLIENT_ID")
    add.add_argument("--secret-setting", metavar="NAME",
                     help="secret: NAME of the app setting holding the client secret (a Key Vault reference on Azure)")
    add.add_argument("--certificate-setting", metavar="NAME",
                     help="certificate: NAME of the app setting holding the certificate (PEM path, PEM or PKCS#12)")
    add.add_argument("--schedule-minutes", type=int, metavar="N", help="evaluate this tenant every N minutes")
    add.add_argument("--tag", action="append", default=[], help="a tag (repeatable), e.g. a customer segment")
    add.add_argument("--operator-tenant", metavar="ID",
                     help="your own tenant id, shown in the federated-credential step; default $AZURE_TENANT_ID")
    what = add.add_mutually_exclusive_group()
    what.add_argument("--check-only", action="store_true", help="check the access, register nothing")
    what.add_argument("--skip-check", action="store_true", help="register without checking (not recommended)")
    what.add_argument("--force", action="store_true", help="register even when the check finds something missing")
    add_output(add, ("text", "json"), "text")
    add.set_defaults(run=run_add)


def open_registry(env: Mapping[str, str]) -> TenantRegistry:
    """The registry the function app uses (the one place the CLI decides how to reach storage)."""
    try:
        return TenantRegistry.from_connection_string(Settings.from_env(env).storage)
    except SettingsError as error:
        raise UsageError(str(error)) from None


async def _register(config: TenantConfig, env: Mapping[str, str]) -> TenantConfig:
    registry = open_registry(env)
    try:
        await registry.create()
        return await registry.add(config)
    finally:
        await registry.close()


def run_add(args: argparse.Namespace) -> int:
    env = os.environ
    config = tenant_config(args, env)
    try:
        endpoints = endpoints_from_env(env)
    except SettingsError as error:
        raise UsageError(str(error)) from None
    steps = onboarding.onboarding_steps(config.tenant_id, config.credential, endpoints,
                                        operator_tenant=args.operator_tenant or env.get("AZURE_TENANT_ID"),
                                        identity_principal_id=env.get("AZURE_MANAGED_IDENTITY_PRINCIPAL_ID"))
    text = args.format == "text"
    if text:
        print(f"Onboarding {config.display_name} ({config.tenant_id}), credential mode {config.credential.mode}\n")
        for number, step in enumerate(steps, 1):
            print(f"{number}. {step.title} — {step.who} ({step.scope})\n   {step.text}")
            for command in step.commands:
                print(f"     {command}")
            print()
    check = None
    if not args.skip_check:
        token_file = env.get("AZURE_FEDERATED_TOKEN_FILE")
        provider = onboarding.assertion_from_file(token_file) \
            if config.credential.mode == "federated" and token_file else None
        if text:
            print(f"Checking access to {config.tenant_id} …", flush=True)
        check = asyncio.run(onboarding.check_access(config.tenant_id, config.credential, endpoints, env,
                                                    now=datetime.now(timezone.utc), assertion_provider=provider))
        if text:
            print("\n".join(onboarding.render_text(check)))
            print()
    wanted = not args.check_only and (check is None or check.ok or args.force)
    registered: TenantConfig | None = None
    error: str | None = None
    if wanted:
        try:
            registered = asyncio.run(_register(config, env))
        except TenantExists as exists:
            error = str(exists).removeprefix("tenantId: ")
    if args.format == "json":
        print(json.dumps({"tenantId": config.tenant_id, "displayName": config.display_name,
                          "steps": [step.to_json() for step in steps],
                          "check": check.to_json() if check else None,
                          "registered": registered is not None, "error": error}, indent=2))
    else:
        _say_outcome(config, check, registered, error, args)
    if args.check_only:
        return 0 if check is not None and check.ok else 1
    return 0 if registered is not None else 1


def _say_outcome(config: TenantConfig, check: onboarding.AccessCheck | None, registered: TenantConfig | None,
                 error: str | None, args: argparse.Namespace) -> None:
    if error:
        print(f"Not registered: {error}.", file=sys.stderr)
    elif registered is not None:
        note = " although the check found something missing (--force)" if check is not None and not check.ok else ""
        print(f"Registered {registered.display_name} ({registered.tenant_id}){note}; the next timer tick "
              "evaluates it.")
    elif args.check_only:
        print("Check passed: nothing blocking is missing." if check and check.ok
              else "Check failed: fix what is MISSING above and run the check again.")
    else:
        print("Not registered: fix what is MISSING above and run this again (or add --force to register now and "
              "let the monitor report the tenant as unreachable until it is fixed).", file=sys.stderr)
